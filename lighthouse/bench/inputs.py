"""The tensors a sweep row is timed on: seeded q, k, v (leaves), the output gradient and a GLA log-gate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import torch
import torch.nn.functional as F

TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass
class Inputs:
    """The tensors of one shape, created once (seeded) and shared by every implementation."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    grad_out: torch.Tensor
    gate: Optional[torch.Tensor] = None

    @property
    def leaves(self) -> List[torch.Tensor]:
        return [self.q, self.k, self.v]


def random_inputs(
    batch: int,
    heads: int,
    kv_heads: int,
    n: int,
    head_dim: int,
    dtype: str,
    device: torch.device,
    seed: int,
    gate: bool = False,
) -> Inputs:
    """Normal q, k, v (leaves that require grad), an output gradient and optionally a GLA log-gate."""
    g = torch.Generator(device=device).manual_seed(seed)
    dt = TORCH_DTYPES[dtype]

    def randn(*size, dtype=dt):
        return torch.randn(*size, generator=g, device=device, dtype=dtype)

    q = randn(batch, heads, n, head_dim).requires_grad_()
    k = randn(batch, kv_heads, n, head_dim).requires_grad_()
    v = randn(batch, kv_heads, n, head_dim).requires_grad_()
    grad_out = randn(batch, heads, n, head_dim)
    log_gate = F.logsigmoid(randn(batch, heads, n, dtype=torch.float32)) if gate else None
    return Inputs(q, k, v, grad_out, log_gate)
