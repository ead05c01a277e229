"""How far Lighthouse's output is from the dense reference: relative error, per-token cosine, and where the
error lies.

out_rel_err = ||LH - dense||_F / ||dense||_F over every (batch, query head, token, channel).
cosine(t)   = <LH_t, dense_t> / (||LH_t|| ||dense_t||) per (batch, query head, token); 0 where either
              vector is zero (e.g. the first p - 2 tokens, which Lighthouse leaves at zero when their span
              was not refined). Reported as the median and the 10th percentile over all tokens.
norm_ratio_median = the median over tokens with dense_t != 0 of ||LH_t|| / ||dense_t||: 1 when the error is
              in directions only, below 1 when Lighthouse's outputs are shorter than dense ones.
err_top10_share = the share of the total squared error sum_t ||LH_t - dense_t||^2 carried by the
              ceil(T / 10) tokens with the largest ||LH_t - dense_t|| (T tokens over batch and heads): 0.1 when
              the error is spread evenly, towards 1 when a few tokens carry it. Empty when there is no error;
              both NaN when the output is not finite.
All sums in float64 on the device, in row chunks, so nothing N x N and nothing inexact at N = 128K.
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import torch

ROWS_PER_CHUNK = 1 << 16


def out_rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| (Frobenius, over everything)."""
    num = den = 0.0
    o, r = out.reshape(-1, out.shape[-1]), ref.reshape(-1, ref.shape[-1])
    for start in range(0, o.shape[0], ROWS_PER_CHUNK):
        oc, rc = o[start : start + ROWS_PER_CHUNK].double(), r[start : start + ROWS_PER_CHUNK].double()
        num += float(((oc - rc) ** 2).sum())
        den += float((rc**2).sum())
    return (num**0.5) / (den**0.5) if den > 0 else float("nan")


def token_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity along the last dimension (float32 result); 0 where either vector is zero."""
    a64, b64 = a.double(), b.double()
    dot = (a64 * b64).sum(-1)
    norms = a64.norm(dim=-1) * b64.norm(dim=-1)
    return torch.where(norms > 0, dot / norms.clamp(min=1e-300), torch.zeros_like(dot)).float()


def quantile(values: torch.Tensor, q: float) -> float:
    """The q-quantile with linear interpolation (as numpy's default), for any size (torch.quantile is
    limited to 16M elements)."""
    flat = values.reshape(-1).double().sort().values
    pos = q * (flat.numel() - 1)
    lo = int(pos)
    hi = min(lo + 1, flat.numel() - 1)
    return float(flat[lo] + (flat[hi] - flat[lo]) * (pos - lo))


def error_shape(out: torch.Tensor, ref: torch.Tensor) -> Dict[str, Optional[float]]:
    """norm_ratio_median and err_top10_share (module docstring), per-token sums in float64 in row chunks."""
    ratios, errors = [], []
    for o, r in zip(
        out.reshape(-1, out.shape[-1]).split(ROWS_PER_CHUNK), ref.reshape(-1, ref.shape[-1]).split(ROWS_PER_CHUNK)
    ):
        o64, r64 = o.double(), r.double()
        ref_norm = r64.norm(dim=-1)
        ratios.append((o64.norm(dim=-1) / ref_norm)[ref_norm > 0])
        errors.append(((o64 - r64) ** 2).sum(-1))
    if not errors:
        return {"norm_ratio_median": None, "err_top10_share": None}
    ratio, err = torch.cat(ratios), torch.cat(errors)
    total = float(err.sum())
    if not math.isfinite(total):  # a broken output must not read as one without error
        return {"norm_ratio_median": float("nan"), "err_top10_share": float("nan")}
    top = err.topk(max(1, math.ceil(err.numel() / 10))).values
    return {
        "norm_ratio_median": quantile(ratio, 0.5) if ratio.numel() else None,
        "err_top10_share": float(top.sum()) / total if total > 0 else None,
    }


def output_figures(out: torch.Tensor, ref: torch.Tensor) -> Dict[str, Optional[float]]:
    """out_rel_err, cos_median, cos_p10, norm_ratio_median and err_top10_share of a Lighthouse output against
    the dense reference."""
    cos = torch.cat(
        [
            token_cosine(o, r)
            for o, r in zip(
                out.reshape(-1, out.shape[-1]).split(ROWS_PER_CHUNK),
                ref.reshape(-1, ref.shape[-1]).split(ROWS_PER_CHUNK),
            )
        ]
    )
    return {
        "out_rel_err": out_rel_err(out, ref),
        "cos_median": quantile(cos, 0.5),
        "cos_p10": quantile(cos, 0.1),
        **error_shape(out, ref),
    }


def distribution_figures(values: torch.Tensor, name: str) -> Dict[str, float]:
    """`name` (the mean) and `name`_p10 of a per-query figure such as coverage."""
    return {name: float(values.double().mean()), f"{name}_p10": quantile(values, 0.1)}
