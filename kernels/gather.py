"""Gather kernel: build sub-sequence tensors row by row from token rows, pooling on the fly.

Two uses, one kernel: the forward gather (row of entry (l, i) = mean of x[i*f : i*f + f]) and the backward
of the scatter (row of entry (l, i) = sum of dO over its fan-out positions [i*f + f - 1, i*f + 2f - 2]).
Programs walk the level-major list, so every row of a program has the same span f. One launch serves up to
three tensors of the same head count (q, k and v): the index loads are shared and the launch tails paid once.
With rope='post' the forward gather rotates the first ROT tensors (q, k) at the last token of each entry's
span (kernels/rope.py) between pooling and the store, pooling their rows as two halves in one pass; the other
tensors (v) are pooled at full width, as in pre mode.
"""

from __future__ import annotations

import functools
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
import triton
import triton.language as tl

from lighthouse.config import TILE
from lighthouse.plan import LighthousePlan

from . import alloc, plant, sizes
from .launch import Launch
from .plant import spin
from .rope import RopeArgs, entry_angles, kernel_rope, launch_args

BLOCK_R = 32  # divides 128 * p, so a block never straddles two levels
NUM_WARPS = 4  # tuned on the H200 (reports/PERF_NOTES.md, step 4)
TOP_STEP_MAX = 4  # token rows per entry the coarsest level loads per step; 8 spills at D=64 (kernel_resources.py)


@functools.lru_cache(maxsize=64)
def _level_tables(spans, offsets, device):
    return (
        torch.tensor(spans, dtype=torch.int64, device=device),
        torch.tensor(offsets, dtype=torch.int64, device=device),
    )


def level_tables(plan: LighthousePlan, device: torch.device):
    """Span f_l and pyramid offset of every level as small device tensors (built once per shape)."""
    return _level_tables(plan.spans, plan.offsets, torch.device(device))


class Rows(NamedTuple):
    """One block of sub-sequence rows, all of one level: the first token of each row's span (int64), which rows
    are real, and each row's place in the sub-sequence."""

    start: tl.tensor
    mask: tl.tensor
    pos: tl.tensor


@triton.jit
def _load_rows(x, step, t, valid, d, dmask):
    """Token rows t (one per sub-sequence row) at the columns d, as float32; 0 where not valid."""
    m = valid[:, None] & dmask[None, :]
    return tl.load(x + t[:, None] * step + d[None, :], mask=m, other=0.0).to(tl.float32)


@triton.jit
def _pool(
    x,
    step,
    rows,
    f,
    seq_len,
    d,
    dmask,
    half,
    TOP: tl.constexpr,
    STEP: tl.constexpr,
    FAN_IN: tl.constexpr,
    HALVES: tl.constexpr,
):
    """Mean (FAN_IN: sum) over each row's span of f token rows, at the columns d; x points at token 0 of this
    (batch, head), step is the token stride. TOP: the coarsest level, f known at compile time, STEP token rows
    per entry loaded per loop step as STEP (rows, D) loads added in token order (one (rows, STEP, D) load and
    its sum held 128 floats a thread and spilled: PERF_NOTES step 14); otherwise f is read at run time.
    HALVES (a row to be rotated): the columns d + half too, into a second accumulator of the same loop, so the
    span is walked once with both halves' loads in flight (PERF_NOTES step 17). Returns (acc, acc at d + half);
    the second is zeros without HALVES."""
    acc = tl.zeros((rows.start.shape[0], d.shape[0]), dtype=tl.float32)
    acc_hi = tl.zeros((rows.start.shape[0], d.shape[0]), dtype=tl.float32)
    if TOP:
        for j0 in range(0, f, STEP):
            for jj in tl.static_range(STEP):
                t = rows.start + (j0 + jj)
                valid = rows.mask & (t < seq_len) & (j0 + jj < f)
                acc += _load_rows(x, step, t, valid, d, dmask)
                if HALVES:
                    acc_hi += _load_rows(x, step, t, valid, d + half, dmask)
        if not FAN_IN:
            acc = acc * (1.0 / f)
            acc_hi = acc_hi * (1.0 / f)
    else:
        for j in range(0, f):
            t = rows.start + j
            valid = t < seq_len
            acc += _load_rows(x, step, t, valid, d, dmask)
            if HALVES:
                acc_hi += _load_rows(x, step, t, valid, d + half, dmask)
        if not FAN_IN:
            acc = acc / f
            acc_hi = acc_hi / f
    return acc, acc_hi


