"""The one point model and the planner: option values -> points -> tasks (one task = one CSV row).

Everything here is pure (no tensors, no device): the same text always gives the same plan, so a plan can be
printed (`--dry-run`), resumed and tested without a GPU. `sweep`, `check` and `profile` all make their points
here; S comes from the library's plan (`lighthouse.plan.plan_for`).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ..config import ROPE_PLACEMENTS, LighthouseConfig
from ..plan import LighthousePlan, plan_for
from .options import (
    CPU_DEFAULT_SUITE,
    CUDA_DEFAULTS,
    DOC_KEYS,
    DTYPE_DEFAULTS,
    POINT_DEFAULTS,
    POINT_KEYS,
    RUN_DEFAULTS,
    RUN_KEYS,
    OptionError,
    load_suite,
    option_name,
    parse_option,
)
from .tables import BASELINES, FLOOR, IMPLS, PASSES, config_cells, fmt_size, row_key


@dataclass(frozen=True)
class Shape:
    """What a dense baseline depends on: measured once per shape and pass, reused by every Lighthouse point."""

    n: int
    batch: int
    heads: int
    kv_heads: int
    head_dim: int
    dtype: str

    def label(self) -> str:
        return f"N={fmt_size(self.n)} B={self.batch} H={self.heads}/{self.kv_heads} D={self.head_dim} {self.dtype}"

    def cells(self) -> dict:
        """The CSV cells of this shape: N and SHAPE_COLUMNS (the fields' names are the columns')."""
        return asdict(self)

    def invalid_reason(self) -> Optional[str]:
        if self.heads % self.kv_heads:
            return f"heads={self.heads} must be a multiple of kv_heads={self.kv_heads} (GQA)"
        return None


@dataclass(frozen=True)
class Point:
    """One Lighthouse configuration at one shape. rope: where RoPE is applied (docs/rope.md); rope_theta: the
    base `post` rotates with (a run option, not a grid key: the inputs are raw random q, k)."""

    shape: Shape
    levels: int
    pooling: int
    topk: int
    scorer: str
    rope: str = "pre"
    rope_theta: float = LighthouseConfig.rope_theta

    def config(self, impl: str = "torch", sdpa_backend: Optional[str] = None) -> LighthouseConfig:
        return LighthouseConfig(
            self.levels,
            self.pooling,
            self.topk,
            self.scorer,
            impl=impl,
            sdpa_backend=sdpa_backend,
            rope=self.rope,
            rope_theta=self.rope_theta,
        )

    def cells(self) -> dict:
        """The CSV cells naming this point: its shape's and its configuration's (POINT_COLUMNS)."""
        return {**self.shape.cells(), **config_cells(self)}

    def plan(self) -> LighthousePlan:
        """The library's plan of this point (S = plan().selected_len); raises ValueError naming the parameter
        for an invalid combination, before anything is allocated."""
        reason = self.shape.invalid_reason()
        if reason:
            raise ValueError(reason)
        s = self.shape
        return plan_for(self.config(), s.batch, s.heads, s.kv_heads, s.n, s.head_dim)

    def label(self) -> str:
        rope = "" if self.rope == "pre" else f" rope={self.rope}"
        return f"N={fmt_size(self.shape.n)} L{self.levels} p{self.pooling} k{self.topk} {self.scorer}{rope}"


@dataclass(frozen=True)
class Task:
    """One CSV row to produce: (point or shape, implementation, pass)."""

    kind: str  # "dense", "floor" or "lighthouse"
    impl: str  # CSV name: sdpa_cudnn, ..., floor, lighthouse_torch, ...
    pass_: str
    shape: Shape
    point: Optional[Point] = None
    s_sel: Optional[int] = None
    invalid: Optional[str] = None  # known before running: the reason
    cuda_graph: bool = False  # timed through lighthouse.cuda_graph (sweep --cuda-graph)

    def key(self, device: str) -> Tuple[str, ...]:
        """Identity of the row in results.csv (what --resume matches), as the CSV spells it."""
        return row_key(
            {
                "impl": self.impl,
                "pass": self.pass_,
                "device": device,
                **self.shape.cells(),
                **config_cells(self.point),
                "cuda_graph": self.cuda_graph,
            }
        )

    def label(self) -> str:
        what = self.point.label() if self.point else self.shape.label()
        return f"{what} · {self.impl}{' graph' if self.cuda_graph else ''} · {self.pass_}"


@dataclass
class SweepSpec:
    """A resolved sweep: the points and how to run them. impls/baselines None = decided on the device."""

    suite: Optional[str]
    device: str
    points: List[Point]
    passes: List[str]
    impls: Optional[List[str]]
    baselines: Optional[List[str]]
    warmup: int
    rep: int
    min_rep: int
    max_seconds: float
    seed: int
    floor: bool
    cuda_graph: bool = False  # dense and Lighthouse rows through CUDA graphs (the floor stays eager)
    options: dict = field(default_factory=dict)  # the resolved option values, for machine.json

    @property
    def shapes(self) -> List[Shape]:
        return sorted(dict.fromkeys(p.shape for p in self.points), key=_shape_order)


def _shape_order(s: Shape):
    return (s.dtype, s.batch, s.heads, s.kv_heads, s.head_dim, s.n)


def resolve(suite: Optional[str], flags: Dict[str, object], cuda_available: bool) -> SweepSpec:
    """Suite (or the default) + command-line flags (None = not given) -> SweepSpec.

    A flag replaces its key everywhere, in the top level and in every [[grid]] table.
    No suite: the `quick` preset on the CPU, the CUDA_DEFAULTS grid on CUDA.
    """
    given = {k: v for k, v in flags.items() if v is not None}
    if "device" in given:
        device = parse_option("device", given["device"])
    else:
        device = None
    if suite is None:
        device_guess = device or ("cuda" if cuda_available else "cpu")
        if device_guess == "cpu":
            suite = CPU_DEFAULT_SUITE
    if suite is not None:
        data = load_suite(suite)
    else:
        data = {"top": dict(CUDA_DEFAULTS), "grids": []}
    top = {k: v for k, v in data["top"].items() if k not in DOC_KEYS}
    grids = [dict(g) for g in data["grids"]]
    for key, value in given.items():
        top[key] = value
        for g in grids:
            g.pop(key, None)
    if device is None:
        device = parse_option("device", top["device"]) if "device" in top else ("cuda" if cuda_available else "cpu")
    if device == "cuda" and not cuda_available:
        where = f"suite {suite!r} targets" if suite and "device" not in given else "--device asks for"
        raise OptionError(f"--device: {where} cuda, but CUDA is not available here; use --device cpu")
    if device != "cuda" and parse_option("cuda_graph", top.get("cuda_graph", False)):
        raise OptionError(
            f"--cuda-graph: CUDA graphs need --device cuda, got --device {device}; leave --cuda-graph out on the CPU"
        )

    run = {}
    for key in RUN_KEYS:
        if key in top and key != "device":
            run[key] = parse_option(key, top[key])
    defaults = dict(RUN_DEFAULTS, floor=device == "cuda")
    for key, value in defaults.items():
        run.setdefault(key, value)
    if run["min_rep"] > run["rep"]:
        if "min_rep" in top:  # asked for: refuse rather than change it
            raise OptionError(f"--min-rep: must be <= --rep, got --min-rep {run['min_rep']} and --rep {run['rep']}")
        run["min_rep"] = run["rep"]  # only the default is lowered to a small --rep

    top_points = {k: v for k, v in top.items() if k in POINT_KEYS}
    tables = [{**top_points, **g} for g in grids or [{}]]
    points = make_points(tables, device, run["rope_theta"])
    run.setdefault("pass", list(PASSES))
    # the grid as parsed, so that --resume can tell whether it is asked to run the same sweep
    grid = [{k: parse_option(k, v) for k, v in t.items() if v is not None} for t in tables]
    options = {"suite": suite, "device": device, **run, "grid": grid}
    return SweepSpec(
        suite=suite,
        device=device,
        points=points,
        passes=run["pass"],
        impls=run.get("impl"),
        baselines=run.get("baseline"),
        warmup=run["warmup"],
        rep=run["rep"],
        min_rep=run["min_rep"],
        max_seconds=run["max_seconds"],
        seed=run["seed"],
        floor=run["floor"],
        cuda_graph=run["cuda_graph"],
        options=options,
    )


def make_points(
    tables: Sequence[Dict[str, object]], device: str, rope_theta: float = LighthouseConfig.rope_theta
) -> List["Point"]:
    """Every combination of the point keys of each table (option text or TOML values; a key left out takes
    its default, POINT_DEFAULTS and the device's dtype; kv_heads defaults to heads), deduplicated, in run
    order. seq and topk have no default. rope_theta: the RoPE base of every point (used by `post`)."""
    base = {**POINT_DEFAULTS, "dtype": DTYPE_DEFAULTS.get(device, "fp32")}
    points: List[Point] = []
    for table in tables:
        merged = {**base, **{k: v for k, v in table.items() if v is not None}}
        for key in ("seq", "topk"):
            if key not in merged:
                raise OptionError(f"{option_name(key)}: no value (give it on the command line or in the suite)")
        vals = {k: parse_option(k, v) for k, v in merged.items()}
        kv_list = vals.get("kv_heads")
        for n, topk, levels, pooling, scorer, rope, b, h, d, dtype in itertools.product(
            vals["seq"],
            vals["topk"],
            vals["levels"],
            vals["pooling"],
            vals["scorer"],
            vals["rope"],
            vals["batch"],
            vals["heads"],
            vals["head_dim"],
            vals["dtype"],
        ):
            for hkv in kv_list or [h]:
                points.append(Point(Shape(n, b, h, hkv, d, dtype), levels, pooling, topk, scorer, rope, rope_theta))
    points = list(dict.fromkeys(points))
    points.sort(
        key=lambda p: (_shape_order(p.shape), p.levels, p.pooling, p.topk, p.scorer, ROPE_PLACEMENTS.index(p.rope))
    )
    return points


def plan_tasks(spec: SweepSpec, impls: Sequence[str], baselines: Sequence[str]) -> List[Task]:
    """Every row of the sweep, in run order: per shape (N ascending) its dense baselines first (the
    Lighthouse rows' speedups need them), then per point its floor and its Lighthouse implementations.
    Invalid points are tasks with `invalid` set: they become rows without allocating anything."""
    tasks: List[Task] = []
    by_shape: Dict[Shape, List[Point]] = {}
    for p in spec.points:
        by_shape.setdefault(p.shape, []).append(p)
    for shape in spec.shapes:
        bad_shape = shape.invalid_reason()
        for pass_ in spec.passes:
            for b in baselines:
                tasks.append(Task("dense", BASELINES[b], pass_, shape, invalid=bad_shape, cuda_graph=spec.cuda_graph))
        for point in by_shape[shape]:
            try:
                s_sel, invalid = point.plan().selected_len, None
            except ValueError as err:
                s_sel, invalid = None, str(err)
            if spec.floor and invalid is None:
                for pass_ in spec.passes:
                    tasks.append(Task("floor", FLOOR, pass_, shape, point, s_sel))
            for impl in impls:
                for pass_ in spec.passes:
                    tasks.append(Task("lighthouse", IMPLS[impl], pass_, shape, point, s_sel, invalid, spec.cuda_graph))
    return tasks


def nothing_can_run(points: Sequence["Point"]) -> Optional[str]:
    """Why no point of a grid can run (every one invalid: the options, a usage error), or None."""
    reasons = []
    for p in points:
        try:
            p.plan()
            return None
        except ValueError as err:
            reasons.append(str(err))
    return f"no row of this run can run: every point is invalid ({reasons[0]})" if reasons else None
