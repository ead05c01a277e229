"""A study: experiments over seeds, expanded into the fewest training jobs that produce them.

A plan (a TOML file, `suites/studies/*.toml`) lists experiments of three kinds:

- `two-stage`: Lighthouse for `dense_from` of `steps`, then dense, against dense all the way (the paper's recipe);
- `recovery`: the same at every run length in `run_lengths` and every number of dense steps in `dense_steps`
  (the switch at length - dense steps);
- `stage1`: Lighthouse all the way at each budget k in `topk`, validated in both modes, against dense.

Jobs. Lighthouse-then-dense arms are a Lighthouse *trunk* that saves a snapshot at each switch step, and one
dense *branch* per switch step that starts from it; dense arms and trunks with the same model, seed and learning
rate function are merged into the longest one (with `constant`, a shorter run is a prefix of a longer one; with
`wsd` or `cosine` the learning rate depends on the run length, and the jobs are kept apart). So E1's arms are
E2's when they share a length and a switch, and a stage-1 arm at the trunk's k is the trunk.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .arm import ArmPlan
from .presets import TrainPreset, get_preset
from .schedule import SCHEDULES, Schedule

KINDS = ("two-stage", "recovery", "stage1")
#: Keys an experiment (or the plan's [defaults]) may set.
SETTINGS = (
    "preset",
    "precision",
    "clip",
    "schedule",
    "warmup_steps",
    "decay_fraction",
    "lr",
    "eval_every",
    "val_windows",
    "seeds",
    "steps",
    "dense_from",
    "run_lengths",
    "dense_steps",
    "topk",
    "overrides",
    "loss",
    "impl",
    "description",
    "kind",
    "name",
    "rope",
)
LIGHTHOUSE_FIELDS = ("topk", "levels", "pooling", "scorer", "dense_layers", "rope")


def model_identity(preset: TrainPreset, dense_only: bool) -> dict:
    """The preset as it matters to what trains: a model that never runs Lighthouse does not change with its k, L,
    p, scorer, dense layers or RoPE placement (E5's dense arm is E2's)."""
    fields = preset.as_dict()
    if dense_only:
        for name in LIGHTHOUSE_FIELDS:
            fields.pop(name, None)
    return fields


def _preset_identity(job: "Job") -> dict:
    return model_identity(job.preset, job.plan.start == "dense" and job.plan.switch_step is None)


@dataclass(frozen=True)
class Experiment:
    name: str
    kind: str
    description: str = ""
    preset: str = "mid"
    overrides: Tuple[Tuple[str, object], ...] = ()
    precision: str = "mixed"
    clip: float = 1.0
    schedule: str = "constant"
    warmup_steps: int = 50
    decay_fraction: float = 0.2
    lr: Optional[float] = None
    eval_every: int = 50
    val_windows: int = 8
    seeds: Tuple[int, ...] = (0, 1, 2)
    steps: int = 1000
    dense_from: float = 0.75
    run_lengths: Tuple[int, ...] = ()
    dense_steps: Tuple[int, ...] = ()
    topk: Tuple[int, ...] = ()
    loss: str = "auto"
    impl: str = "auto"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"experiment {self.name}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"experiment {self.name}: schedule must be one of {', '.join(SCHEDULES)}")
        if not self.seeds:
            raise ValueError(f"experiment {self.name}: seeds must list at least one seed")
        if self.kind == "recovery":
            if not self.run_lengths or not self.dense_steps:
                raise ValueError(f"experiment {self.name}: a recovery experiment needs run_lengths and dense_steps")
            for length in self.run_lengths:
                if any(not 0 < d < length for d in self.dense_steps):
                    raise ValueError(f"experiment {self.name}: every dense_steps value must be in (0, {length})")
        if self.kind == "two-stage" and not 0 < self.dense_from < 1:
            raise ValueError(f"experiment {self.name}: dense_from must be in (0, 1), got {self.dense_from}")
        if self.kind == "stage1" and not self.topk:
            raise ValueError(f"experiment {self.name}: a stage1 experiment needs topk (a list of budgets)")
        for k in self.topk or (None,):  # a bad preset, override or budget names itself now, not mid-study
            preset = self.base_preset() if k is None else self.base_preset(topk=k)
            try:
                preset.lighthouse().padded_len(preset.seq)
            except ValueError as err:
                raise ValueError(f"experiment {self.name}: {err}") from None
        Schedule(self.schedule, 1.0, max(self.lengths()), self.warmup_steps, self.decay_fraction)

    def base_preset(self, **more) -> TrainPreset:
        fields = dict(self.overrides)
        if self.lr is not None:
            fields["lr"] = self.lr
        fields.update(more)
        return get_preset(self.preset, **fields)

    def lengths(self) -> Tuple[int, ...]:
        return tuple(self.run_lengths) if self.kind == "recovery" else (self.steps,)

    def switch_points(self) -> List[Tuple[int, int]]:
        """(run length, switch step) of every Lighthouse-then-dense arm."""
        if self.kind == "two-stage":
            return [(self.steps, min(max(1, round(self.dense_from * self.steps)), self.steps - 1))]
        if self.kind == "recovery":
            return [(length, length - d) for length in self.run_lengths for d in self.dense_steps]
        return []


@dataclass(frozen=True)
class Job:
    """One worker process: an arm plan, the model it trains and its learning-rate function."""

    plan: ArmPlan
    preset: TrainPreset
    schedule: Schedule
    precision: str
    clip: float
    loss: str
    impl: str
    trunk: Optional[str] = None  # the job id whose snapshots this branch starts from

    @property
    def job_id(self) -> str:
        return f"{self.plan.arm}-s{self.plan.seed}-{self.content_hash()[:8]}"

    def content_hash(self) -> str:
        body = {
            "plan": {**self.plan.as_dict(), "from_snapshot": None, "snapshot_at": None, "eval_at": None},
            "preset": _preset_identity(self),
            "lr": _lr_identity(self.schedule),
            "precision": self.precision,
            "clip": self.clip,
            "loss": self.loss,
            "impl": self.impl,
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()

    def as_dict(self) -> dict:
        return {
            "job_id": self.job_id,
            "plan": self.plan.as_dict(),
            "preset": self.preset.as_dict(),
            "schedule": asdict(self.schedule),
            "precision": self.precision,
            "clip": self.clip,
            "loss": self.loss,
            "impl": self.impl,
            "trunk": self.trunk,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Job":
        plan = dict(d["plan"])
        plan["snapshot_at"] = tuple(plan.get("snapshot_at") or ())
        plan["eval_at"] = tuple(plan.get("eval_at") or ())
        preset = dict(d["preset"])
        preset["dense_layers"] = tuple(preset["dense_layers"])
        return cls(
            ArmPlan(**plan),
            TrainPreset(**preset),
            Schedule(**d["schedule"]),
            d["precision"],
            d["clip"],
            d["loss"],
            d["impl"],
            d.get("trunk"),
        )


def _lr_identity(schedule: Schedule) -> dict:
    """What makes two runs' learning rates equal at every shared step: `constant` does not depend on the length."""
    d = asdict(schedule)
    if schedule.kind == "constant":
        d.pop("total_steps")
        d.pop("decay_fraction")
        d.pop("floor")
    return d


