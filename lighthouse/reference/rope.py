"""Stage rope, spec section 5a (`rope="post"`): rotate the gathered q and k rows at the position of the last
token each entry covers. Runs between gather and SDPA; `pre` never calls it."""

from __future__ import annotations

from typing import Optional

import torch

from ..plan import LighthousePlan
from ..rope import inverse_frequencies, last_token_table
from .gather import accumulation_dtype


def entry_positions(
    indices: torch.Tensor, plan: LighthousePlan, positions: Optional[torch.Tensor] = None, offset: int = 0
) -> torch.Tensor:
    """(B, Hkv, S) pyramid indices -> (B, Hkv, S) int64 rotation position of every sub-sequence entry: the
    position of the last token the entry covers (positions[b, t], or offset + t when positions is None)."""
    last = last_token_table(plan, indices.device)[indices]
    if positions is None:
        return last + offset
    b, h, s = last.shape
    return positions.expand(b, -1).gather(1, last.reshape(b, h * s)).view(b, h, s)


def rotate(x: torch.Tensor, pos: torch.Tensor, plan: LighthousePlan) -> torch.Tensor:
    """x (B, H, S, D) rotated by RoPE at pos (B, H, S): dimension j pairs with j + D/2 and turns by the angle
    pos * inv_freq[j] (angle rounded to float32, as transformers computes it). Computed in at least float32,
    rounded once to x's dtype."""
    inv_freq = inverse_frequencies(plan.config, x.shape[-1]).to(x.device)
    angle = pos.to(torch.float32)[..., None] * inv_freq
    cos, sin = angle.cos().to(accumulation_dtype(x.dtype)), angle.sin().to(accumulation_dtype(x.dtype))
    lo, hi = x.to(accumulation_dtype(x.dtype)).chunk(2, dim=-1)
    return torch.cat([lo * cos - hi * sin, hi * cos + lo * sin], dim=-1).to(x.dtype)
