"""One training arm: a schedule of attention modes over the steps, trained and logged row by row.

An arm trains `steps` optimizer steps. It starts in `start` mode ("lighthouse" or "dense") and, when
`switch_step` is set, runs the remaining steps dense (lighthouse.hf.set_dense: same model, same optimizer state,
no restart of the schedule). A branch arm starts from a trunk arm's snapshot (`from_snapshot`, taken after step
`from_step`) instead of the seeded initialisation, so the recovery curve of a study needs one Lighthouse trunk per
seed rather than one whole run per switch point; with a schedule that does not depend on the switch, the branch
is the same computation as a run that switched there.

Every `eval_every` steps (and at the switch and the last step) the arm is validated on fixed held-out windows; an
arm that ever uses Lighthouse is validated in both modes, so the cost of the switch is a curve, not a jump.
elapsed_s counts training steps only (evaluation and snapshots excluded).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Optional, Tuple

import torch

from .. import hf
from ..kernels import raise_pending
from ..harness.tables import TRAIN_CURVE, append_row
from .data import Corpus, epochs_seen, train_batch, val_batches
from .presets import TrainPreset
from .schedule import Schedule
from .throughput import sync
from .trainer import Trainer

MODES = ("lighthouse", "dense")


@dataclass(frozen=True)
class ArmPlan:
    arm: str
    seed: int
    steps: int
    start: str = "dense"
    switch_step: Optional[int] = None  # steps trained in `start` mode (Lighthouse) before the dense phase
    from_snapshot: Optional[str] = None  # a trunk's snapshot file to start from ...
    from_step: int = 0  # ... taken after this many steps
    snapshot_at: Tuple[int, ...] = ()  # save a snapshot after these steps (a trunk's branch points)
    eval_at: Tuple[int, ...] = ()  # validate after these steps too (the run lengths and switches a report reads)
    eval_every: int = 50
    val_windows: int = 8

    def __post_init__(self) -> None:
        if self.start not in MODES:
            raise ValueError(f"start must be one of {', '.join(MODES)}, got {self.start!r}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.switch_step is not None and not (self.from_step <= self.switch_step < self.steps):
            raise ValueError(f"the switch step must be in [{self.from_step}, {self.steps}), got {self.switch_step}")
        if self.eval_every < 1 or self.val_windows < 1:
            raise ValueError("eval-every and val-windows must be >= 1")

    def mode_at(self, step: int) -> str:
        """Attention of 0-based step `step`."""
        return "dense" if self.switch_step is not None and step >= self.switch_step else self.start

    def uses_lighthouse(self) -> bool:
        return self.start == "lighthouse"

    def as_dict(self) -> dict:
        return asdict(self)


def snapshot_path(folder: Path, name: str, step: int) -> Path:
    """The snapshot of the arm (job) `name` after `step` steps."""
    return Path(folder) / f"{name}-step{step}.pt"


def _save_snapshot(trainer: Trainer, path: Path) -> None:
    """Written under a temporary name and renamed, so a branch waiting for it never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(trainer.state(), tmp)
    os.replace(tmp, path)


