"""Norm scorer in one pass over q and k, and the max-pooled score pyramid."""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from lighthouse.plan import LighthousePlan
from lighthouse.scorers import check_finite_scores, token_scores

from . import alloc


@triton.jit
def _norm_scores_kernel(
    Q, K, SQ, SK, seq_len, n_pad, pyr_len, q_heads, kv_heads, group, head_dim,
    sqb, sqh, sqn, skb, skh, skn,
    BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """sq[t] = max over the group's query heads of ||q_t||, sk[t] = ||k_t||; -inf past the real tokens."""
    t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    bh = tl.program_id(1)
    b = bh // kv_heads
    h = bh % kv_heads
    d = tl.arange(0, BLOCK_D)
    m = (t < seq_len)[:, None] & (d < head_dim)[None, :]
    best = tl.full((BLOCK_T,), float("-inf"), tl.float32)
    for g in range(group):
        ptr = Q + b.to(tl.int64) * sqb + (h * group + g).to(tl.int64) * sqh + t[:, None].to(tl.int64) * sqn + d[None, :]
        x = tl.load(ptr, mask=m, other=0.0).to(tl.float32)
        best = tl.maximum(best, tl.sqrt(tl.sum(x * x, axis=1)))
    ptr = K + b.to(tl.int64) * skb + h.to(tl.int64) * skh + t[:, None].to(tl.int64) * skn + d[None, :]
    x = tl.load(ptr, mask=m, other=0.0).to(tl.float32)
    kn = tl.sqrt(tl.sum(x * x, axis=1))
    real = t < seq_len
    out = bh.to(tl.int64) * pyr_len + t
    tl.store(SQ + out, tl.where(real, best, float("-inf")), mask=t < n_pad)
    tl.store(SK + out, tl.where(real, kn, float("-inf")), mask=t < n_pad)


def _fill_levels(pyr: torch.Tensor, plan: LighthousePlan) -> None:
    """Levels 2..L of a (B, Hkv, P) score pyramid: max over the p children in the level below."""
    b, h, _ = pyr.shape
    p = plan.config.pooling
    for lvl in range(1, plan.config.levels):
        lo, n_lo = plan.offsets[lvl - 1], plan.level_sizes[lvl - 1]
        hi, n_hi = plan.offsets[lvl], plan.level_sizes[lvl]
        torch.amax(pyr[..., lo:lo + n_lo].view(b, h, n_hi, p), dim=-1, out=pyr[..., hi:hi + n_hi])


def score_pyramids(q, k, v, plan: LighthousePlan, gate: Optional[torch.Tensor] = None, check_finite: bool = True):
    """(B, Hkv, P) float32 pyramids of sq and sk: the norm scorer fused in a kernel, the others through
    their attention (SDPA / fla) and then the same pyramid."""
    b = plan.batch
    h = plan.kv_heads
    sq = alloc.empty(b, h, plan.pyramid_len, dtype=torch.float32, device=q.device)
    sk = alloc.empty(b, h, plan.pyramid_len, dtype=torch.float32, device=q.device)
    n_pad = plan.padded_len
    if plan.config.scorer == "norm":
        block_d = triton.next_power_of_2(plan.head_dim)
        block_t = max(1, min(64, 8192 // block_d))
        _norm_scores_kernel[(triton.cdiv(n_pad, block_t), b * h)](
            q, k, sq, sk, plan.seq_len, n_pad, plan.pyramid_len, plan.q_heads, h, plan.group, plan.head_dim,
            q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
            BLOCK_T=block_t, BLOCK_D=block_d,
        )
        if check_finite:
            check_finite_scores(sq[..., : plan.seq_len], sk[..., : plan.seq_len])
    else:
        tq, tk = token_scores(q, k, v, plan, gate)  # checks finiteness itself
        sq[..., :n_pad] = tq
        sk[..., :n_pad] = tk
    _fill_levels(sq, plan)
    _fill_levels(sk, plan)
    return sq, sk
