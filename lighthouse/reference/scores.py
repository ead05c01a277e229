"""Stage scores, spec section 2: the parameter-free selection scores, shared by every implementation.

A scorer returns two float32 token-score streams of shape (B, Hkv, N_pad): `sq` ranks entries for the
query half of a tile's refined set, `sk` for the key half. GQA: a kv head's scores are the max over the
query heads of its group. Padded tokens score -inf, so they never outrank a real token.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from .. import finite
from ..plan import LighthousePlan
from ..sdpa import repeat_kv


def _group_max(scores: torch.Tensor, plan: LighthousePlan) -> torch.Tensor:
    """(B, Hq, N) -> (B, Hkv, N): a kv group shares one selection, scored by its loudest query head.

    Streams that are already per kv head (the norm scorer's ||k||) pass through."""
    if plan.group == 1 or scores.shape[1] == plan.kv_heads:
        return scores
    b, _, n = scores.shape
    return scores.view(b, plan.kv_heads, plan.group, n).amax(dim=2)


def norm_scores(q: torch.Tensor, k: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """sq[t] = ||q_t||, sk[t] = ||k_t|| (float32)."""
    return torch.linalg.vector_norm(q.float(), dim=-1), torch.linalg.vector_norm(k.float(), dim=-1)


def _strided_causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, d: int) -> torch.Tensor:
    """Causal softmax attention within each of the d strided subsequences o, o+d, o+2d, ..."""
    b, h, n, dim = q.shape
    pad = -n % d
    if pad:  # zeros at the end: causal, so no real token sees them
        q, k, v = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
    m = (n + pad) // d

    def split(x):  # (B, H, m*d, D) -> (B, H*d, m, D): offset o of head h is head h*d + o
        return x.reshape(b, h, m, d, dim).transpose(2, 3).reshape(b, h * d, m, dim)

    out = F.scaled_dot_product_attention(split(q), split(k), split(v), is_causal=True)
    return out.reshape(b, h, d, m, dim).transpose(2, 3).reshape(b, h, m * d, dim)[:, :, :n]


def dilated_scores(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dilation: int, group: int):
    """Norms of attn(Q, K, V) and attn(K, Q, V) over every strided subsequence (quadratic: N^2/d)."""
    k_rep, v_rep = repeat_kv(k, group), repeat_kv(v, group)
    out_q = _strided_causal_attention(q, k_rep, v_rep, dilation)
    out_k = _strided_causal_attention(k_rep, q, v_rep, dilation)
    return torch.linalg.vector_norm(out_q.float(), dim=-1), torch.linalg.vector_norm(out_k.float(), dim=-1)


def _chunk_simple_gla():
    try:
        from fla.ops.simple_gla import chunk_simple_gla
    except ImportError as err:  # pragma: no cover - depends on the optional extra
        raise ValueError(
            "scorer='gla' needs the flash-linear-attention package: pip install 'lighthouse-bench[gla]'"
        ) from err
    return chunk_simple_gla


def gla_scores(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gate: torch.Tensor, group: int):
    """Norms of gated linear attention GLA(Q, K, V) and GLA(K, Q, V) with a per-token log-gate."""
    chunk_simple_gla = _chunk_simple_gla()
    k_rep, v_rep = repeat_kv(k, group), repeat_kv(v, group)

    def run(a, b, c):  # fla takes (B, T, H, D) and g as (B, T, H)
        out = chunk_simple_gla(
            a.transpose(1, 2).contiguous(),
            b.transpose(1, 2).contiguous(),
            c.transpose(1, 2).contiguous(),
            g=gate.transpose(1, 2).float().contiguous(),
            scale=q.shape[-1] ** -0.5,
        )
        out = out[0] if isinstance(out, tuple) else out
        return torch.linalg.vector_norm(out.float(), dim=-1).transpose(1, 2)

    return run(q, k_rep, v_rep), run(k_rep, q, v_rep)


@torch.no_grad()
def token_scores(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: LighthousePlan, gate: Optional[torch.Tensor] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The two token-score streams (B, Hkv, N_pad) in float32; no gradient (selection is a constant)."""
    cfg = plan.config
    if cfg.scorer == "norm":
        sq, sk = norm_scores(q, k)
    elif cfg.scorer == "dilated":
        sq, sk = dilated_scores(q, k, v, cfg.dilation, plan.group)
    else:
        sq, sk = gla_scores(q, k, v, gate, plan.group)
    sq, sk = _group_max(sq, plan), _group_max(sk, plan)
    if not bool(finite.screen(sq, sk, v)):  # NaN/Inf in q, k or v would silently corrupt the selection
        finite.raise_non_finite(q, k, v, sq, sk, cfg.scorer)
    pad = plan.padded_len - plan.seq_len
    if pad:
        sq, sk = (F.pad(s, (0, pad), value=float("-inf")) for s in (sq, sk))
    return sq.contiguous(), sk.contiguous()


def score_pyramid(scores: torch.Tensor, plan: LighthousePlan) -> Tuple[torch.Tensor, ...]:
    """Lift token scores to every level by max-pooling over each entry's span: level l is (B, Hkv, n_l)."""
    b, h, n = scores.shape
    return tuple(scores if f == 1 else scores.view(b, h, n // f, f).amax(dim=-1) for f in plan.spans)
