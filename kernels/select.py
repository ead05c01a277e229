"""Selection kernel: spec sections 3 and 4 for one (batch, kv head, tile) per program, all levels in one launch.

Top-64 sets come from a threshold search over packed int64 keys (an order-preserving image of the float32
score in the high bits, a tie-break towards the lower candidate in the low bits), so ties resolve exactly as
in the PyTorch path. Emitted entries get exact integer position keys; every level's entries come out in
ascending order, so merging the L lists (binary searches) puts the tile in causal order. No sorting network:
those compiled for a minute per configuration (reports/PERF_NOTES.md, step 7). Besides the causal-order
indices the kernel writes what the gather and scatter kernels need: a level-major list of the tile's entries
(LM_IDX, LM_POS: pyramid index and sub-sequence row) and the inverse map INV (sub-sequence row of every
emitted pyramid entry).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

from lighthouse.config import TILE
from lighthouse.plan import LighthousePlan

from . import alloc, plant
from .launch import Launch
from .plant import spin

# Sizes that one program handles in registers; past them selection runs on the PyTorch path.
MAX_CANDIDATES = 4096  # at most 2**CANDIDATE_BITS: the threshold search reads 12 candidate bits
CANDIDATE_BITS = 12
MAX_TILE_ENTRIES = 8192
# Warps per program; None picks by tile size: 16 from 2048 entries on, the sorts are latency bound and
# 96-400 programs leave most of the SMs' warp slots empty (reports/PERF_NOTES.md, step 4).
NUM_WARPS = None


@triton.jit
def _packed(score, j):
    """Order-preserving int64 image of a float32 score; among equal scores the lower j ranks higher."""
    bits = score.to(tl.int32, bitcast=True).to(tl.int64) & 0xFFFFFFFF
    mono = tl.where(bits >= 0x80000000, 0xFFFFFFFF - bits, bits + 0x80000000)
    return mono * 2147483648 + (2147483647 - j)


@triton.jit
def _kth_largest(values, K: tl.constexpr):
    """The K-th largest of `values` (distinct packed keys >= 0, -1 where invalid; at most 4096 valid).

    A search for the threshold two bits at a time: 16 rounds over the score bits, then 6 over the candidate
    bits (a packed key of candidate j < 4096 always has bits 30..12 set), each round one block-wide sum that
    counts three thresholds at once (16-bit fields). It replaces a full bitonic sort, whose fully unrolled
    network took seconds of compile time per sort (reports/PERF_NOTES.md, step 7)."""
    thr = tl.zeros((1,), tl.int64)
    unit = tl.full((1,), 2**61, tl.int64)
    for _ in range(16):
        thr = _radix_round(values, thr, unit, K)
        unit = unit // 4
    thr = thr + (2**31 - 2**12)
    unit = tl.full((1,), 2**10, tl.int64)
    for _ in range(6):
        thr = _radix_round(values, thr, unit, K)
        unit = unit // 4
    return thr


@triton.jit
def _radix_round(values, thr, unit, K: tl.constexpr):
    """thr + d * unit for the largest d in 0..3 with at least K values >= it."""
    packed = (
        (values >= thr + unit).to(tl.int64)
        + ((values >= thr + 2 * unit).to(tl.int64) << 16)
        + ((values >= thr + 3 * unit).to(tl.int64) << 32)
    )
    counts = tl.sum(packed, axis=0)
    d = (
        ((counts & 0xFFFF) >= K).to(tl.int64)
        + (((counts >> 16) & 0xFFFF) >= K).to(tl.int64)
        + ((counts >> 32) >= K).to(tl.int64)
    )
    return thr + d * unit


@triton.jit
def _refine(sq, sk, valid, j, HALF: tl.constexpr):
    """Mask of Sq (top HALF by sq) | Sk (top HALF by sk among the rest)."""
    pq = tl.where(valid, _packed(sq, j), -1)
    in_q = pq >= _kth_largest(pq, HALF)
    pk = tl.where(valid & (~in_q), _packed(sk, j), -1)
    in_k = pk >= _kth_largest(pk, HALF)
    return in_q | in_k


@triton.jit
def _kept_in_order(cand, keep, SCRATCH):
    """The 128 kept candidates (exactly 128 are kept) in ascending order. Candidates come in ascending order
    along the vector, so the r-th kept one is the one with r kept before it: a prefix count, a store to a
    128-entry scratch row of global memory and a load back (instead of a sort)."""
    rank = tl.cumsum(keep.to(tl.int32), axis=0) - 1
    tl.store(SCRATCH + rank, cand, mask=keep)
    tl.debug_barrier()
    return tl.load(SCRATCH + tl.arange(0, 128))


@triton.jit
def _count_before(KEYS, start, n, key, ties, STEP0: tl.constexpr):
    """For every element: how many of the n ascending keys KEYS[start : start + n] come before `key` (those
    < key, and those == key where `ties`). A binary search, STEP0 >= n a power of two."""
    pos = tl.zeros_like(key)
    step = tl.full((), STEP0, tl.int32)
    while step > 0:
        nxt = pos + step
        x = tl.load(KEYS + start + nxt - 1, mask=nxt <= n, other=0)
        before = (nxt <= n) & ((x < key) | (ties & (x == key)))
        pos = tl.where(before, nxt, pos)
        step = step // 2
    return pos


@triton.jit
def _select_kernel(
    SQ,
    SK,
    KEYS,
    LM_IDX,
    LM_POS,
    IDX_OUT,
    INV,
    pyr_len,
    sel_len,
    n_pad,
    chunk,
    tile_len,
    spin_cycles,
    LEVELS: tl.constexpr,
    POOL: tl.constexpr,
    POOL_P2: tl.constexpr,
    CHUNK_P2: tl.constexpr,
    TILE_P2: tl.constexpr,
    SPIN: tl.constexpr,
):
    if SPIN:  # test-only planted slowdown (kernels/plant.py); absent from the kernel otherwise
        spin(spin_cycles)
    tile = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    score_base = bh * pyr_len
    out_base = bh * sel_len + tile * tile_len
    UNIT: tl.constexpr = 2 ** (LEVELS - 1)  # position keys count in 2**-(L-1) tokens

    # offset and span of the coarsest level
    off = 0
    n_level = n_pad
    span = 1
    for _ in tl.static_range(LEVELS - 1):
        off += n_level
        n_level = n_level // POOL
        span = span * POOL

    # level L: the tile's chunk of coarsest entries (the tile's IDX_OUT row is scratch until the end)
    j = tl.arange(0, CHUNK_P2).to(tl.int64)
    valid = j < chunk
    cand = tile * chunk + j
    sq = tl.load(SQ + score_base + off + cand, mask=valid, other=float("-inf"))
    sk = tl.load(SK + score_base + off + cand, mask=valid, other=float("-inf"))
    refined = _refine(sq, sk, valid, j, 64) & valid
    key = tl.where(refined, (cand + 1) * span * UNIT - 1, cand * span * UNIT)
    tl.store(KEYS + out_base + j, key, mask=valid)
    tl.store(LM_IDX + out_base + j, off + cand, mask=valid)
    parents = _kept_in_order(cand, refined, IDX_OUT + out_base)

    # levels L-1 .. 1: the POOL children of every refined parent
    row = tl.arange(0, 128)[:, None].to(tl.int64)
    col = tl.arange(0, POOL_P2)[None, :].to(tl.int64)
    jj = tl.reshape(row * POOL + col, (128 * POOL_P2,))
    valid = tl.reshape((col < POOL) & (row >= 0), (128 * POOL_P2,))
    slot_base = chunk
    for step in tl.static_range(1, LEVELS):  # level L - step
        span = span // POOL
        n_level = n_pad // span
        off -= n_level
        cand = tl.reshape(parents[:, None] * POOL + col, (128 * POOL_P2,))
        slot = slot_base + jj
        if LEVELS - step > 1:
            sq = tl.load(SQ + score_base + off + cand, mask=valid, other=float("-inf"))
            sk = tl.load(SK + score_base + off + cand, mask=valid, other=float("-inf"))
            refined = _refine(sq, sk, valid, jj, 64) & valid
            key = tl.where(refined, (cand + 1) * span * UNIT - (1 << step), cand * span * UNIT)
            parents = _kept_in_order(cand, refined, IDX_OUT + out_base + step * 128)
        else:
            key = cand * UNIT
        tl.store(KEYS + out_base + slot, key, mask=valid)
        tl.store(LM_IDX + out_base + slot, off + cand, mask=valid)
        slot_base += 128 * POOL

    # Causal order: the tile's entries form LEVELS ascending lists in KEYS (level L, then L-1, ... 1), so an
    # entry's causal row is the number of entries of every list that precede it (binary searches; equal
    # keys, which the position keys never produce, would go in slot order).
    tl.debug_barrier()
    e = tl.arange(0, TILE_P2)
    ve = e < tile_len
    key = tl.load(KEYS + out_base + e, mask=ve, other=0)
    pyr = tl.load(LM_IDX + out_base + e, mask=ve, other=0)
    own = tl.where(e < chunk, 0, (e - chunk) // (128 * POOL) + 1)
    rank = _count_before(KEYS, out_base, chunk, key, own > 0, CHUNK_P2)
    for lst in tl.static_range(1, LEVELS):
        rank += _count_before(
            KEYS, out_base + chunk + (lst - 1) * 128 * POOL, 128 * POOL, key, own > lst, 128 * POOL_P2
        )
    pos = tile * tile_len + rank
    tl.store(IDX_OUT + out_base + rank, pyr, mask=ve)
    tl.store(LM_POS + out_base + e, pos, mask=ve)
    tl.store(INV + score_base + pyr, pos.to(tl.int32), mask=ve)


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def fits_in_kernel(plan: LighthousePlan) -> bool:
    """Whether one program can hold a tile's candidates and entries in registers."""
    p2 = _next_pow2(plan.config.pooling)
    limit = min(MAX_CANDIDATES, 1 << CANDIDATE_BITS)
    return _next_pow2(plan.chunk) <= limit and TILE * p2 <= limit and _next_pow2(plan.tile_len) <= MAX_TILE_ENTRIES


