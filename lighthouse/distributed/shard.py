"""How a sequence is cut across the ranks of a context-parallel group: contiguous, tile-aligned shards.

Shard r holds tokens [r * N_pad / W, (r + 1) * N_pad / W) of the sequence (N_pad: N zero-padded as on one
device), so the last rank(s) hold fewer tokens when N does not divide evenly. Why contiguous, not the
load-balanced head/tail shards of ring attention:

- selection tiles are contiguous ranges of the coarsest level; with W dividing the k/128 tiles, every
  rank holds whole tiles, so pooling, scores (norm scorer), selection, gather and scatter are all local
  and cost the same on every rank (they are linear in the rank's tokens);
- the one quadratic step, SDPA on the sub-sequence, runs head-parallel after the all-to-all: every rank
  attends over the whole sub-sequence for H/W heads, so causal masking does not unbalance it either.
  Head/tail shards fix an imbalance that only sequence-parallel attention has; here they would only cut
  tiles in two and add an exchange.
"""

from __future__ import annotations

from typing import Tuple

import torch

from ..config import LighthouseConfig


def shard_len(n: int, world: int, config: LighthouseConfig) -> int:
    """Tokens per shard (all but the last ranks): N_pad / W, a whole number of selection tiles."""
    if isinstance(world, bool) or not isinstance(world, int) or world < 1:
        raise ValueError(f"the context-parallel world size must be an integer >= 1, got {world!r}")
    if config.tiles % world:
        raise ValueError(
            f"context parallelism over W={world} ranks needs the topk/128 = {config.tiles} selection tiles to "
            f"split evenly across the ranks (each rank selects whole tiles locally): topk={config.topk} must be "
            f"a multiple of 128 * W = {128 * world}"
        )
    n_pad = config.padded_len(n)
    shard = n_pad // world
    if n - (world - 1) * shard <= 0:
        raise ValueError(
            f"sequence length N={n} leaves the last of W={world} ranks without tokens (shards of {shard} "
            f"tokens); use fewer ranks or a longer sequence"
        )
    return shard


def shard_bounds(n: int, world: int, rank: int, config: LighthouseConfig) -> Tuple[int, int]:
    """[start, stop) of rank `rank`'s tokens in a sequence of N tokens."""
    if not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, {world}), got {rank}")
    shard = shard_len(n, world, config)
    start = rank * shard
    return start, min(start + shard, n)


def expected_lengths(n: int, world: int, config: LighthouseConfig) -> list:
    """Tokens each rank must hold for a sequence of N tokens."""
    return [stop - start for start, stop in (shard_bounds(n, world, r, config) for r in range(world))]


def shard_sequence(x: torch.Tensor, world: int, rank: int, config: LighthouseConfig, dim: int = 2) -> torch.Tensor:
    """This rank's shard of a full (B, H, N, D) tensor (a view): how to cut q, k, v for cp_group=."""
    start, stop = shard_bounds(x.shape[dim], world, rank, config)
    return x.narrow(dim, start, stop - start)
