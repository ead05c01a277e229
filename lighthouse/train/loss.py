"""Next-token loss that never holds the N x vocabulary logits in one piece.

At the paper's shape the logits are 98,304 x 128,256 (25 GB in bf16, twice that for their gradient). On CUDA
the loss is liger-kernel's fused linear cross-entropy when it is installed (a well-kept Triton kernel that
computes the loss and the gradients chunk by chunk). `chunked_cross_entropy` is the fallback: the CPU (tests,
smoke runs) and a GPU without liger-kernel. It is a few lines of PyTorch: the LM head and the cross-entropy of
`chunk` tokens at a time, each chunk under activation checkpointing, so at most one chunk of logits exists in
the forward and one in the backward.
"""

from __future__ import annotations

import warnings
from typing import Optional

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

LOSS_IMPLS = ("auto", "liger", "chunked")


def _chunk_loss_sum(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, ignore_index: int
) -> torch.Tensor:
    logits = (hidden @ weight.t()).float()
    return F.cross_entropy(logits, targets, ignore_index=ignore_index, reduction="sum")


def chunked_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int = 8192, ignore_index: int = -100
) -> torch.Tensor:
    """mean cross-entropy of softmax(hidden @ weight.T) against targets; hidden (T, H), weight (V, H), targets (T,).

    Equal to F.cross_entropy(hidden @ weight.T, targets) (logits in float32), in value and gradients."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1 tokens, got {chunk}")
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.shape[0], chunk):
        part = slice(start, start + chunk)
        if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
            total = total + checkpoint(
                _chunk_loss_sum, hidden[part], weight, targets[part], ignore_index, use_reentrant=False
            )
        else:
            total = total + _chunk_loss_sum(hidden[part], weight, targets[part], ignore_index)
    count = (targets != ignore_index).sum().clamp(min=1)
    return total / count


def liger_available() -> bool:
    try:
        import liger_kernel.transformers  # noqa: F401
    except Exception:
        return False
    return True


class NextTokenLoss:
    """loss(model, inputs, labels): the model's last hidden states through its LM head into a mean
    cross-entropy, without the full logits. `impl` is "liger", "chunked" or "auto" (liger on CUDA when
    installed); a liger failure on the first call falls back to chunked with a warning. `.impl` says which ran."""

    def __init__(self, impl: str = "auto", chunk: int = 8192):
        if impl not in LOSS_IMPLS:
            raise ValueError(f"loss must be one of {', '.join(LOSS_IMPLS)}, got {impl!r}")
        self.requested, self.chunk = impl, chunk
        self.impl: Optional[str] = None
        self._liger = None

    def _choose(self, device: torch.device) -> str:
        if self.requested == "chunked":
            return "chunked"
        if self.requested == "liger" and device.type != "cuda":
            raise ValueError("loss='liger' needs a CUDA device (it is a Triton kernel); use 'chunked' or 'auto'")
        if device.type == "cuda" and liger_available():
            from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

            self._liger = LigerFusedLinearCrossEntropyLoss()
            return "liger"
        if self.requested == "liger":
            raise ValueError("loss='liger' needs liger-kernel (pip install liger-kernel); use 'chunked' or 'auto'")
        return "chunked"

    def __call__(self, model, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        hidden = model.model(input_ids=inputs, use_cache=False).last_hidden_state
        hidden = hidden.reshape(-1, hidden.shape[-1])
        weight = model.get_output_embeddings().weight
        targets = labels.reshape(-1)
        if self.impl is None:
            self.impl = self._choose(hidden.device)
            if self.impl == "liger":
                try:
                    return self._liger(weight, hidden, targets)
                except Exception as err:  # noqa: BLE001 - an incompatible Triton: say so, keep training
                    if self.requested == "liger":
                        raise
                    warnings.warn(
                        f"liger-kernel's fused cross-entropy failed ({type(err).__name__}: {err}); "
                        f"using the chunked cross-entropy"
                    )
                    self.impl = "chunked"
        if self.impl == "liger":
            return self._liger(weight, hidden, targets)
        return chunked_cross_entropy(hidden, weight, targets, self.chunk)