class Selection:
    """The selected sub-sequence and the maps the gather and scatter kernels read.

    indices: (B, Hkv, S) int64 pyramid indices in causal order.
    lm_idx, lm_pos: (B, Hkv, S) int64, level-major per tile (the tile's coarsest chunk, then 128*p
        entries per finer level): pyramid index and sub-sequence row of each entry.
    inv: (B, Hkv, P) int32 sub-sequence row of every pyramid entry, -1 where not emitted.
    """

    def __init__(self, indices, lm_idx, lm_pos, inv):
        self.indices, self.lm_idx, self.lm_pos, self.inv = indices, lm_idx, lm_pos, inv


def select_launch(
    sq_pyr: torch.Tensor, sk_pyr: torch.Tensor, plan: LighthousePlan, inv: Optional[torch.Tensor] = None
) -> Tuple[Selection, Launch]:
    """(the Selection, allocated, and the launch that fills it, not made) of select_in_kernel."""
    b, h, p_len = sq_pyr.shape
    s = plan.selected_len
    dev = sq_pyr.device
    # the four (B, Hkv, S) int64 maps in one allocation (one allocator call per forward, not four)
    keys, lm_idx, lm_pos, indices = alloc.empty(4, b, h, s, dtype=torch.int64, device=dev).unbind(0)
    if inv is None:
        inv = torch.full((b, h, p_len), -1, dtype=torch.int32, device=dev)
    tile_p2 = _next_pow2(plan.tile_len)
    spin_cycles = plant.spin_cycles("select", plan.seq_len)
    args = (
        sq_pyr,
        sk_pyr,
        keys,
        lm_idx,
        lm_pos,
        indices,
        inv,
        p_len,
        s,
        plan.padded_len,
        plan.chunk,
        plan.tile_len,
        spin_cycles,
    )
    meta = dict(
        LEVELS=plan.config.levels,
        POOL=plan.config.pooling,
        POOL_P2=_next_pow2(plan.config.pooling),
        CHUNK_P2=_next_pow2(plan.chunk),
        TILE_P2=tile_p2,
        SPIN=spin_cycles > 0,
        num_warps=NUM_WARPS or (4 if tile_p2 < 2048 else 16),
    )
    return Selection(indices, lm_idx, lm_pos, inv), Launch(_select_kernel, (plan.tiles, b * h), args, meta)


