"""How far Lighthouse's output is from the dense reference: relative error and per-token cosine.

out_rel_err = ||LH - dense||_F / ||dense||_F over every (batch, query head, token, channel).
cosine(t)   = <LH_t, dense_t> / (||LH_t|| ||dense_t||) per (batch, query head, token); 0 where either
              vector is zero (e.g. the first p - 2 tokens, which Lighthouse leaves at zero when their span
              was not refined). Reported as the median and the 10th percentile over all tokens.
All sums in float64 on the device, in row chunks, so nothing N x N and nothing inexact at N = 128K.
"""

from __future__ import annotations

from typing import Dict

import torch

ROWS_PER_CHUNK = 1 << 16


def out_rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| (Frobenius, over everything)."""
    num = den = 0.0
    o, r = out.reshape(-1, out.shape[-1]), ref.reshape(-1, ref.shape[-1])
    for start in range(0, o.shape[0], ROWS_PER_CHUNK):
        oc, rc = o[start:start + ROWS_PER_CHUNK].double(), r[start:start + ROWS_PER_CHUNK].double()
        num += float(((oc - rc) ** 2).sum())
        den += float((rc ** 2).sum())
    return (num ** 0.5) / (den ** 0.5) if den > 0 else float("nan")


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


def output_figures(out: torch.Tensor, ref: torch.Tensor) -> Dict[str, float]:
    """out_rel_err, cos_median and cos_p10 of a Lighthouse output against the dense reference."""
    cos = torch.cat([token_cosine(o, r) for o, r in zip(out.reshape(-1, out.shape[-1]).split(ROWS_PER_CHUNK),
                                                     ref.reshape(-1, ref.shape[-1]).split(ROWS_PER_CHUNK))])
    return {"out_rel_err": out_rel_err(out, ref), "cos_median": quantile(cos, 0.5), "cos_p10": quantile(cos, 0.1)}


def distribution_figures(values: torch.Tensor, name: str) -> Dict[str, float]:
    """`name` (the mean) and `name`_p10 of a per-query figure such as coverage."""
    return {name: float(values.double().mean()), f"{name}_p10": quantile(values, 0.1)}
