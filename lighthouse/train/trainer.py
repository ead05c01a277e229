"""One optimizer step the way people train, shared by the throughput benchmark, the recipe and the study.

forward under the precision's autocast -> next-token loss -> backward -> gradient clipping (global L2 norm,
1.0 by default, as the paper) -> AdamW step -> zero_grad. The learning rate is set by the caller before the step.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch

from .loss import NextTokenLoss
from .model import build_model, make_optimizer
from .precision import Precision, precision
from .presets import TrainPreset


class Trainer:
    """A model, its optimizer and its loss, stepped as in real training. `clip` <= 0 turns clipping off (the
    gradient norm is still measured and returned)."""

    def __init__(
        self,
        preset: TrainPreset,
        seq: int,
        attention: str,
        device: torch.device,
        precision_name: str,
        *,
        impl: str = "auto",
        sdpa_backend: Optional[str] = None,
        checkpointing: bool = True,
        seed: int = 0,
        recompute: bool = True,
        loss: str = "auto",
        loss_chunk: int = 8192,
        clip: float = 1.0,
    ):
        if not clip >= 0:
            raise ValueError(f"--clip must be >= 0 (0 turns clipping off), got {clip}")
        self.device = torch.device(device)
        self.precision: Precision = precision(precision_name)
        self.clip = clip
        self.model = build_model(
            preset,
            seq,
            attention,
            self.device,
            self.precision.param_dtype,
            impl=impl,
            sdpa_backend=sdpa_backend,
            checkpointing=checkpointing,
            seed=seed,
            recompute=recompute,
        )
        self.optimizer = make_optimizer(self.model, preset, self.device)
        self.loss_fn = NextTokenLoss(loss, loss_chunk)
        self._params = [p for p in self.model.parameters() if p.requires_grad]

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def step(self, inputs: torch.Tensor, labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step; returns (loss, gradient norm before clipping) as device tensors (no sync)."""
        with self.precision.autocast(self.device):
            loss = self.loss_fn(self.model, inputs, labels)
        loss.backward()
        if self.clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(self._params, self.clip)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in self._params if p.grad is not None])
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach(), norm.detach()

    @torch.no_grad()
    def evaluate(self, batches: Sequence[Tuple[torch.Tensor, torch.Tensor]]) -> float:
        """Mean loss over fixed held-out batches, in the model's current attention mode."""
        total = 0.0
        with self.precision.autocast(self.device):
            for inputs, labels in batches:
                total += float(self.loss_fn(self.model, inputs.to(self.device), labels.to(self.device)))
        return total / len(batches)

    def state(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
