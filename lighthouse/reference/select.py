"""Stage select, spec sections 3 and 4: coarse-to-fine selection per (batch, kv head, tile), then causal order.

Ties in a score are broken towards the lower entry index (stable sorts over ascending candidates),
so selection is deterministic and every implementation can reproduce it.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..config import HALF_TILE
from ..plan import LighthousePlan


def _mask_of(indices: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(like, dtype=torch.bool).scatter_(-1, indices, True)


def refine_mask(sq: torch.Tensor, sk: torch.Tensor) -> torch.Tensor:
    """Sq = top-64 by sq; Sk = top-64 by sk among the rest; returns the mask of Sq | Sk (128 True)."""
    by_q = torch.sort(sq, dim=-1, descending=True, stable=True).indices
    in_q = _mask_of(by_q[..., :HALF_TILE], sq)
    by_k = torch.sort(sk, dim=-1, descending=True, stable=True).indices
    taken = in_q.gather(-1, by_k).to(torch.int8)  # in sk order: 1 where already in Sq
    first_free = torch.sort(taken, dim=-1, stable=True).indices[..., :HALF_TILE]
    in_k = _mask_of(by_k.gather(-1, first_free), sk)
    return in_q | in_k


def select_entries(
    sq_levels: Sequence[torch.Tensor], sk_levels: Sequence[torch.Tensor], plan: LighthousePlan
) -> torch.Tensor:
    """Token-score pyramids (B, Hkv, n_l) -> the sub-sequence (B, Hkv, S) as pyramid indices, causal order.

    Position keys are exact integers in units of 2**-(L-1) tokens: a token or an unrefined entry sorts at
    the first token of its span, a refined entry just after the last token of its span (after all of its
    descendants, before anything that starts later).
    """
    cfg = plan.config
    levels, p = cfg.levels, cfg.pooling
    unit = 2 ** (levels - 1)
    b, h = sq_levels[0].shape[:2]
    device = sq_levels[0].device
    tile_starts = torch.arange(plan.tiles, device=device)[:, None] * plan.chunk
    cand = (tile_starts + torch.arange(plan.chunk, device=device)).expand(b, h, -1, -1)  # (B, H, T, C)
    children = torch.arange(p, device=device)
    indices, keys = [], []
    for level in range(levels, 1, -1):
        f = p ** (level - 1)
        flat = cand.flatten(2)
        refined = refine_mask(
            sq_levels[level - 1].gather(-1, flat).view_as(cand), sk_levels[level - 1].gather(-1, flat).view_as(cand)
        )
        keys.append(torch.where(refined, (cand + 1) * f * unit - 2 ** (levels - level), cand * f * unit))
        indices.append(cand + plan.offsets[level - 1])
        kept = cand[refined].view(*cand.shape[:3], -1)  # ascending, as cand is
        cand = (kept[..., None] * p + children).flatten(-2)
    keys.append(cand * unit)
    indices.append(cand)
    keys, indices = torch.cat(keys, dim=-1), torch.cat(indices, dim=-1)
    order = keys.argsort(dim=-1)  # keys never tie; tiles are already in sequence order
    return indices.gather(-1, order).flatten(2)
