"""Pull kernel: every token row sums its at most L contributions from a sub-sequence tensor.

Forward scatter: position t takes the row of entry i = (t + 1) // f - 1 of each level (spec section 6).
Backward of the pooling: token t takes the row of entry i = t // f of each level, divided by f.
Deterministic: no atomics, each output element written exactly once, no zero-filled buffer. One launch
serves up to three source tensors of one head count (dq, dk, dv): the inverse map is read once for all.
With rope='post' the pooling backward turns the first ROT sources (dq, dk) back by each entry's angle as it
pulls them (the transpose of the gather's rotation, kernels/rope.py), reading their rows as two halves. One
program then serves several heads of a batch, so that their shared angles are computed once. The sources not
turned (dv) go, by default (POST_SPLIT_UNROTATED), in a launch of their own, pre mode's, with its launch shape.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import triton
import triton.language as tl

from lighthouse.plan import LighthousePlan

from . import alloc, sizes
from .launch import Launch
from .rope import RopeArgs, entry_angles, kernel_rope, launch_args

BLOCK_T = 16  # token rows per program; tuned on the H200 (reports/PERF_NOTES.md, step 4)
NUM_WARPS = 4
# Post mode's launch shape, timed on the H200 (scripts/tune_pull_post.py, reports/h200/rope/tune-pull/,
# PERF_NOTES step 20): a program serves up to MAX_HEADS heads with one set of angles, with 4 warps, and dv goes in
# a launch of its own (pre mode's); the fastest of 64 shapes in the layer's fwd+bwd (post/pre 1.0095 host ahead,
# against 1.0513 for step 12's 8 warps with dv in the rotated launch). Module settings, read at each plan's first
# launch of a shape (the memo key holds them), so that the tuning script can time each shape.
POST_NUM_WARPS = 4
POST_BLOCK_T = 16  # token rows per post-mode program
MAX_HEADS = 8
MIN_PROGRAMS = 1024  # programs a post-mode pull keeps at least, to fill 132 SMs a few times over
#: dv (the sources RoPE does not turn) in a launch of its own, pre mode's, apart from the rotated dq, dk
POST_SPLIT_UNROTATED = True
#: every level's inverse-map load issued before the head's source rows are read (the kernel's HOIST)
POST_HOIST_INV = False


@triton.jit
def _take(src_base, pos, valid, d, dmask, head_dim):
    return tl.load(
        src_base + pos.to(tl.int64)[:, None] * head_dim + d[None, :], mask=valid[:, None] & dmask[None, :], other=0.0
    ).to(tl.float32)


@triton.jit
def _put(OUT, bh, seq_len, head_dim, t, acc, tmask, d, dmask):
    out = OUT + bh.to(tl.int64) * seq_len * head_dim
    tl.store(
        out + t[:, None].to(tl.int64) * head_dim + d[None, :],
        acc.to(OUT.dtype.element_ty),
        mask=tmask[:, None] & dmask[None, :],
    )


@triton.jit
def _pull_level(
    src_base, pos, valid, d, dmask, dh, hmask, half, head_dim, scale, cos, sin, acc, acc_hi, ROTATE: tl.constexpr
):
    """Add one level's source rows to a token block's accumulators. A source that is not rotated (dv, and every
    source in pre mode) at full width: acc += row * scale. A rotated one (dq, dk in post mode) as its two halves,
    turned back by the entry's angle (the transpose of the forward rotation: lo = lo' cos + hi' sin,
    hi = hi' cos - lo' sin), the level's scale already folded into cos and sin: two fused multiply-adds an
    element. acc_hi is the high half's accumulator; unused when not rotated."""
    if ROTATE:
        lo = _take(src_base, pos, valid, dh, hmask, head_dim)
        hi = _take(src_base, pos, valid, dh + half, hmask, head_dim)
        acc += lo * cos
        acc += hi * sin
        acc_hi += hi * cos
        acc_hi -= lo * sin
    else:
        acc += _take(src_base, pos, valid, d, dmask, head_dim) * scale
    return acc, acc_hi


