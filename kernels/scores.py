"""Norm scorer in one pass over q and k, and the max-pooled score pyramid."""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from lighthouse.plan import LighthousePlan
from lighthouse.reference.scores import token_scores

from . import alloc, sizes
from .finite_check import FiniteCheck, _AlreadyChecked, _give_slot, flag_word
from .launch import Launch


@triton.jit
def _max_nan(a, b):
    return tl.maximum(a, b, propagate_nan=tl.PropagateNan.ALL)


@triton.jit(do_not_specialize=["epoch"])  # a new epoch every call: no recompilation on its value
def _norm_scores_kernel(
    Q,
    K,
    SQ,
    SK,
    INV,
    FLAG,
    epoch,
    seq_len,
    n_pad,
    pyr_len,
    q_heads,
    kv_heads,
    group,
    head_dim,
    sqb,
    sqh,
    sqn,
    skb,
    skh,
    skn,
    POOL: tl.constexpr,
    POOLED_LEVELS: tl.constexpr,
    INIT_INV: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """sq[t] = max over the group's query heads of ||q_t||, sk[t] = ||k_t||; -inf past the real tokens.
    The next POOLED_LEVELS levels of the pyramid (spans that divide BLOCK_T) are max-pooled in registers.
    Also, so that no other launch is needed: FLAG is raised to `epoch` (the call's, kernels/finite_check.py) when a
    real token's score is not finite, and with INIT_INV the inverse map of the selection is set to -1 ("not
    emitted") at every entry written."""
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
        best = tl.maximum(best, tl.sqrt(tl.sum(x * x, axis=1)), propagate_nan=tl.PropagateNan.ALL)
    ptr = K + b.to(tl.int64) * skb + h.to(tl.int64) * skh + t[:, None].to(tl.int64) * skn + d[None, :]
    x = tl.load(ptr, mask=m, other=0.0).to(tl.float32)
    kn = tl.sqrt(tl.sum(x * x, axis=1))
    real = t < seq_len
    cur_q = tl.where(real, best, float("-inf"))
    cur_k = tl.where(real, kn, float("-inf"))
    bad = real & (
        (cur_q != cur_q) | (cur_k != cur_k) | (tl.abs(cur_q) == float("inf")) | (tl.abs(cur_k) == float("inf"))
    )
    if tl.sum(bad.to(tl.int32), axis=0) > 0:
        tl.atomic_max(FLAG, epoch)
    base = bh.to(tl.int64) * pyr_len
    tl.store(SQ + base + t, cur_q, mask=t < n_pad)
    tl.store(SK + base + t, cur_k, mask=t < n_pad)
    if INIT_INV:
        tl.store(INV + base + t, tl.full((BLOCK_T,), -1, tl.int32), mask=t < n_pad)
    off = 0
    n_level = n_pad
    for lvl in tl.static_range(1, POOLED_LEVELS + 1):
        off += n_level
        n_level = n_level // POOL
        cur_q = tl.reduce(tl.reshape(cur_q, (BLOCK_T // POOL**lvl, POOL)), 1, _max_nan)
        cur_k = tl.reduce(tl.reshape(cur_k, (BLOCK_T // POOL**lvl, POOL)), 1, _max_nan)
        e = tl.program_id(0) * (BLOCK_T // POOL**lvl) + tl.arange(0, BLOCK_T // POOL**lvl)
        tl.store(SQ + base + off + e, cur_q, mask=e < n_level)
        tl.store(SK + base + off + e, cur_k, mask=e < n_level)
        if INIT_INV:
            tl.store(INV + base + off + e, tl.full((BLOCK_T // POOL**lvl,), -1, tl.int32), mask=e < n_level)


def pooled_in_kernel(plan: LighthousePlan, block_t: int) -> int:
    """How many levels above the token scores the scoring kernel max-pools itself: those whose span
    p**l divides the kernel's block (so a block holds whole entries)."""
    p, levels = plan.config.pooling, 0
    while levels < plan.config.levels - 1 and block_t % p ** (levels + 1) == 0:
        levels += 1
    return levels


def _fill_levels(pyr: torch.Tensor, plan: LighthousePlan, first: int = 1) -> None:
    """Levels first+1..L of (..., P) score pyramids: max over the p children in the level below (NaN
    propagates)."""
    lead = pyr.shape[:-1]
    p = plan.config.pooling
    for lvl in range(first, plan.config.levels):
        lo, n_lo = plan.offsets[lvl - 1], plan.level_sizes[lvl - 1]
        hi, n_hi = plan.offsets[lvl], plan.level_sizes[lvl]
        torch.amax(pyr[..., lo : lo + n_lo].view(*lead, n_hi, p), dim=-1, out=pyr[..., hi : hi + n_hi])


def _launch_constants(plan: LighthousePlan, inv_in_kernel: bool):
    """(grid, BLOCK_T, the size arguments, the compile-time arguments) of the scoring launch and the levels it pools,
    once per plan (plan.memo): the same for every call of the plan."""
    key = ("scores", inv_in_kernel)
    hit = plan.memo.get(key)
    if hit is not None:
        return hit
    block_d = sizes.next_pow2(plan.head_dim)
    block_t = max(1, min(64, 8192 // block_d))
    pooled = pooled_in_kernel(plan, block_t)
    init_inv = inv_in_kernel and pooled == plan.config.levels - 1
    grid = (sizes.cdiv(plan.padded_len, block_t), plan.batch * plan.kv_heads)
    size_args = (
        plan.seq_len,
        plan.padded_len,
        plan.pyramid_len,
        plan.q_heads,
        plan.kv_heads,
        plan.group,
        plan.head_dim,
    )
    meta = dict(POOL=plan.config.pooling, POOLED_LEVELS=pooled, INIT_INV=init_inv, BLOCK_T=block_t, BLOCK_D=block_d)
    hit = plan.memo[key] = (grid, pooled, init_inv, size_args, meta)
    return hit


def scores_launch(q, k, sq, sk, inv, flag, epoch: int, plan: LighthousePlan) -> Launch:
    """The norm scorer's launch (not made): score pyramids sq, sk, the inverse map `inv` set to -1 when the kernel
    pools every level (None: no inverse map), the finiteness flag word raised to `epoch`."""
    grid, _, init_inv, size_args, meta = _launch_constants(plan, inv is not None)
    qs, ks = q.stride(), k.stride()
    args = (q, k, sq, sk, inv if init_inv else flag, flag, epoch, *size_args, *qs[:3], *ks[:3])
    return Launch(_norm_scores_kernel, grid, args, meta)


def score_pyramids(
    q, k, v, plan: LighthousePlan, gate: Optional[torch.Tensor] = None, inv: Optional[torch.Tensor] = None
):
    """(B, Hkv, P) float32 pyramids of sq and sk, and the deferred finiteness check.

    The norm scorer is fused in one kernel over q and k; the others run their attention (SDPA / fla)
    through lighthouse.reference.scores. Both pyramids live in one (2, B, Hkv, P) buffer so that every level is one
    max-pooling launch for the two. `inv`, the selection's (B, Hkv, P) int32 inverse map, is set to -1 on
    the way (inside the scoring kernel when it pools every level itself)."""
    pyr = alloc.empty(2, plan.batch, plan.kv_heads, plan.pyramid_len, dtype=torch.float32, device=q.device)
    sq, sk = pyr[0], pyr[1]
    if plan.config.scorer == "norm":
        _, pooled, init_inv, _, _ = _launch_constants(plan, inv is not None)
        flag, epoch, slot = flag_word(q.device)
        try:
            scores_launch(q, k, sq, sk, inv, flag, epoch, plan)()
        except BaseException:
            _give_slot(slot)  # no check will hold it
            raise
        _fill_levels(pyr, plan, first=1 + pooled)
        if inv is not None and not init_inv:
            inv.fill_(-1)
        return sq, sk, FiniteCheck(flag, pyr, plan, q, k, v, epoch, slot)
    if inv is not None:
        inv.fill_(-1)
    tq, tk = token_scores(q, k, v, plan, gate)  # checks finiteness itself
    n_pad = plan.padded_len
    sq[..., :n_pad] = tq
    sk[..., :n_pad] = tk
    _fill_levels(pyr, plan)
    return sq, sk, _AlreadyChecked()
