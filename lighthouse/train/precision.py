"""How a training run holds its weights and runs its matmuls.

`mixed` is how people train: float32 master weights and AdamW state, the forward and backward under bf16
autocast (torch.autocast, the well-kept mixed-precision path; FSDP's MixedPrecision does the same per shard).
`bf16` keeps everything in bf16 (weights, gradients, AdamW state): cheaper, but an update smaller than bf16's
resolution is lost (at lr 1e-4 most weights never move). It stays only as an explicit choice. `fp32` runs in
float32 throughout (the CPU default: tests and smoke runs).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Optional

import torch

PRECISIONS = ("mixed", "bf16", "fp16", "fp32")


@dataclass(frozen=True)
class Precision:
    name: str
    param_dtype: torch.dtype  # weights, gradients and optimizer state
    autocast_dtype: Optional[torch.dtype]  # None: no autocast, ops run in param_dtype

    def autocast(self, device: torch.device):
        """The forward's context: bf16 autocast for `mixed`, nothing otherwise."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=torch.device(device).type, dtype=self.autocast_dtype)


def precision(name: str) -> Precision:
    if name == "mixed":
        return Precision(name, torch.float32, torch.bfloat16)
    if name in ("bf16", "fp16", "fp32"):
        return Precision(name, {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name], None)
    raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