@dataclass
class Arm:
    """An arm as the report reads it: which job's curve, and at which steps."""

    experiment: str
    label: str  # e.g. "dense", "lighthouse-then-dense", "lighthouse k=1024"
    seed: int
    job_id: str
    length: int  # the step the arm ends at
    switch_step: Optional[int] = None
    topk: Optional[int] = None
    trunk_id: Optional[str] = None  # Lighthouse-then-dense: the trunk's curve holds steps <= switch

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Study:
    experiments: List[Experiment]
    jobs: Dict[str, Job] = field(default_factory=dict)
    arms: List[Arm] = field(default_factory=list)

    def manifest(self) -> dict:
        return {
            "experiments": [asdict(e) for e in self.experiments],
            "jobs": {k: j.as_dict() for k, j in self.jobs.items()},
            "arms": [a.as_dict() for a in self.arms],
        }


class _Builder:
    """Collects jobs, merging prefix-equal dense arms and trunks, and the arms that read them."""

    def __init__(self):
        self.dense: Dict[str, Job] = {}
        self.trunks: Dict[str, Job] = {}
        self.branches: Dict[Tuple[str, int], Job] = {}

    @staticmethod
    def _family(job: Job) -> str:
        """Jobs equal but for their length (and evaluations, snapshots): one is a prefix of the other."""
        plan = {
            k: v
            for k, v in job.plan.as_dict().items()
            if k not in ("steps", "snapshot_at", "eval_at", "switch_step", "from_snapshot")
        }
        body = {
            "plan": plan,
            "preset": _preset_identity(job),
            "lr": _lr_identity(job.schedule),
            "precision": job.precision,
            "clip": job.clip,
            "loss": job.loss,
            "impl": job.impl,
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()

    @staticmethod
    def _with_evals(job: Job, *more: Sequence[int]) -> Job:
        evals = set(job.plan.eval_at).union(*map(set, more))
        return replace(job, plan=replace(job.plan, eval_at=tuple(sorted(evals))))

    def _merge(self, pool: Dict[str, Job], job: Job, eval_at: Sequence[int]) -> str:
        key = self._family(job)
        old = pool.get(key)
        if old is not None:
            steps = max(old.plan.steps, job.plan.steps)
            snaps = tuple(sorted(set(old.plan.snapshot_at) | set(job.plan.snapshot_at)))
            job = replace(
                old,
                plan=replace(old.plan, steps=steps, snapshot_at=snaps),
                schedule=replace(old.schedule, total_steps=steps) if old.schedule.kind == "constant" else old.schedule,
            )
        pool[key] = self._with_evals(job, eval_at)
        return key

    def dense_arm(self, job: Job, eval_at) -> str:
        return self._merge(self.dense, job, eval_at)

    def trunk(self, job: Job, eval_at) -> str:
        return self._merge(self.trunks, job, eval_at)

    def branch(self, trunk_key: str, job: Job, eval_at) -> Tuple[str, int]:
        key = (trunk_key, job.plan.switch_step)
        old = self.branches.get(key)
        if old is not None:
            longer = job if job.plan.steps > old.plan.steps else old
            job = self._with_evals(longer, old.plan.eval_at, job.plan.eval_at)
        self.branches[key] = self._with_evals(job, eval_at)
        return key


def expand(experiments: Sequence[Experiment], seeds: Optional[Sequence[int]] = None) -> Study:
    """The jobs of every experiment (seeds: override every experiment's), merged, and the arms that read them."""
    if seeds:  # the manifest (study.json, study.md) records the seeds that ran, not the plan's
        experiments = [replace(e, seeds=tuple(seeds)) for e in experiments]
    b = _Builder()
    pending: List[Tuple[Arm, str, object]] = []  # (arm, pool, key): job ids are known after merging
    for e in experiments:
        for seed in e.seeds:
            common = dict(precision=e.precision, clip=e.clip, loss=e.loss, impl=e.impl)
            base = e.base_preset()
            longest = max(e.lengths())

            def schedule(preset: TrainPreset, steps: int) -> Schedule:
                return Schedule(e.schedule, preset.lr, steps, e.warmup_steps, e.decay_fraction)

            def plan(arm: str, start: str, steps: int, **kw) -> ArmPlan:
                return ArmPlan(arm, seed, steps, start=start, eval_every=e.eval_every, val_windows=e.val_windows, **kw)

            lengths = e.lengths()
            dense = Job(plan("dense", "dense", longest), base, schedule(base, longest), **common)
            pending.append((Arm(e.name, "dense", seed, "", longest), "dense", b.dense_arm(dense, lengths)))
            for length in lengths[:-1]:
                pending.append((Arm(e.name, "dense", seed, "", length), "dense", b.dense_arm(dense, lengths)))
            points = e.switch_points()
            if points:
                switches = sorted({s for _, s in points})
                # the trunk's learning rate is the whole run's (a wsd decay sits at the end of the run, not of
                # the trunk); with several lengths only `constant` is independent of the length
                trunk = Job(
                    plan("lighthouse", "lighthouse", max(switches), snapshot_at=tuple(switches)),
                    base,
                    schedule(base, longest),
                    **common,
                )
                tkey = b.trunk(trunk, switches)
                for length, s in points:
                    branch = Job(
                        plan("lighthouse-then-dense", "lighthouse", length, switch_step=s, from_step=s),
                        base,
                        schedule(base, length),
                        **common,
                    )
                    bkey = b.branch(tkey, branch, (s, length))
                    pending.append(
                        (Arm(e.name, "lighthouse-then-dense", seed, "", length, s, base.topk), "branch", (tkey, bkey))
                    )
            for k in e.topk:
                preset = e.base_preset(topk=k)
                trunk = Job(plan("lighthouse", "lighthouse", e.steps), preset, schedule(preset, e.steps), **common)
                pending.append(
                    (Arm(e.name, f"lighthouse k={k}", seed, "", e.steps, None, k), "trunk", b.trunk(trunk, (e.steps,)))
                )
    study = Study(list(experiments))
    trunk_ids = {k: j.job_id for k, j in b.trunks.items()}
    for pool in (b.dense, b.trunks):
        for job in pool.values():
            study.jobs[job.job_id] = job
    for (tkey, _s), job in b.branches.items():
        job = replace(job, trunk=trunk_ids[tkey])
        study.jobs[job.job_id] = job
    for arm, pool, key in pending:
        if pool == "dense":
            arm.job_id = b.dense[key].job_id
        elif pool == "trunk":
            arm.job_id = b.trunks[key].job_id
        else:
            tkey, bkey = key
            arm.job_id = replace(b.branches[bkey], trunk=trunk_ids[tkey]).job_id
            arm.trunk_id = trunk_ids[tkey]
        study.arms.append(arm)
    return study


def load_plan(name: str, only: Optional[Sequence[str]] = None) -> List[Experiment]:
    """Experiments of a plan: a name from suites/studies/ or a path to a .toml file; `only` keeps those named."""
    from importlib import resources

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    if name.endswith(".toml") or "/" in name:
        path = Path(name)
        if not path.is_file():
            raise ValueError(f"--plan: no such file {name!r}")
        text = path.read_text()
    else:
        res = resources.files("lighthouse.suites").joinpath("studies", f"{name}.toml")
        if not res.is_file():
            names = sorted(
                p.name[:-5]
                for p in resources.files("lighthouse.suites").joinpath("studies").iterdir()
                if p.name.endswith(".toml")
            )
            raise ValueError(f"--plan: unknown study plan {name!r}; plans: {', '.join(names)}")
        text = res.read_text()
    data = tomllib.loads(text)
    defaults = data.get("defaults", {})
    experiments = []
    for entry in data.get("experiment", []):
        merged = {**defaults, **entry}
        unknown = set(merged) - set(SETTINGS)
        if unknown:
            raise ValueError(f"--plan {name}: unknown keys {', '.join(sorted(unknown))}")
        merged.pop("rope", None)
        for key in ("seeds", "run_lengths", "dense_steps", "topk"):
            if key in merged:
                merged[key] = tuple(merged[key])
        if "overrides" in merged:
            merged["overrides"] = tuple(sorted(merged["overrides"].items()))
        experiments.append(Experiment(**merged))
    if only:
        known = {e.name for e in experiments}
        missing = [n for n in only if n not in known]
        if missing:
            raise ValueError(f"--experiments: {', '.join(missing)} not in the plan (it has {', '.join(sorted(known))})")
        experiments = [e for e in experiments if e.name in only]
    if not experiments:
        raise ValueError(f"--plan {name}: no experiments")
    return experiments
