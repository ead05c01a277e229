"""Learning-rate schedules of the training runs, as pure functions of the step.

- `constant`: linear warm-up, then flat at the peak. The paper's (2,000 warm-up steps, then 2e-3 to the end,
  no decay and no restart at the switch to dense).
- `wsd`: warm-up, stable at the peak, then a linear decay to `floor` x peak over the last `decay_fraction` of
  the run. Both arms of a comparison decay at the same steps.
- `cosine`: warm-up, then cosine from the peak to `floor` x peak at the last step.

Warm-up is a step count, not a share of the run, so a shorter run with the same warm-up is a prefix of a longer
one under `constant` (the study's branch points rely on it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SCHEDULES = ("constant", "wsd", "cosine")


@dataclass(frozen=True)
class Schedule:
    kind: str
    peak: float
    total_steps: int
    warmup_steps: int
    decay_fraction: float = 0.2
    floor: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.kind!r}")
        if not self.peak > 0:
            raise ValueError(f"lr must be > 0, got {self.peak}")
        if self.total_steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.total_steps}")
        if not 0 <= self.warmup_steps < max(2, self.total_steps):
            raise ValueError(f"warmup-steps must be in [0, steps) = [0, {self.total_steps}), got {self.warmup_steps}")
        if not 0 < self.decay_fraction <= 1:
            raise ValueError(f"decay-fraction must be in (0, 1], got {self.decay_fraction}")
        if not 0 <= self.floor <= 1:
            raise ValueError(f"the schedule's floor must be in [0, 1], got {self.floor}")

    def decay_start(self) -> int:
        """wsd: the first step of the decay."""
        return self.total_steps - max(1, round(self.decay_fraction * self.total_steps))

    def lr(self, step: int) -> float:
        """The learning rate of 0-based optimizer step `step`."""
        if step < self.warmup_steps:
            return self.peak * (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return self.peak
        last = self.total_steps - 1
        if self.kind == "cosine":
            span = max(1, last - self.warmup_steps)
            progress = min(1.0, (step - self.warmup_steps) / span)
            return self.peak * (self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * progress)))
        start = self.decay_start()
        if step < start:
            return self.peak
        progress = min(1.0, (step - start + 1) / max(1, last - start + 1))
        return self.peak * (1 - (1 - self.floor) * progress)
