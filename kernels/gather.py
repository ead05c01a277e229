"""Gather kernel: build sub-sequence tensors row by row from token rows, pooling on the fly.

Two uses, one kernel: the forward gather (row of entry (l, i) = mean of x[i*f : i*f + f]) and the backward
of the scatter (row of entry (l, i) = sum of dO over its fan-out positions [i*f + f - 1, i*f + 2f - 2]).
Programs walk the level-major list, so every row of a program has the same span f. One launch serves up to
three tensors of the same head count (q, k and v): the index loads are shared and the launch tails paid once.
With rope='post' the forward gather rotates the first ROT tensors (q, k) at the last token of each entry's
span (kernels/rope.py) between pooling and the store; the rows are then pooled as two halves.
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence

import torch
import triton
import triton.language as tl

from lighthouse.config import TILE
from lighthouse.plan import LighthousePlan

from . import alloc, plant, sizes
from .plant import spin
from .rope import RopeArgs, cos_sin, launch_args, token_position

BLOCK_R = 32  # divides 128 * p, so a block never straddles two levels
NUM_WARPS = 4  # tuned on the H200 (reports/PERF_NOTES.md, step 4)
MAX_TENSORS = 3


@functools.lru_cache(maxsize=64)
def _level_tables(spans, offsets, device):
    return (
        torch.tensor(spans, dtype=torch.int64, device=device),
        torch.tensor(offsets, dtype=torch.int64, device=device),
    )


def level_tables(plan: LighthousePlan, device: torch.device):
    """Span f_l and pyramid offset of every level as small device tensors (built once per shape)."""
    return _level_tables(plan.spans, plan.offsets, torch.device(device))


@triton.jit
def _pool_top(
    X,
    sxb,
    sxh,
    sxn,
    b,
    hx,
    start,
    rmask,
    seq_len,
    d,
    dmask,
    TOP_SPAN: tl.constexpr,
    TOP_STEP: tl.constexpr,
    FAN_IN: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """Coarsest level: TOP_STEP consecutive token rows per entry per step, span known at compile time."""
    xbase = X + b.to(tl.int64) * sxb + hx.to(tl.int64) * sxh
    jj = tl.arange(0, TOP_STEP)
    acc = tl.zeros((BLOCK_R, BLOCK_D), dtype=tl.float32)
    for j0 in range(0, TOP_SPAN, TOP_STEP):
        t = start[:, None] + (j0 + jj)[None, :]  # (BLOCK_R, TOP_STEP)
        m = (rmask[:, None] & (j0 + jj < TOP_SPAN)[None, :] & (t < seq_len))[:, :, None] & dmask[None, None, :]
        x = tl.load(xbase + t[:, :, None] * sxn + d[None, None, :], mask=m, other=0.0).to(tl.float32)
        acc += tl.sum(x, axis=1)
    if not FAN_IN:
        acc = acc * (1.0 / TOP_SPAN)
    return acc


@triton.jit
def _pool_low(
    X,
    sxb,
    sxh,
    sxn,
    b,
    hx,
    start,
    f,
    seq_len,
    d,
    dmask,
    FAN_IN: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """A finer level: every row of the block spans f tokens (f read at run time)."""
    xbase = X + b.to(tl.int64) * sxb + hx.to(tl.int64) * sxh
    acc = tl.zeros((BLOCK_R, BLOCK_D), dtype=tl.float32)
    for j in range(0, f):
        t = start + j
        m = (t < seq_len)[:, None] & dmask[None, :]
        acc += tl.load(xbase + t[:, None] * sxn + d[None, :], mask=m, other=0.0).to(tl.float32)
    if not FAN_IN:
        acc = acc / f
    return acc


@triton.jit
def _put(OUT, bh, sel_len, head_dim, pos, acc, rmask, d, dmask):
    obase = OUT + bh.to(tl.int64) * sel_len * head_dim
    tl.store(
        obase + pos[:, None] * head_dim + d[None, :], acc.to(OUT.dtype.element_ty), mask=rmask[:, None] & dmask[None, :]
    )


@triton.jit
def _pool(
    X,
    sxb,
    sxh,
    sxn,
    b,
    hx,
    start,
    rmask,
    f,
    seq_len,
    d,
    dmask,
    TOP: tl.constexpr,
    TOP_SPAN: tl.constexpr,
    TOP_STEP: tl.constexpr,
    FAN_IN: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    if TOP:
        acc = _pool_top(
            X, sxb, sxh, sxn, b, hx, start, rmask, seq_len, d, dmask, TOP_SPAN, TOP_STEP, FAN_IN, BLOCK_R, BLOCK_D
        )
    else:
        acc = _pool_low(X, sxb, sxh, sxn, b, hx, start, f, seq_len, d, dmask, FAN_IN, BLOCK_R, BLOCK_D)
    return acc


@triton.jit
def _emit(
    X,
    sxb,
    sxh,
    sxn,
    OUT,
    bh,
    sel_len,
    head_dim,
    b,
    hx,
    start,
    rmask,
    f,
    seq_len,
    pos,
    cos,
    sin,
    HALVES: tl.constexpr,
    ROTATE: tl.constexpr,
    TOP: tl.constexpr,
    TOP_SPAN: tl.constexpr,
    TOP_STEP: tl.constexpr,
    FAN_IN: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    """Pool one tensor's rows and store them at their sub-sequence rows; with HALVES, as two halves, turned
    by (cos, sin) when ROTATE (RoPE: lo' = lo cos - hi sin, hi' = hi cos + lo sin)."""
    if HALVES:
        half = head_dim // 2
        dh = tl.arange(0, BLOCK_H)
        hmask = dh < half
        lo = _pool(
            X,
            sxb,
            sxh,
            sxn,
            b,
            hx,
            start,
            rmask,
            f,
            seq_len,
            dh,
            hmask,
            TOP,
            TOP_SPAN,
            TOP_STEP,
            FAN_IN,
            BLOCK_R,
            BLOCK_H,
        )
        hi = _pool(
            X,
            sxb,
            sxh,
            sxn,
            b,
            hx,
            start,
            rmask,
            f,
            seq_len,
            dh + half,
            hmask,
            TOP,
            TOP_SPAN,
            TOP_STEP,
            FAN_IN,
            BLOCK_R,
            BLOCK_H,
        )
        if ROTATE:
            lo, hi = lo * cos - hi * sin, hi * cos + lo * sin
        _put(OUT, bh, sel_len, head_dim, pos, lo, rmask, dh, hmask)
        _put(OUT, bh, sel_len, head_dim, pos, hi, rmask, dh + half, hmask)
    else:
        d = tl.arange(0, BLOCK_D)
        dmask = d < head_dim
        acc = _pool(
            X,
            sxb,
            sxh,
            sxn,
            b,
            hx,
            start,
            rmask,
            f,
            seq_len,
            d,
            dmask,
            TOP,
            TOP_SPAN,
            TOP_STEP,
            FAN_IN,
            BLOCK_R,
            BLOCK_D,
        )
        _put(OUT, bh, sel_len, head_dim, pos, acc, rmask, d, dmask)


@triton.jit
def _emit_all(
    X0,
    X1,
    X2,
    OUT0,
    OUT1,
    OUT2,
    INV_FREQ,
    POS,
    bh,
    sel_len,
    head_dim,
    b,
    hx,
    start,
    rmask,
    f,
    seq_len,
    pos,
    pos_bstride,
    pos_offset,
    s0b,
    s0h,
    s0n,
    s1b,
    s1h,
    s1n,
    s2b,
    s2h,
    s2n,
    NUM: tl.constexpr,
    TOP: tl.constexpr,
    TOP_SPAN: tl.constexpr,
    TOP_STEP: tl.constexpr,
    FAN_IN: tl.constexpr,
    ROT: tl.constexpr,
    HAS_POS: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    """The rows of one block (one span f) for every tensor of the launch; the first ROT are rotated at the last
    token of each entry's span (spec section 5a), the angles computed once for all of them."""
    if ROT > 0:
        cos, sin = cos_sin(
            token_position(start + f - 1, rmask, b, POS, pos_bstride, pos_offset, seq_len, HAS_POS),
            INV_FREQ,
            head_dim // 2,
            BLOCK_H,
        )
    else:
        cos = tl.zeros((BLOCK_R, BLOCK_H), dtype=tl.float32)
        sin = cos
    if FAN_IN:
        start += f - 1
    _emit(
        X0,
        s0b,
        s0h,
        s0n,
        OUT0,
        bh,
        sel_len,
        head_dim,
        b,
        hx,
        start,
        rmask,
        f,
        seq_len,
        pos,
        cos,
        sin,
        ROT > 0,
        ROT > 0,
        TOP,
        TOP_SPAN,
        TOP_STEP,
        FAN_IN,
        BLOCK_R,
        BLOCK_D,
        BLOCK_H,
    )
    if NUM > 1:
        _emit(
            X1,
            s1b,
            s1h,
            s1n,
            OUT1,
            bh,
            sel_len,
            head_dim,
            b,
            hx,
            start,
            rmask,
            f,
            seq_len,
            pos,
            cos,
            sin,
            ROT > 0,
            ROT > 1,
            TOP,
            TOP_SPAN,
            TOP_STEP,
            FAN_IN,
            BLOCK_R,
            BLOCK_D,
            BLOCK_H,
        )
    if NUM > 2:
        _emit(
            X2,
            s2b,
            s2h,
            s2n,
            OUT2,
            bh,
            sel_len,
            head_dim,
            b,
            hx,
            start,
            rmask,
            f,
            seq_len,
            pos,
            cos,
            sin,
            ROT > 0,
            ROT > 2,
            TOP,
            TOP_SPAN,
            TOP_STEP,
            FAN_IN,
            BLOCK_R,
            BLOCK_D,
            BLOCK_H,
        )


