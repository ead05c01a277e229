"""Gather kernel: build a sub-sequence tensor row by row from token rows, pooling on the fly.

Two uses, one kernel: the forward gather (row of entry (l, i) = mean of x[i*f : i*f + f]) and the backward
of the scatter (row of entry (l, i) = sum of dO over its fan-out positions [i*f + f - 1, i*f + 2f - 2]).
Programs walk the level-major list, so every row of a program has the same span f.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from lighthouse.config import TILE
from lighthouse.plan import LighthousePlan

from . import alloc

BLOCK_R = 32  # divides 128 * p, so a block never straddles two levels


@functools.lru_cache(maxsize=64)
def _level_tables(spans, offsets, device):
    return (torch.tensor(spans, dtype=torch.int64, device=device),
            torch.tensor(offsets, dtype=torch.int64, device=device))


def level_tables(plan: LighthousePlan, device: torch.device):
    """Span f_l and pyramid offset of every level as small device tensors (built once per shape)."""
    return _level_tables(plan.spans, plan.offsets, torch.device(device))


@triton.jit
def _gather_kernel(
    X, LM_IDX, LM_POS, OUT, SPANS, OFFSETS,
    seq_len, sel_len, n_pad, chunk, tile_len, x_heads, group, head_dim,
    sxb, sxh, sxn,
    LEVELS: tl.constexpr, POOL: tl.constexpr, FAN_IN: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr,
):
    blocks_top = tl.cdiv(chunk, BLOCK_R)
    blocks_low: tl.constexpr = 128 * POOL // BLOCK_R
    per_tile = blocks_top + (LEVELS - 1) * blocks_low
    pid = tl.program_id(0)
    tile = pid // per_tile
    r = pid % per_tile
    bh = tl.program_id(1)
    b = bh // x_heads
    hx = bh % x_heads

    # which level this block belongs to, its span f and pyramid offset
    is_top = r < blocks_top
    low = tl.maximum(r - blocks_top, 0)
    step = tl.where(is_top, 0, 1 + low // blocks_low)  # 0 = level L, 1 = level L-1, ...
    row0 = tl.where(is_top, r * BLOCK_R, (low % blocks_low) * BLOCK_R)
    region = tl.where(is_top, 0, chunk + (step - 1) * 128 * POOL)
    rows_in_region = tl.where(is_top, chunk, 128 * POOL)
    level0 = LEVELS - 1 - step  # 0-based level
    f = tl.load(SPANS + level0)
    off = tl.load(OFFSETS + level0)

    rows = row0 + tl.arange(0, BLOCK_R)
    rmask = rows < rows_in_region
    ibase = (b * (x_heads // group) + hx // group).to(tl.int64) * sel_len + tile * tile_len + region
    pyr = tl.load(LM_IDX + ibase + rows, mask=rmask, other=0)
    pos = tl.load(LM_POS + ibase + rows, mask=rmask, other=0)
    start = (pyr - off) * f
    if FAN_IN:
        start += f - 1
    d = tl.arange(0, BLOCK_D)
    dmask = d < head_dim
    xbase = X + b.to(tl.int64) * sxb + hx.to(tl.int64) * sxh
    acc = tl.zeros((BLOCK_R, BLOCK_D), dtype=tl.float32)
    for jj in range(0, f):
        t = start + jj
        m = (rmask & (t < seq_len))[:, None] & dmask[None, :]
        acc += tl.load(xbase + t[:, None] * sxn + d[None, :], mask=m, other=0.0).to(tl.float32)
    if not FAN_IN:
        acc = acc / f
    obase = OUT + bh.to(tl.int64) * sel_len * head_dim
    tl.store(obase + pos[:, None] * head_dim + d[None, :], acc.to(OUT.dtype.element_ty),
             mask=rmask[:, None] & dmask[None, :])


def gather_rows(x: torch.Tensor, lm_idx: torch.Tensor, lm_pos: torch.Tensor, plan: LighthousePlan,
                fan_in: bool = False) -> torch.Tensor:
    """x (B, Hx, N, D), Hx = Hkv or Hq -> (B, Hx, S, D) contiguous in x's dtype."""
    if x.stride(-1) != 1:
        x = x.contiguous()
    b, hx, _, d = x.shape
    out = alloc.empty(b, hx, plan.selected_len, d, dtype=x.dtype, device=x.device)
    per_tile = triton.cdiv(plan.chunk, BLOCK_R) + (plan.config.levels - 1) * TILE * plan.config.pooling // BLOCK_R
    spans, offsets = level_tables(plan, x.device)
    _gather_kernel[(plan.tiles * per_tile, b * hx)](
        x, lm_idx, lm_pos, out, spans, offsets,
        plan.seq_len, plan.selected_len, plan.padded_len, plan.chunk, plan.tile_len, hx, hx // plan.kv_heads, d,
        x.stride(0), x.stride(1), x.stride(2),
        LEVELS=plan.config.levels, POOL=plan.config.pooling, FAN_IN=fan_in,
        BLOCK_R=BLOCK_R, BLOCK_D=triton.next_power_of_2(d),
    )
    return out
