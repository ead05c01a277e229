"""Stage scatter, spec section 6: fan the sub-sequence outputs back to token positions, as a "pull".

Entry i of level l (span f) is added to positions [i*f + f - 1, i*f + 2f - 2]; read the other way, position
t receives from level l the entry i = (t + 1) // f - 1, if that entry was emitted. So every position pulls
at most L rows, with no atomics and no zero-filled buffer, and positions with no contribution are zero.
"""

from __future__ import annotations

import torch

from ..plan import LighthousePlan
from .gather import accumulation_dtype


def inverse_map(indices: torch.Tensor, plan: LighthousePlan) -> torch.Tensor:
    """(B, Hkv, S) pyramid indices -> (B, Hkv, P) sub-sequence position of every pyramid entry, or -1."""
    b, h, s = indices.shape
    inv = torch.full((b, h, plan.pyramid_len), -1, dtype=torch.long, device=indices.device)
    positions = torch.arange(s, device=indices.device).expand(b, h, s)
    return inv.scatter_(-1, indices, positions)


def source_positions(inv: torch.Tensor, plan: LighthousePlan, level: int) -> torch.Tensor:
    """(B, Hkv, N) sub-sequence row that each real position pulls from 1-based `level`, or -1."""
    f = plan.spans[level - 1]
    t = torch.arange(plan.seq_len, device=inv.device)
    entry = (t + 1) // f - 1
    rows = inv[..., plan.offsets[level - 1] + entry.clamp(min=0)]
    return torch.where(entry >= 0, rows, -1)


def scatter_back(out_sub: torch.Tensor, indices: torch.Tensor, plan: LighthousePlan) -> torch.Tensor:
    """(B, Hq, S, D) sub-sequence output -> (B, Hq, N, D): each position sums its <= L contributions."""
    inv = inverse_map(indices, plan)
    d = out_sub.shape[-1]
    total = None
    for level in range(1, plan.config.levels + 1):
        rows = source_positions(inv, plan, level).repeat_interleave(plan.group, dim=1)
        pulled = out_sub.to(accumulation_dtype(out_sub.dtype)).gather(
            2, rows.clamp(min=0)[..., None].expand(-1, -1, -1, d)
        )
        pulled = pulled * (rows >= 0)[..., None]
        total = pulled if total is None else total + pulled
    return total.to(out_sub.dtype)