@triton.jit
def _put(out, head_dim, rows, acc, d, dmask):
    """Store pooled rows at their sub-sequence rows; out points at row 0 of this (batch, head)."""
    m = rows.mask[:, None] & dmask[None, :]
    tl.store(out + rows.pos[:, None] * head_dim + d[None, :], acc.to(out.dtype.element_ty), mask=m)


class Heads(NamedTuple):
    """The launch's tensors at one (batch, head): each input at its token 0 with its token stride, each output
    at its row 0."""

    xs: tuple
    steps: tuple
    outs: tuple


@triton.jit
def _heads(XS, STRIDES, OUTS, b, hx, bh, sel_len, head_dim):
    xs = ()
    steps = ()
    outs = ()
    for i in tl.static_range(len(XS)):
        sb, sh, sn = STRIDES[i]
        xs = xs + (XS[i] + b.to(tl.int64) * sb + hx.to(tl.int64) * sh,)
        steps = steps + (sn,)
        outs = outs + (OUTS[i] + bh.to(tl.int64) * sel_len * head_dim,)
    return Heads(xs, steps, outs)


@triton.jit
def _gather_block(
    heads,
    rope,
    rows,
    f,
    seq_len,
    head_dim,
    TOP: tl.constexpr,
    STEP: tl.constexpr,
    FAN_IN: tl.constexpr,
    ROT: tl.constexpr,
    HAS_POS: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    """The rows of one block (one span f) for every tensor of the launch. With ROT > 0 the first ROT tensors are
    pooled as two halves (one loop over the span) and turned at the last token of each entry's span (spec
    section 5a: lo' = lo cos - hi sin, hi' = hi cos + lo sin), the angles computed once for all of them; the
    others (v) are pooled at full width, as in pre mode."""
    d = tl.arange(0, BLOCK_D)
    dmask = d < head_dim
    if ROT > 0:
        half = head_dim // 2
        cos, sin = entry_angles(rows.start + f - 1, rows.mask, rope, seq_len, half, HAS_POS, BLOCK_H)
        dh = tl.arange(0, BLOCK_H)
        hmask = dh < half
    if FAN_IN:  # the backward of the scatter: entry i's rows are dO at its fan-out positions
        rows = Rows(rows.start + f - 1, rows.mask, rows.pos)
    for i in tl.static_range(len(heads.xs)):
        x, step, out = heads.xs[i], heads.steps[i], heads.outs[i]
        if i < ROT:
            lo, hi = _pool(x, step, rows, f, seq_len, dh, hmask, half, TOP, STEP, FAN_IN, True)
            lo, hi = lo * cos - hi * sin, hi * cos + lo * sin
            _put(out, head_dim, rows, lo, dh, hmask)
            _put(out, head_dim, rows, hi, dh + half, hmask)
        else:
            acc, _ = _pool(x, step, rows, f, seq_len, d, dmask, 0, TOP, STEP, FAN_IN, False)
            _put(out, head_dim, rows, acc, d, dmask)


@triton.jit
def _gather_kernel(
    XS,
    STRIDES,
    OUTS,
    LM_IDX,
    LM_POS,
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
    spin_cycles,
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
    heads = _heads(XS, STRIDES, OUTS, b, hx, bh, sel_len, head_dim)
    rope = kernel_rope(INV_FREQ, POS, pos_bstride, pos_offset, b)
    ibase = (b * (x_heads // group) + hx // group).to(tl.int64) * sel_len + tile * tile_len
    if r < blocks_top:
        # coarsest level: consecutive entries of the tile's chunk span consecutive tokens
        rows = r * BLOCK_R + tl.arange(0, BLOCK_R)
        rmask = rows < chunk
        pos = tl.load(LM_POS + ibase + rows, mask=rmask, other=0)
        start = (tile * chunk + rows).to(tl.int64) * TOP_SPAN
        block = Rows(start, rmask, pos)
        _gather_block(
            heads, rope, block, TOP_SPAN, seq_len, head_dim, True, TOP_STEP, FAN_IN, ROT, HAS_POS, BLOCK_D, BLOCK_H
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
        block = Rows((pyr - off) * f, rows >= 0, pos)
        _gather_block(heads, rope, block, f, seq_len, head_dim, False, TOP_STEP, FAN_IN, ROT, HAS_POS, BLOCK_D, BLOCK_H)


def _outputs(xs: Sequence[torch.Tensor], sel_len: int) -> list:
    """One (B, Hx, S, D) output per tensor, all of them in one allocation when they share a dtype (the forward's
    q, k, v: one allocator call instead of three; the three are kept and freed together by the layer anyway)."""
    b, hx, _, d = xs[0].shape
    if len(xs) > 1 and all(x.dtype == xs[0].dtype for x in xs):
        return list(alloc.empty(len(xs), b, hx, sel_len, d, dtype=xs[0].dtype, device=xs[0].device).unbind(0))
    return [alloc.empty(b, hx, sel_len, d, dtype=x.dtype, device=x.device) for x in xs]


def _launch_constants(plan: LighthousePlan, hx: int, d: int, device, fan_in: bool, rotate: int, has_pos: bool, spin):
    """(grid, span and offset tables, the size arguments, the compile-time arguments) of a gather launch: the same
    for every call of a plan at these sizes, so computed once (plan.memo) and not per call."""
    key = ("gather", hx, d, device, fan_in, rotate, has_pos, spin)
    hit = plan.memo.get(key)
    if hit is not None:
        return hit
    per_tile = sizes.cdiv(plan.chunk, BLOCK_R) + (plan.config.levels - 1) * TILE * plan.config.pooling // BLOCK_R
    spans, offsets = level_tables(plan, device)
    top_span = plan.spans[-1]
    block_d = sizes.next_pow2(d)
    size_args = (plan.seq_len, plan.selected_len, plan.chunk, plan.tile_len, hx, hx // plan.kv_heads, d)
    meta = dict(
        TOP_SPAN=top_span,
        TOP_STEP=min(sizes.next_pow2(top_span), TOP_STEP_MAX, max(1, 16384 // (BLOCK_R * block_d))),
        FAN_IN=fan_in,
        BLOCK_R=BLOCK_R,
        SPIN=spin > 0,
        **sizes.shared_meta(plan.config.levels, plan.config.pooling, d, rotate, has_pos, NUM_WARPS),
    )
    hit = plan.memo[key] = ((plan.tiles * per_tile, plan.batch * hx), spans, offsets, size_args, meta)
    return hit


def gather_launches(
    xs: Sequence[torch.Tensor],
    lm_idx: torch.Tensor,
    lm_pos: torch.Tensor,
    plan: LighthousePlan,
    fan_in: bool = False,
    rope: Optional[RopeArgs] = None,
    rotate: int = 0,
) -> Tuple[list, List[Launch]]:
    """(the outputs, allocated, and the launches that fill them, not made) of gather_many."""
    return sizes.launches_by_part(
        xs, rotate, lambda part, rot: _gather_launch(part, lm_idx, lm_pos, plan, fan_in, rope, rot)
    )


def _gather_launch(xs, lm_idx, lm_pos, plan: LighthousePlan, fan_in: bool, rope: Optional[RopeArgs], rotate: int):
    if rope is None or fan_in:
        rotate = 0
    xs = [x if x.stride(-1) == 1 else x.contiguous() for x in xs]
    sizes.check_one_shape("gather_many", xs)
    x0 = xs[0]
    _, hx, _, d = x0.shape
    outs = _outputs(xs, plan.selected_len)
    inv_freq, pos, pos_bstride, pos_offset, has_pos = launch_args(rope if rotate else None, lm_pos)
    spin_cycles = plant.spin_cycles("gather", plan.seq_len)
    grid, spans, offsets, size_args, meta = _launch_constants(
        plan, hx, d, x0.device, fan_in, rotate, has_pos, spin_cycles
    )
    args = (
        tuple(xs),
        tuple(x.stride()[:3] for x in xs),
        tuple(outs),
        lm_idx,
        lm_pos,
        spans,
        offsets,
        inv_freq,
        pos,
        *size_args,
        pos_bstride,
        pos_offset,
        spin_cycles,
    )
    return outs, Launch(_gather_kernel, grid, args, meta)


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
    per sizes.MAX_TENSORS tensors. With `rope` (post mode) the first `rotate` tensors are rotated."""
    outs, launches = gather_launches(xs, lm_idx, lm_pos, plan, fan_in, rope, rotate)
    for launch in launches:
        launch()
    return outs


def gather_rows(
    x: torch.Tensor, lm_idx: torch.Tensor, lm_pos: torch.Tensor, plan: LighthousePlan, fan_in: bool = False
) -> torch.Tensor:
    """x (B, Hx, N, D), Hx = Hkv or Hq -> (B, Hx, S, D) contiguous in x's dtype."""
    return gather_many([x], lm_idx, lm_pos, plan, fan_in)[0]