@triton.jit
def _gather_kernel(
    X0,
    X1,
    X2,
    LM_IDX,
    LM_POS,
    OUT0,
    OUT1,
    OUT2,
    SPANS,
    OFFSETS,
    INV_FREQ,
    POS,
    seq_len,
    sel_len,
    chunk,
    tile_len,
    x_heads,
    group,
    head_dim,
    pos_bstride,
    pos_offset,
    s0b,
    s0h,
    s0n,
    s1b,
    s1h,
    s1n,
    s2b,
    s2h,
    s2n,
    spin_cycles,
    NUM: tl.constexpr,
    LEVELS: tl.constexpr,
    POOL: tl.constexpr,
    TOP_SPAN: tl.constexpr,
    TOP_STEP: tl.constexpr,
    FAN_IN: tl.constexpr,
    ROT: tl.constexpr,
    HAS_POS: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_H: tl.constexpr,
    SPIN: tl.constexpr,
):
    if SPIN:  # test-only planted slowdown (kernels/plant.py); absent from the kernel otherwise
        spin(spin_cycles)
    blocks_top = tl.cdiv(chunk, BLOCK_R)
    blocks_low: tl.constexpr = 128 * POOL // BLOCK_R
    per_tile = blocks_top + (LEVELS - 1) * blocks_low
    pid = tl.program_id(0)
    tile = pid // per_tile
    r = pid % per_tile
    bh = tl.program_id(1)
    b = bh // x_heads
    hx = bh % x_heads
    ibase = (b * (x_heads // group) + hx // group).to(tl.int64) * sel_len + tile * tile_len
    if r < blocks_top:
        # coarsest level: consecutive entries of the tile's chunk span consecutive tokens
        rows = r * BLOCK_R + tl.arange(0, BLOCK_R)
        rmask = rows < chunk
        pos = tl.load(LM_POS + ibase + rows, mask=rmask, other=0)
        start = (tile * chunk + rows).to(tl.int64) * TOP_SPAN
        _emit_all(
            X0,
            X1,
            X2,
            OUT0,
            OUT1,
            OUT2,
            INV_FREQ,
            POS,
            bh,
            sel_len,
            head_dim,
            b,
            hx,
            start,
            rmask,
            TOP_SPAN,
            seq_len,
            pos,
            pos_bstride,
            pos_offset,
            s0b,
            s0h,
            s0n,
            s1b,
            s1h,
            s1n,
            s2b,
            s2h,
            s2n,
            NUM,
            True,
            TOP_SPAN,
            TOP_STEP,
            FAN_IN,
            ROT,
            HAS_POS,
            BLOCK_R,
            BLOCK_D,
            BLOCK_H,
        )
    else:
        # finer levels: 128 * POOL entries per level and tile, a block never straddles two levels
        low = r - blocks_top
        level0 = LEVELS - 2 - low // blocks_low  # 0-based level
        f = tl.load(SPANS + level0)
        off = tl.load(OFFSETS + level0)
        rows = chunk + (LEVELS - 2 - level0) * 128 * POOL + (low % blocks_low) * BLOCK_R + tl.arange(0, BLOCK_R)
        pyr = tl.load(LM_IDX + ibase + rows)
        pos = tl.load(LM_POS + ibase + rows)
        rmask = rows >= 0
        start = (pyr - off) * f
        _emit_all(
            X0,
            X1,
            X2,
            OUT0,
            OUT1,
            OUT2,
            INV_FREQ,
            POS,
            bh,
            sel_len,
            head_dim,
            b,
            hx,
            start,
            rmask,
            f,
            seq_len,
            pos,
            pos_bstride,
            pos_offset,
            s0b,
            s0h,
            s0n,
            s1b,
            s1h,
            s1n,
            s2b,
            s2h,
            s2n,
            NUM,
            False,
            TOP_SPAN,
            TOP_STEP,
            FAN_IN,
            ROT,
            HAS_POS,
            BLOCK_R,
            BLOCK_D,
            BLOCK_H,
        )


def gather_many(
    xs: Sequence[torch.Tensor],
    lm_idx: torch.Tensor,
    lm_pos: torch.Tensor,
    plan: LighthousePlan,
    fan_in: bool = False,
    rope: Optional[RopeArgs] = None,
    rotate: int = 0,
) -> list:
    """Tensors (B, Hx, N, D) of one head count Hx (Hkv or Hq) -> (B, Hx, S, D) contiguous, in one launch
    per MAX_TENSORS tensors. With `rope` (post mode) the first `rotate` tensors are rotated."""
    if len(xs) > MAX_TENSORS:
        return gather_many(
            xs[:MAX_TENSORS], lm_idx, lm_pos, plan, fan_in, rope, min(rotate, MAX_TENSORS)
        ) + gather_many(xs[MAX_TENSORS:], lm_idx, lm_pos, plan, fan_in, rope, max(0, rotate - MAX_TENSORS))
    if rope is None or fan_in:
        rotate = 0
    xs = [x if x.stride(-1) == 1 else x.contiguous() for x in xs]
    b, hx, _, d = xs[0].shape
    if any(x.shape != xs[0].shape for x in xs):
        raise ValueError(f"gather_many needs tensors of one shape, got {[tuple(x.shape) for x in xs]}")
    outs = [alloc.empty(b, hx, plan.selected_len, d, dtype=x.dtype, device=x.device) for x in xs]
    per_tile = sizes.cdiv(plan.chunk, BLOCK_R) + (plan.config.levels - 1) * TILE * plan.config.pooling // BLOCK_R
    spans, offsets = level_tables(plan, xs[0].device)
    top_span = plan.spans[-1]
    block_d = sizes.next_pow2(d)
    padded_x = xs + [xs[0]] * (MAX_TENSORS - len(xs))
    padded_o = outs + [outs[0]] * (MAX_TENSORS - len(xs))
    strides = [s for x in padded_x for s in x.stride()[:3]]
    inv_freq, pos, pos_bstride, pos_offset, has_pos = launch_args(rope if rotate else None, lm_pos)
    spin_cycles = plant.spin_cycles("gather", plan.seq_len)
    _gather_kernel[(plan.tiles * per_tile, b * hx)](
        *padded_x,
        lm_idx,
        lm_pos,
        *padded_o,
        spans,
        offsets,
        inv_freq,
        pos,
        plan.seq_len,
        plan.selected_len,
        plan.chunk,
        plan.tile_len,
        hx,
        hx // plan.kv_heads,
        d,
        pos_bstride,
        pos_offset,
        *strides,
        spin_cycles,
        NUM=len(xs),
        LEVELS=plan.config.levels,
        POOL=plan.config.pooling,
        TOP_SPAN=top_span,
        TOP_STEP=min(sizes.next_pow2(top_span), max(1, 16384 // (BLOCK_R * block_d))),
        FAN_IN=fan_in,
        ROT=rotate,
        HAS_POS=has_pos,
        BLOCK_R=BLOCK_R,
        BLOCK_D=block_d,
        BLOCK_H=sizes.next_pow2(max(1, d // 2)),
        num_warps=NUM_WARPS,
        SPIN=spin_cycles > 0,
    )
    return outs


def gather_rows(
    x: torch.Tensor, lm_idx: torch.Tensor, lm_pos: torch.Tensor, plan: LighthousePlan, fan_in: bool = False
) -> torch.Tensor:
    """x (B, Hx, N, D), Hx = Hkv or Hq -> (B, Hx, S, D) contiguous in x's dtype."""
    return gather_many([x], lm_idx, lm_pos, plan, fan_in)[0]