def _wait_for(path: Path, timeout_s: float, poll_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no snapshot {path} after {timeout_s:.0f} s (did its trunk arm fail?)")
        time.sleep(poll_s)


def arm_rows(
    plan: ArmPlan,
    preset: TrainPreset,
    schedule: Schedule,
    corpus: Corpus,
    *,
    device: torch.device,
    precision: str,
    clip: float = 1.0,
    impl: str = "auto",
    sdpa_backend: Optional[str] = None,
    checkpointing: bool = True,
    recompute: bool = True,
    loss: str = "auto",
    loss_chunk: int = 8192,
    snapshots: Optional[Path] = None,
    name: str = "",
    wait_timeout_s: float = 3600.0,
    save: Optional[Path] = None,
) -> Iterator[dict]:
    """Train one arm, yielding its TRAIN_CURVE row after every step (the caller writes them: the recipe through
    the harness's row loop, a study worker straight to its curve file)."""
    device = torch.device(device)
    trainer = Trainer(
        preset,
        preset.seq,
        plan.mode_at(plan.from_step),
        device,
        precision,
        impl=impl,
        sdpa_backend=sdpa_backend,
        checkpointing=checkpointing,
        seed=plan.seed,
        recompute=recompute,
        loss=loss,
        loss_chunk=loss_chunk,
        clip=clip,
    )
    if plan.from_snapshot:
        source = Path(plan.from_snapshot)
        _wait_for(source, wait_timeout_s)
        trainer.load_state(torch.load(source, map_location=device, weights_only=True))
    model = trainer.model
    val = val_batches(corpus, preset.batch, preset.seq, plan.val_windows)
    elapsed, tokens = 0.0, plan.from_step * preset.batch * preset.seq
    last_val: Optional[float] = None
    both: Tuple[Optional[float], Optional[float]] = (None, None)
    for step in range(plan.from_step, plan.steps):
        mode = plan.mode_at(step)
        hf.set_dense(model, mode == "dense")
        lr = schedule.lr(step)
        trainer.set_lr(lr)
        inputs, labels = train_batch(corpus, step, preset.batch, preset.seq, plan.seed)
        sync(device)
        t = time.perf_counter()
        loss, norm = trainer.step(inputs.to(device), labels.to(device))
        train_loss, grad_norm = float(loss), float(norm)  # synchronises
        raise_pending()  # the layers' deferred finiteness checks: the GPU has passed them, so no wait
        step_s = time.perf_counter() - t
        elapsed += step_s
        tokens += inputs.numel()
        done = step + 1
        evaluate = done % plan.eval_every == 0 or done == plan.steps or done == plan.switch_step or done in plan.eval_at
        last_val, both = None, (None, None)
        if evaluate:
            if plan.uses_lighthouse():
                both = tuple(_evaluate_in(trainer, val, m) for m in MODES)
                hf.set_dense(model, mode == "dense")
                last_val = both[MODES.index(mode)]
            else:
                last_val = trainer.evaluate(val)
        if done in plan.snapshot_at and snapshots is not None:
            _save_snapshot(trainer, snapshot_path(snapshots, name or f"{plan.arm}-s{plan.seed}", done))
        yield {
            "arm": plan.arm,
            "seed": plan.seed,
            "step": done,
            "attention": mode,
            "tokens": tokens,
            "epochs": epochs_seen(corpus, done, preset.batch, preset.seq),
            "train_loss": train_loss,
            "val_loss": last_val,
            "val_loss_lighthouse": both[0],
            "val_loss_dense": both[1],
            "lr": lr,
            "grad_norm": grad_norm,
            "step_ms": step_s * 1e3,
            "elapsed_s": elapsed,
        }
        if not math.isfinite(train_loss):
            raise RuntimeError(f"arm {plan.arm} seed {plan.seed}: the train loss is not finite at step {done}")
    if save is not None:
        target = Path(save) / plan.arm
        model.save_pretrained(target)
        (target / "lighthouse-train.json").write_text(
            json.dumps(
                {
                    "preset": preset.as_dict(),
                    "plan": plan.as_dict(),
                    "precision": precision,
                    "clip": clip,
                    "schedule": asdict(schedule),
                    "settings": hf.settings_of(model).as_dict(),
                },
                indent=2,
            )
            + "\n"
        )
    del trainer, model


def train_arm(plan: ArmPlan, preset: TrainPreset, schedule: Schedule, corpus: Corpus, curve: Path, **options) -> dict:
    """Train one arm, appending each step's row to `curve` as it finishes; returns its summary."""
    last: dict = {}
    for row in arm_rows(plan, preset, schedule, corpus, **options):
        append_row(curve, TRAIN_CURVE, row)
        last = row
    return {
        "arm": plan.arm,
        "seed": plan.seed,
        "final_val_loss": last.get("val_loss"),
        "wall_s": last.get("elapsed_s"),
        "steps": plan.steps,
        "tokens": last.get("tokens"),
        "switch_step": plan.switch_step,
    }


def _evaluate_in(trainer: Trainer, batches, mode: str) -> float:
    hf.set_dense(trainer.model, mode == "dense")
    return trainer.evaluate(batches)
