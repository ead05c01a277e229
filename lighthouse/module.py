"""LighthouseAttention: the layer as an nn.Module, with the switch to dense SDPA for the recovery phase."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .attention import lighthouse_attention
from .config import LighthouseConfig, as_config
from .sdpa import dense_attention


class LighthouseAttention(nn.Module):
    """Drop-in for causal SDPA on (B, H, N, D) tensors; no parameters of its own.

    The paper's recipe trains with Lighthouse and finishes with a short dense phase: call
    `set_dense(True)` for that phase (plain causal SDPA through the same sdpa_backend).
    With `cp_group` (ProcessGroup or 1-D DeviceMesh) the inputs are this rank's shard of the sequence
    (context parallelism, lighthouse.distributed); the dense phase then runs head-parallel (all-to-all).
    """

    def __init__(self, config: Optional[LighthouseConfig] = None, cp_group=None, **params) -> None:
        super().__init__()
        if config is not None and params:
            raise ValueError("give either config= or keyword parameters, not both")
        self.config = LighthouseConfig(**params) if config is None else as_config(config)
        self.cp_group = cp_group
        self.dense = False

    def set_dense(self, dense: bool = True) -> "LighthouseAttention":
        self.dense = bool(dense)
        return self

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gate: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        if self.dense and self.cp_group is not None:
            from .distributed import context_parallel_dense_attention

            return context_parallel_dense_attention(q, k, v, self.cp_group, self.config.sdpa_backend)
        if self.dense:
            return dense_attention(q, k, v, self.config.sdpa_backend)
        return lighthouse_attention(q, k, v, gate=gate, config=self.config, cp_group=self.cp_group)

    def extra_repr(self) -> str:
        c = self.config
        mode = "dense" if self.dense else f"L={c.levels}, p={c.pooling}, k={c.topk}, scorer={c.scorer}, impl={c.impl}"
        return mode