def select_in_kernel(
    sq_pyr: torch.Tensor, sk_pyr: torch.Tensor, plan: LighthousePlan, inv: Optional[torch.Tensor] = None
) -> Selection:
    """Score pyramids (B, Hkv, P) float32 -> Selection, in one launch of grid (tiles, B*Hkv). `inv` is the
    inverse map already set to -1 (score_pyramids does that on the way); None allocates one here."""
    sel, launch = select_launch(sq_pyr, sk_pyr, plan, inv)
    launch()
    return sel


def selection_from_indices(indices: torch.Tensor, plan: LighthousePlan) -> Selection:
    """Build the level-major lists and the inverse map from causal-order indices (PyTorch fallback)."""
    b, h, s = indices.shape
    levels = plan.config.levels
    offsets = torch.tensor(plan.offsets, device=indices.device)
    level = torch.bucketize(indices, offsets, right=True)  # 1-based level of each entry
    tile = torch.arange(s, device=indices.device) // plan.tile_len
    order_key = (tile * (levels + 1) + (levels - level)) * s + torch.arange(s, device=indices.device)
    lm_pos = order_key.argsort(dim=-1)
    lm_idx = indices.gather(-1, lm_pos)
    inv = torch.full((b, h, plan.pyramid_len), -1, dtype=torch.int32, device=indices.device)
    inv.scatter_(-1, indices, torch.arange(s, dtype=torch.int32, device=indices.device).expand(b, h, s).contiguous())
    return Selection(indices, lm_idx, lm_pos, inv)
