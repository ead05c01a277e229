"""The two-stage recipe against dense all the way, on real bytes, with the same init, data order and budget.

Arm "lighthouse-then-dense" trains with Lighthouse in the non-dense layers and switches the whole model to
dense SDPA (lighthouse.hf.set_dense: same model, same optimizer state) after `dense_from` of the steps; arm
"dense" trains dense from the first step. Both arms start from the same seeded initialisation, read the same
batches in the same order (data.train_batch is a function of seed and step), use the same learning-rate schedule
(lighthouse.train.schedule: the paper's `constant` by default) and the same number of steps and tokens, with
gradient clipping and the run's precision (mixed: fp32 master weights under bf16 autocast). Arms are trained one
after the other here; several seeds side by side are `lighthouse-bench study`'s job (lighthouse.train.study).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from .arm import ArmPlan
from .data import Corpus, build_corpus, train_batch
from .presets import TrainPreset
from .schedule import Schedule
from .throughput import RunOptions

ARMS = ("lighthouse-then-dense", "dense")
CURVE = "curve.csv"


@dataclass(frozen=True)
class RecipeOptions:
    steps: int = 200
    dense_from: float = 0.9
    eval_every: int = 25
    val_windows: int = 8
    arm_minutes: Optional[float] = None  # when set, steps = this many minutes of dense training (calibrated)
    schedule: str = "constant"
    warmup_steps: Optional[int] = None  # None: 5% of the steps
    decay_fraction: float = 0.2  # wsd: the share of the run that decays

    def __post_init__(self) -> None:
        if not 0 < self.dense_from < 1:
            raise ValueError(
                f"dense-from must be in (0, 1) (the fraction of steps before the dense phase), got {self.dense_from}"
            )
        if self.steps < 2:
            raise ValueError(f"steps must be >= 2 for the two-stage recipe, got {self.steps}")
        if self.eval_every < 1:
            raise ValueError(f"eval-every must be >= 1, got {self.eval_every}")
        if self.arm_minutes is not None and not self.arm_minutes > 0:
            raise ValueError(f"arm-minutes must be > 0, got {self.arm_minutes}")
        self.lr_schedule(1.0, self.steps)  # names a bad schedule, warm-up or decay fraction now

    def switch_step(self, steps: int) -> int:
        """Steps trained with Lighthouse before the switch (at least 1, at most steps - 1)."""
        return min(max(1, round(self.dense_from * steps)), steps - 1)

    def lr_schedule(self, peak: float, steps: int) -> Schedule:
        warmup = self.warmup_steps if self.warmup_steps is not None else max(1, steps // 20)
        return Schedule(self.schedule, peak, steps, warmup, self.decay_fraction)

    def plans(self, steps: int, seed: int) -> List[ArmPlan]:
        return [
            ArmPlan(
                ARMS[0],
                seed,
                steps,
                start="lighthouse",
                switch_step=self.switch_step(steps),
                eval_every=self.eval_every,
                val_windows=self.val_windows,
            ),
            ArmPlan(ARMS[1], seed, steps, start="dense", eval_every=self.eval_every, val_windows=self.val_windows),
        ]


def calibrate_steps(preset: TrainPreset, opts: RunOptions, corpus: Corpus, minutes: float, clip: float = 1.0) -> int:
    """Steps of dense training that take `minutes` (median of 3 timed steps after 2 warm-up steps)."""
    from .throughput import sync
    from .trainer import Trainer

    settings = opts.trainer_options()  # recompute too: it changes nothing in dense training
    trainer = Trainer(preset, preset.seq, "dense", opts.device, opts.dtype, seed=opts.seed, clip=clip, **settings)
    times = []
    for step in range(5):
        inputs, labels = train_batch(corpus, step, preset.batch, preset.seq, opts.seed)
        sync(opts.device)
        t = time.perf_counter()
        trainer.step(inputs.to(opts.device), labels.to(opts.device))
        sync(opts.device)
        times.append(time.perf_counter() - t)
    del trainer
    step_s = sorted(times[2:])[1]
    return max(10, int(minutes * 60 / step_s))


def run_recipe(
    preset: TrainPreset,
    opts: RunOptions,
    recipe: RecipeOptions,
    out: Path,
    *,
    corpus: Optional[Corpus] = None,
    save: Optional[Path] = None,
    console=None,
    argv=None,
    clip: float = 1.0,
    resume: bool = False,
) -> int:
    """Both arms into out/curve.csv through the harness's row loop (--out, --resume, Ctrl-C with the resume
    command, machine.json) and the loss chart; returns the exit code. --resume keeps the arms that reached their
    last step and trains the others again from their start (an arm has no mid-run checkpoint)."""
    from ..harness.loop import Item, RowLoop
    from ..harness.outdir import writable_folder
    from ..harness.tables import TRAIN_CURVE, read_rows
    from .arm import arm_rows
    from .throughput import free_memory

    if save is not None:
        writable_folder(save, "--save")  # before the first arm trains, not after it
    out = Path(out)
    options = {
        "recipe": "two-stage",
        "preset": preset.as_dict(),
        "precision": opts.dtype,
        "impl": opts.impl,
        "sdpa_backend": opts.sdpa_backend,
        "loss": opts.loss,
        "checkpointing": opts.checkpointing,
        "seed": opts.seed,
        "clip": clip,
        **recipe.__dict__,
    }
    loop = RowLoop("train", out, TRAIN_CURVE, CURVE, resume=resume, options=options, argv=argv, console=console)
    finished = set()
    if resume and (out / CURVE).exists():
        from ..harness import machine

        recorded = (machine.read(out / "machine.json") or {}).get("steps")
        last = {}
        for r in read_rows(out / CURVE, TRAIN_CURVE)[0]:
            last[r["arm"]] = max(last.get(r["arm"], 0), int(r["step"]))
        finished = {arm for arm, step in last.items() if recorded is not None and step == int(recorded)}
    loop.prepare(keep=lambda r: r["arm"] in finished)
    corpus = corpus or build_corpus()
    loop.console.print(f"corpus: {corpus.describe()}")
    steps = recipe.steps
    if recipe.arm_minutes is not None:
        steps = calibrate_steps(preset, opts, corpus, recipe.arm_minutes, clip)
        free_memory(opts.device)
        loop.console.print(f"calibrated: {steps} steps = about {recipe.arm_minutes:g} min of dense training per arm")
    schedule = recipe.lr_schedule(preset.lr, steps)
    loop.begin({"corpus": corpus.root, "corpus_sha256": corpus.digest, "steps": steps})

    def arm(plan):
        settings = opts.trainer_options()
        yield from arm_rows(
            plan, preset, schedule, corpus, device=opts.device, precision=opts.dtype, clip=clip, save=save, **settings
        )
        free_memory(opts.device)

    items = [
        Item(plan.arm, lambda plan=plan: arm(plan), on_failure=lambda status, reason: [], weight=steps)
        for plan in recipe.plans(steps, opts.seed)
        if plan.arm not in finished
    ]
    outcome = loop.run(items, total=steps * max(1, len(items)), device=opts.device)
    for label, status, reason in outcome.failed:
        loop.console.print(f"[red]arm {label}: {status} ({reason})[/]")

    def charts(curve: Path):
        from .plots import loss_chart

        return loss_chart(curve, recipe.switch_step(steps))

    def summary(rows):
        from .report import recipe_summary, recipe_table

        if rows:
            loop.console.print(recipe_table(recipe_summary(out / CURVE)))

    code = loop.finish(outcome, summary=summary, charts=charts, ran=lambda rows: bool(rows))
    return 1 if code == 0 and outcome.failed else code
