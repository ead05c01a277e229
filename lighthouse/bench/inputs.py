"""The tensors a sweep row is timed on: seeded q, k, v (leaves), the output gradient and a GLA log-gate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import torch
import torch.nn.functional as F

from ..harness.points import Shape

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


def random_inputs(shape: Shape, device: torch.device, seed: int, gate: bool = False) -> Inputs:
    """Normal q, k, v of `shape` (leaves that require grad), an output gradient and optionally a GLA log-gate."""
    g = torch.Generator(device=device).manual_seed(seed)
    b, h, n, d = shape.batch, shape.heads, shape.n, shape.head_dim

    def randn(*size, dtype=TORCH_DTYPES[shape.dtype]):
        return torch.randn(*size, generator=g, device=device, dtype=dtype)

    q = randn(b, h, n, d).requires_grad_()
    k = randn(b, shape.kv_heads, n, d).requires_grad_()
    v = randn(b, shape.kv_heads, n, d).requires_grad_()
    grad_out = randn(b, h, n, d)
    log_gate = F.logsigmoid(randn(b, h, n, dtype=torch.float32)) if gate else None
    return Inputs(q, k, v, grad_out, log_gate)
