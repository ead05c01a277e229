"""The two-stage recipe against dense all the way, on real bytes, with the same init, data order and budget.

Arm "lighthouse-then-dense" trains with Lighthouse in the non-dense layers and switches the whole model to
dense SDPA (lighthouse.hf.set_dense: same model, same optimizer state) after `dense_from` of the steps; arm
"dense" trains dense from the first step. Both arms start from the same seeded initialisation, read the same
batches in the same order (data.train_batch is a function of seed and step), use the same learning-rate
schedule (linear warm-up over the first 5% of steps, then cosine to 10%) and the same number of steps and
tokens. Train loss is logged every step, validation loss (a fixed set of held-out windows) every `eval_every`
steps, at the switch and at the end; elapsed_s is training time only (evaluation excluded).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

import torch

from .. import hf
from ..harness.tables import TRAIN_CURVE, append_row
from .data import Corpus, build_corpus, train_batch, val_batches
from .loss import NextTokenLoss
from .model import build_model, make_optimizer
from .presets import TrainPreset
from .throughput import DTYPES, RunOptions

ARMS = ("lighthouse-then-dense", "dense")
CURVE = "curve.csv"


@dataclass(frozen=True)
class RecipeOptions:
    steps: int = 200
    dense_from: float = 0.9
    eval_every: int = 25
    val_windows: int = 8
    arm_minutes: Optional[float] = None  # when set, steps = this many minutes of dense training (calibrated)

    def __post_init__(self) -> None:
        if not 0 < self.dense_from < 1:
            raise ValueError(f"dense-from must be in (0, 1) (the fraction of steps before the dense phase), got {self.dense_from}")
        if self.steps < 2:
            raise ValueError(f"steps must be >= 2 for the two-stage recipe, got {self.steps}")
        if self.eval_every < 1:
            raise ValueError(f"eval-every must be >= 1, got {self.eval_every}")
        if self.arm_minutes is not None and not self.arm_minutes > 0:
            raise ValueError(f"arm-minutes must be > 0, got {self.arm_minutes}")

    def switch_step(self, steps: int) -> int:
        """Steps trained with Lighthouse before the switch (at least 1, at most steps - 1)."""
        return min(max(1, round(self.dense_from * steps)), steps - 1)


def lr_at(step: int, steps: int, peak: float) -> float:
    warm = max(1, steps // 20)
    if step < warm:
        return peak * (step + 1) / warm
    progress = (step - warm) / max(1, steps - warm)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def validation_loss(model, loss_fn: NextTokenLoss, batches, device) -> float:
    total = 0.0
    for inputs, labels in batches:
        total += float(loss_fn(model, inputs.to(device), labels.to(device)))
    return total / len(batches)


def calibrate_steps(preset: TrainPreset, opts: RunOptions, corpus: Corpus, minutes: float) -> int:
    """Steps of dense training that take `minutes` (median of 3 timed steps after 2 warm-up steps)."""
    model = build_model(preset, preset.seq, "dense", opts.device, DTYPES[opts.dtype], impl=opts.impl,
                        sdpa_backend=opts.sdpa_backend, checkpointing=opts.checkpointing, seed=opts.seed)
    optimizer = make_optimizer(model, preset, opts.device)
    loss_fn = NextTokenLoss(opts.loss, opts.loss_chunk)
    times = []
    for step in range(5):
        inputs, labels = train_batch(corpus, step, preset.batch, preset.seq, opts.seed)
        _sync(opts.device)
        t = time.perf_counter()
        loss_fn(model, inputs.to(opts.device), labels.to(opts.device)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync(opts.device)
        times.append(time.perf_counter() - t)
    del model, optimizer
    step_s = sorted(times[2:])[1]
    return max(10, int(minutes * 60 / step_s))


def train_arm(arm: str, preset: TrainPreset, opts: RunOptions, recipe: RecipeOptions, steps: int, corpus: Corpus,
              curve: Path, save: Optional[Path] = None, on_step: Optional[Callable[[int], None]] = None) -> dict:
    """Train one arm, appending its rows to `curve`; returns its summary."""
    device = opts.device
    switch = recipe.switch_step(steps) if arm == ARMS[0] else None
    model = build_model(preset, preset.seq, "lighthouse" if arm == ARMS[0] else "dense", device, DTYPES[opts.dtype],
                        impl=opts.impl, sdpa_backend=opts.sdpa_backend, checkpointing=opts.checkpointing,
                        seed=opts.seed, recompute=opts.recompute)
    optimizer = make_optimizer(model, preset, device)
    loss_fn = NextTokenLoss(opts.loss, opts.loss_chunk)
    val = val_batches(corpus, preset.batch, preset.seq, recipe.val_windows)
    elapsed, val_loss, tokens = 0.0, None, 0
    for step in range(steps):
        if switch is not None and step == switch:
            hf.set_dense(model, True)
        lr = lr_at(step, steps, preset.lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        inputs, labels = train_batch(corpus, step, preset.batch, preset.seq, opts.seed)
        _sync(device)
        t = time.perf_counter()
        loss = loss_fn(model, inputs.to(device), labels.to(device))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        train_loss = float(loss.detach())  # synchronises
        step_s = time.perf_counter() - t
        elapsed += step_s
        tokens += inputs.numel()
        done = step + 1
        evaluate = done % recipe.eval_every == 0 or done == steps or (switch is not None and done == switch)
        val_loss = validation_loss(model, loss_fn, val, device) if evaluate else None
        append_row(curve, TRAIN_CURVE, {
            "arm": arm, "step": done, "attention": "dense" if hf.settings_of(model).dense else "lighthouse",
            "tokens": tokens, "train_loss": train_loss, "val_loss": val_loss, "lr": lr, "step_ms": step_s * 1e3,
            "elapsed_s": elapsed})
        if on_step:
            on_step(done)
        if not math.isfinite(train_loss):
            raise RuntimeError(f"arm {arm}: the train loss is not finite at step {done}")
    if save is not None:
        target = Path(save) / arm
        model.save_pretrained(target)
        (target / "lighthouse-train.json").write_text(json.dumps(
            {"preset": preset.as_dict(), "arm": arm, "steps": steps, "switch_step": switch, "seed": opts.seed,
             "settings": hf.settings_of(model).as_dict()}, indent=2) + "\n")
    summary = {"arm": arm, "final_val_loss": val_loss, "wall_s": elapsed, "steps": steps, "tokens": tokens,
               "switch_step": switch, "loss_impl": loss_fn.impl}
    del model, optimizer
    return summary


def run_recipe(preset: TrainPreset, opts: RunOptions, recipe: RecipeOptions, out: Path, *,
               corpus: Optional[Corpus] = None, save: Optional[Path] = None, console=None, argv=None) -> List[dict]:
    """Both arms into out/curve.csv plus the loss chart; returns the two arm summaries."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ..harness.console import make_console
    from .throughput import free_memory

    console = console or make_console()
    out = Path(out)
    curve = out / CURVE
    if curve.exists() and curve.stat().st_size > 0:
        raise ValueError(f"--out: {curve} already exists; pick another --out (the recipe does not resume)")
    out.mkdir(parents=True, exist_ok=True)
    from ..harness import machine

    info = machine.collect(argv, {"recipe": "two-stage", "preset": preset.as_dict(), "dtype": opts.dtype,
                                  "impl": opts.impl, "sdpa_backend": opts.sdpa_backend, "loss": opts.loss,
                                  "checkpointing": opts.checkpointing, "seed": opts.seed, **recipe.__dict__})
    machine.write(out / "machine.json", info)
    start = time.perf_counter()
    corpus = corpus or build_corpus()
    console.print(f"corpus: {corpus.describe()}")
    steps = recipe.steps
    if recipe.arm_minutes is not None:
        steps = calibrate_steps(preset, opts, corpus, recipe.arm_minutes)
        free_memory(opts.device)
        console.print(f"calibrated: {steps} steps = about {recipe.arm_minutes:g} min of dense training per arm")
    summaries = []
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console) as progress:
        for arm in ARMS:
            bar = progress.add_task(arm, total=steps)
            summaries.append(train_arm(arm, preset, opts, recipe, steps, corpus, curve, save,
                                       on_step=lambda done, bar=bar: progress.update(bar, completed=done)))
            free_memory(opts.device)
    try:
        from .plots import loss_chart

        for path in loss_chart(curve, recipe.switch_step(steps)):
            console.print(f"chart: {path}")
    except Exception as err:  # noqa: BLE001 - the curves are safe on disk
        console.print(f"[red]loss chart failed ({type(err).__name__}: {err})[/]")
    machine.write(out / "machine.json", machine.finish(info, time.perf_counter() - start, False))
    from .report import recipe_table

    console.print(recipe_table(summaries))
    return summaries
