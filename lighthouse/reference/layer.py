"""The whole layer in plain PyTorch, stage by stage: scores -> select -> gather -> dense SDPA -> scatter."""

from __future__ import annotations

from typing import Optional

import torch

from ..plan import LighthousePlan
from ..sdpa import causal_sdpa
from .gather import gather_entries
from .rope import entry_positions, rotate
from .scatter import scatter_back
from .scores import score_pyramid, token_scores
from .select import select_entries


@torch.no_grad()
def select_torch(q, k, v, plan: LighthousePlan, gate: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The sub-sequence (B, Hkv, S) as indices into the concatenated pyramid, in causal order."""
    sq, sk = token_scores(q, k, v, plan, gate)
    return select_entries(score_pyramid(sq, plan), score_pyramid(sk, plan), plan)


def lighthouse_attention_torch(q, k, v, plan: LighthousePlan, gate=None, indices=None, positions=None) -> torch.Tensor:
    """(B, Hq, N, D) output; `indices` may be given to hold the selection fixed (causality tests).
    rope="post": q and k are raw; the gathered rows are rotated at their entries' last-token positions
    (`positions` (1 or B, N) int64: the token positions, None for 0..N-1)."""
    if indices is None:
        indices = select_torch(q, k, v, plan, gate)
    g = plan.group
    q_sub = gather_entries(q, indices, plan, g)
    k_sub = gather_entries(k, indices, plan, 1)
    v_sub = gather_entries(v, indices, plan, 1)
    if plan.config.rope == "post":
        pos = entry_positions(indices, plan, positions)
        q_sub, k_sub = rotate(q_sub, pos.repeat_interleave(g, dim=1), plan), rotate(k_sub, pos, plan)
    if g > 1:
        k_sub, v_sub = k_sub.repeat_interleave(g, dim=1), v_sub.repeat_interleave(g, dim=1)
    out_sub = causal_sdpa(q_sub, k_sub, v_sub, plan.config.sdpa_backend)
    return scatter_back(out_sub, indices, plan)