@triton.jit
def _zeros(BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_H: tl.constexpr, ROTATE: tl.constexpr):
    """A source's accumulators: two halves (BLOCK_T, BLOCK_H) when it is rotated, else one full row block and a
    placeholder."""
    acc = tl.zeros((BLOCK_T, BLOCK_H if ROTATE else BLOCK_D), dtype=tl.float32)
    return acc, tl.zeros((BLOCK_T, BLOCK_H), dtype=tl.float32)


@triton.jit
def _put_rows(OUT, bh, seq_len, head_dim, t, acc, acc_hi, tmask, d, dmask, dh, hmask, half, ROTATE: tl.constexpr):
    """Store a source's accumulators: full rows, or (ROTATE) the two halves."""
    if ROTATE:
        _put(OUT, bh, seq_len, head_dim, t, acc, tmask, dh, hmask)
        _put(OUT, bh, seq_len, head_dim, t, acc_hi, tmask, dh + half, hmask)
    else:
        _put(OUT, bh, seq_len, head_dim, t, acc, tmask, d, dmask)


@triton.jit
def _level_angles(
    t,
    tmask,
    rope,
    seq_len,
    half,
    LEVELS: tl.constexpr,
    POOL: tl.constexpr,
    HAS_POS: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    """cos and sin (BLOCK_T, BLOCK_H) of every level's entry over the tokens t, times the level's pooling scale
    1/f, as tuples by level: the angle of an entry depends on its last token alone, so the heads of a program
    share them (and the scale's multiply is paid once per program, not per head)."""
    coss = ()
    sins = ()
    f = 1
    for _ in tl.static_range(LEVELS):
        last = (t.to(tl.int64) // f + 1) * f - 1  # the entry's last token: its RoPE position (spec 5a)
        cos, sin = entry_angles(last, tmask, rope, seq_len, half, HAS_POS, BLOCK_H)
        coss = coss + (cos * (1.0 / f),)
        sins = sins + (sin * (1.0 / f),)
        f = f * POOL
    return coss, sins


@triton.jit
def _level_rows(inv_base, t, tmask, n_pad, LEVELS: tl.constexpr, POOL: tl.constexpr, SCATTER: tl.constexpr):
    """Every level's sub-sequence row of the tokens t (-1: none) and its mask, as tuples by level, all loaded
    before the caller reads any row: the same loads as the level loop's, issued together (HOIST)."""
    poss = ()
    valids = ()
    f = 1
    off = 0
    for _ in tl.static_range(LEVELS):
        if SCATTER:
            entry = (t + 1) // f - 1
        else:
            entry = t // f
        valid = tmask & (entry >= 0)
        pos = tl.load(inv_base + off + entry, mask=valid, other=-1)
        poss = poss + (pos,)
        valids = valids + (valid & (pos >= 0),)
        off += n_pad // f
        f = f * POOL
    return poss, valids


@triton.jit
def _pull_kernel(
    SRC0,
    SRC1,
    SRC2,
    INV,
    OUT0,
    OUT1,
    OUT2,
    INV_FREQ,
    POS,
    seq_len,
    sel_len,
    n_pad,
    pyr_len,
    out_heads,
    group,
    head_dim,
    pos_bstride,
    pos_offset,
    NUM: tl.constexpr,
    LEVELS: tl.constexpr,
    POOL: tl.constexpr,
    SCATTER: tl.constexpr,
    ROT: tl.constexpr,
    HAS_POS: tl.constexpr,
    HEADS: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_H: tl.constexpr,
    HOIST: tl.constexpr = False,
):
    t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    head_groups = out_heads // HEADS
    b = tl.program_id(1) // head_groups
    h0 = (tl.program_id(1) % head_groups) * HEADS
    tmask = t < seq_len
    rope = kernel_rope(INV_FREQ, POS, pos_bstride, pos_offset, b)
    d = tl.arange(0, BLOCK_D)
    dmask = d < head_dim
    half = head_dim // 2
    dh = tl.arange(0, BLOCK_H)  # the halves of the rotated sources (post mode: dq, dk)
    hmask = dh < half
    if ROT > 0:  # the angles once for the program's HEADS heads (kernels/rope.py)
        coss, sins = _level_angles(t, tmask, rope, seq_len, half, LEVELS, POOL, HAS_POS, BLOCK_H)
    for hh in range(HEADS):
        h = h0 + hh
        bh = b * out_heads + h
        inv_base = INV + (b * (out_heads // group) + h // group).to(tl.int64) * pyr_len
        src_off = bh.to(tl.int64) * sel_len * head_dim
        acc0, hi0 = _zeros(BLOCK_T, BLOCK_D, BLOCK_H, ROT > 0)
        acc1, hi1 = _zeros(BLOCK_T, BLOCK_D, BLOCK_H, ROT > 1)
        acc2, hi2 = _zeros(BLOCK_T, BLOCK_D, BLOCK_H, ROT > 2)
        if HOIST:
            poss, valids = _level_rows(inv_base, t, tmask, n_pad, LEVELS, POOL, SCATTER)
        f = 1
        off = 0
        for level in tl.static_range(LEVELS):
            if HOIST:
                pos = poss[level]
                valid = valids[level]
            else:
                if SCATTER:
                    entry = (t + 1) // f - 1
                else:
                    entry = t // f
                valid = tmask & (entry >= 0)
                pos = tl.load(inv_base + off + entry, mask=valid, other=-1)
                valid = valid & (pos >= 0)
            if SCATTER:
                scale = 1.0
            else:
                scale = 1.0 / f  # f is a compile-time power of p: a constant multiply
            if ROT > 0:
                cos = coss[level]
                sin = sins[level]
            else:
                cos = scale
                sin = scale
            acc0, hi0 = _pull_level(
                SRC0 + src_off, pos, valid, d, dmask, dh, hmask, half, head_dim, scale, cos, sin, acc0, hi0, ROT > 0
            )
            if NUM > 1:
                acc1, hi1 = _pull_level(
                    SRC1 + src_off, pos, valid, d, dmask, dh, hmask, half, head_dim, scale, cos, sin, acc1, hi1, ROT > 1
                )
            if NUM > 2:
                acc2, hi2 = _pull_level(
                    SRC2 + src_off, pos, valid, d, dmask, dh, hmask, half, head_dim, scale, cos, sin, acc2, hi2, ROT > 2
                )
            off += n_pad // f
            f = f * POOL
        _put_rows(OUT0, bh, seq_len, head_dim, t, acc0, hi0, tmask, d, dmask, dh, hmask, half, ROT > 0)
        if NUM > 1:
            _put_rows(OUT1, bh, seq_len, head_dim, t, acc1, hi1, tmask, d, dmask, dh, hmask, half, ROT > 1)
        if NUM > 2:
            _put_rows(OUT2, bh, seq_len, head_dim, t, acc2, hi2, tmask, d, dmask, dh, hmask, half, ROT > 2)


def heads_per_program(heads: int, blocks: int, most: int, min_programs: int) -> int:
    """How many heads one pull program serves in post mode: the largest divisor of `heads` up to `most` that
    leaves at least `min_programs` programs (`blocks` token blocks per head), else 1. The angles are computed
    once per program, so this divides their cost by it."""
    for n in range(min(most, heads), 1, -1):
        if heads % n == 0 and blocks * (heads // n) >= min_programs:
            return n
    return 1


def _launch_constants(plan: LighthousePlan, hs: int, d: int, scatter: bool, rotate: int, has_pos: bool):
    """(grid, the size arguments, the compile-time arguments but NUM) of a pull launch: the same for every call of a
    plan at these sizes, so computed once (plan.memo) and not per call."""
    # the settings in the key: a plan (kept by plan_for's cache) then never launches another setting's shape
    key = ("pull", hs, d, scatter, rotate, has_pos, BLOCK_T, NUM_WARPS) + (
        (POST_BLOCK_T, POST_NUM_WARPS, MAX_HEADS, MIN_PROGRAMS, POST_HOIST_INV) if rotate else ()
    )
    hit = plan.memo.get(key)
    if hit is not None:
        return hit
    block_d = sizes.next_pow2(d)
    block_t = max(16, min(POST_BLOCK_T if rotate else BLOCK_T, 8192 // block_d))
    blocks = sizes.cdiv(plan.seq_len, block_t)
    heads = heads_per_program(hs, blocks * plan.batch, MAX_HEADS, MIN_PROGRAMS) if rotate else 1
    size_args = (plan.seq_len, plan.selected_len, plan.padded_len, plan.pyramid_len, hs, hs // plan.kv_heads, d)
    meta = dict(
        SCATTER=scatter,
        HEADS=heads,
        BLOCK_T=block_t,
        **sizes.shared_meta(
            plan.config.levels, plan.config.pooling, d, rotate, has_pos, POST_NUM_WARPS if rotate else NUM_WARPS
        ),
    )
    if rotate and POST_HOIST_INV:  # passed only when set: every other launch keeps its arguments of before
        meta["HOIST"] = True
    hit = plan.memo[key] = ((blocks, plan.batch * hs // heads), size_args, meta)
    return hit


def pull_launches(
    srcs: Sequence[torch.Tensor],
    inv: torch.Tensor,
    plan: LighthousePlan,
    scatter: bool,
    dtype=None,
    rope: Optional[RopeArgs] = None,
    rotate: int = 0,
) -> Tuple[list, List[Launch]]:
    """(the outputs, allocated, and the launches that fill them, not made) of pull_many. POST_SPLIT_UNROTATED:
    in post mode the sources not turned (dv) go in launches of their own, pre mode's."""

    def make(part, rot):
        return _pull_launch(part, inv, plan, scatter, dtype, rope, rot)

    if POST_SPLIT_UNROTATED and rope is not None and not scatter and 0 < rotate < len(srcs):
        turned, launches = sizes.launches_by_part(srcs[:rotate], rotate, make)
        kept, more = sizes.launches_by_part(srcs[rotate:], 0, make)
        return turned + kept, launches + more
    return sizes.launches_by_part(srcs, rotate, make)


def _pull_launch(srcs, inv, plan: LighthousePlan, scatter: bool, dtype, rope: Optional[RopeArgs], rotate: int):
    if rope is None or scatter:
        rotate = 0
    srcs = [s if s.is_contiguous() else s.contiguous() for s in srcs]
    sizes.check_one_shape("pull_many", srcs)
    b, hs, _, d = srcs[0].shape
    outs = [alloc.empty(b, hs, plan.seq_len, d, dtype=dtype or s.dtype, device=s.device) for s in srcs]
    pad = sizes.MAX_TENSORS - len(srcs)
    inv_freq, pos, pos_bstride, pos_offset, has_pos = launch_args(rope if rotate else None, inv)
    grid, size_args, meta = _launch_constants(plan, hs, d, scatter, rotate, has_pos)
    args = (
        *srcs,
        *[srcs[0]] * pad,
        inv,
        *outs,
        *[outs[0]] * pad,
        inv_freq,
        pos,
        *size_args,
        pos_bstride,
        pos_offset,
    )
    return outs, Launch(_pull_kernel, grid, args, dict(NUM=len(srcs), **meta))


def pull_many(
    srcs: Sequence[torch.Tensor],
    inv: torch.Tensor,
    plan: LighthousePlan,
    scatter: bool,
    dtype=None,
    rope: Optional[RopeArgs] = None,
    rotate: int = 0,
) -> list:
    """Sources (B, Hs, S, D) of one shape -> (B, Hs, N, D) each: forward scatter (scatter=True) or pooling
    backward, in one launch per sizes.MAX_TENSORS sources. With `rope` (post mode) the pooling backward turns the
    first `rotate` sources back by their entries' angles (the others in a launch of their own: pull_launches)."""
    outs, launches = pull_launches(srcs, inv, plan, scatter, dtype, rope, rotate)
    for launch in launches:
        launch()
    return outs


def pull_rows(src: torch.Tensor, inv: torch.Tensor, plan: LighthousePlan, scatter: bool, dtype=None) -> torch.Tensor:
    """src (B, Hs, S, D) -> (B, Hs, N, D): forward scatter (scatter=True) or pooling backward."""
    return pull_many([src], inv, plan, scatter, dtype)[0]
