"""Pull kernel: every token row sums its at most L contributions from a sub-sequence tensor.

Forward scatter: position t takes the row of entry i = (t + 1) // f - 1 of each level (spec section 6).
Backward of the pooling: token t takes the row of entry i = t // f of each level, divided by f.
Deterministic: no atomics, each output element written exactly once, no zero-filled buffer.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from lighthouse.plan import LighthousePlan

from . import alloc


@triton.jit
def _pull_kernel(
    SRC, INV, OUT,
    seq_len, sel_len, n_pad, pyr_len, out_heads, group, head_dim,
    LEVELS: tl.constexpr, POOL: tl.constexpr, SCATTER: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
):
    t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    bh = tl.program_id(1)
    b = bh // out_heads
    h = bh % out_heads
    tmask = t < seq_len
    d = tl.arange(0, BLOCK_D)
    dmask = d < head_dim
    inv_base = INV + (b * (out_heads // group) + h // group).to(tl.int64) * pyr_len
    src_base = SRC + bh.to(tl.int64) * sel_len * head_dim
    acc = tl.zeros((BLOCK_T, BLOCK_D), dtype=tl.float32)
    f = 1
    off = 0
    for _ in tl.static_range(LEVELS):
        if SCATTER:
            entry = (t + 1) // f - 1
        else:
            entry = t // f
        valid = tmask & (entry >= 0)
        pos = tl.load(inv_base + off + entry, mask=valid, other=-1)
        valid = valid & (pos >= 0)
        vals = tl.load(src_base + pos.to(tl.int64)[:, None] * head_dim + d[None, :],
                       mask=valid[:, None] & dmask[None, :], other=0.0).to(tl.float32)
        if SCATTER:
            acc += vals
        else:
            acc += vals * (1.0 / f)  # f is a compile-time power of p: a constant multiply
        off += n_pad // f
        f = f * POOL
    out = OUT + bh.to(tl.int64) * seq_len * head_dim
    tl.store(out + t[:, None].to(tl.int64) * head_dim + d[None, :], acc.to(OUT.dtype.element_ty),
             mask=tmask[:, None] & dmask[None, :])


def pull_rows(src: torch.Tensor, inv: torch.Tensor, plan: LighthousePlan, scatter: bool, dtype=None) -> torch.Tensor:
    """src (B, Hs, S, D) contiguous -> (B, Hs, N, D): forward scatter (scatter=True) or pooling backward."""
    src = src.contiguous()
    b, hs, _, d = src.shape
    out = alloc.empty(b, hs, plan.seq_len, d, dtype=dtype or src.dtype, device=src.device)
    block_d = triton.next_power_of_2(d)
    block_t = max(16, min(64, 8192 // block_d))
    _pull_kernel[(triton.cdiv(plan.seq_len, block_t), b * hs)](
        src, inv, out,
        plan.seq_len, plan.selected_len, plan.padded_len, plan.pyramid_len, hs, hs // plan.kv_heads, d,
        LEVELS=plan.config.levels, POOL=plan.config.pooling, SCATTER=scatter,
        BLOCK_T=block_t, BLOCK_D=block_d,
    )
    return out
