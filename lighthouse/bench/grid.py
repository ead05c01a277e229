"""What to run: option parsing, suite loading and the expansion of a sweep into points and tasks.

Everything here is pure (no tensors, no device): the same text always gives the same plan, so a plan can be
printed (`--dry-run`), resumed and tested without a GPU.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ..config import SCORERS, LighthouseConfig
from .results import BASELINES, DTYPE_ALIASES, DTYPES, FLOOR, IMPLS, PASSES, fmt_size, row_key

DEVICES = ("cuda", "cpu")

SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)([km]?)$")
SUFFIX = {"": 1, "k": 1024, "m": 1024 * 1024}

#: Keys that define a point (may vary inside `[[grid]]` tables) ...
POINT_KEYS = ("seq", "topk", "levels", "pooling", "scorer", "batch", "heads", "kv_heads", "head_dim", "dtype")
#: ... and keys that set how the whole sweep runs (top level of a suite only).
RUN_KEYS = ("pass", "impl", "baseline", "device", "warmup", "rep", "min_rep", "max_seconds", "seed", "floor")
DOC_KEYS = ("description",)

#: The grid when no --suite is given on CUDA: the paper's layer shape, several budgets, 8K..256K.
CUDA_DEFAULTS = {
    "seq": "8k..256k", "topk": "512,1024,2048,4096", "levels": "3", "pooling": "4", "scorer": "norm",
    "batch": "1", "heads": "8", "head_dim": "128", "dtype": "bf16", "pass": "fwd,bwd,fwdbwd",
}
#: Without --suite on the CPU the sweep is this preset (seconds).
CPU_DEFAULT_SUITE = "quick"
RUN_DEFAULTS = {"warmup": 3, "rep": 20, "min_rep": 3, "max_seconds": 3.0, "seed": 0}


class GridError(ValueError):
    """A bad option value or suite; the message names the option."""


# ---------------------------------------------------------------------------------------------- parsing

def parse_size(token: str, option: str) -> int:
    """'8k' -> 8192, '1m' -> 1048576, '1.5k' -> 1536, '96' -> 96 (k = 1024, m = 1048576)."""
    t = str(token).strip().lower()
    m = SIZE_RE.match(t)
    if not m:
        raise GridError(f"{option}: cannot read {token!r} as a size (examples: 8192, 8k, 1.5k, 1m)")
    value = float(m.group(1)) * SUFFIX[m.group(2)]
    if value != int(value) or value < 1:
        raise GridError(f"{option}: {token!r} is not a positive whole number")
    return int(value)


def parse_ints(text, option: str, *, linear: bool = False) -> List[int]:
    """A list of sizes: '8k,96k,128k'; ranges double ('8k..256k' = 8k,16k,...,256k) unless `linear`
    ('2..4' = 2,3,4). A doubling range stops at the last value <= its end. Duplicates are dropped."""
    out: List[int] = []
    items = [s.strip() for s in str(text).split(",")]
    if not any(items):
        raise GridError(f"{option}: empty list")
    for item in items:
        if not item:
            raise GridError(f"{option}: empty item in {text!r}")
        if ".." in item:
            lo_s, _, hi_s = item.partition("..")
            lo, hi = parse_size(lo_s, option), parse_size(hi_s, option)
            if hi < lo:
                raise GridError(f"{option}: range {item!r} ends before it starts")
            v = lo
            while v <= hi:
                out.append(v)
                v = v + 1 if linear else v * 2
        else:
            out.append(parse_size(item, option))
    return list(dict.fromkeys(out))


def parse_choices(text, option: str, choices: Sequence[str], aliases: Optional[Dict[str, str]] = None) -> List[str]:
    """A comma-separated list of names, each one of `choices` (or an alias of one)."""
    aliases = aliases or {}
    out = []
    for item in (s.strip().lower() for s in str(text).split(",")):
        name = aliases.get(item, item)
        if name not in choices:
            raise GridError(f"{option}: {item!r} is not one of {', '.join(choices)}")
        out.append(name)
    if not out:
        raise GridError(f"{option}: empty list")
    return list(dict.fromkeys(out))


def parse_baselines(text, option: str = "--baseline") -> List[str]:
    """Baseline names; accepts the CSV spellings too (sdpa_cudnn)."""
    aliases = {v: k for k, v in BASELINES.items()}
    return parse_choices(text, option, tuple(BASELINES), aliases)


def parse_impls(text, option: str = "--impl") -> List[str]:
    aliases = {v: k for k, v in IMPLS.items()}
    return parse_choices(text, option, tuple(IMPLS), aliases)


def _one(parser: Callable[[str, str], list]) -> Callable[[str, str], object]:
    def parse(text, option):
        values = parser(text, option)
        if len(values) != 1:
            raise GridError(f"{option}: takes one value, got {text!r}")
        return values[0]
    return parse


def _bool(text, option):
    t = str(text).strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise GridError(f"{option}: expected true or false, got {text!r}")


def _float(text, option):
    try:
        value = float(text)
    except ValueError:
        raise GridError(f"{option}: expected a number of seconds, got {text!r}") from None
    if value < 0:
        raise GridError(f"{option}: must be >= 0, got {text!r}")
    return value


def _count(minimum: int):
    def parse(text, option):
        try:
            value = int(str(text).strip())
        except ValueError:
            raise GridError(f"{option}: expected an integer, got {text!r}") from None
        if value < minimum:
            raise GridError(f"{option}: must be >= {minimum}, got {value}")
        return value
    return parse


#: key -> parser(text, option). Point keys give lists, run keys scalars (pass/impl/baseline: lists).
PARSERS: Dict[str, Callable] = {
    "seq": parse_ints,
    "topk": parse_ints,
    "levels": lambda t, o: parse_ints(t, o, linear=True),
    "pooling": parse_ints,
    "scorer": lambda t, o: parse_choices(t, o, SCORERS),
    "batch": parse_ints,
    "heads": parse_ints,
    "kv_heads": parse_ints,
    "head_dim": parse_ints,
    "dtype": lambda t, o: parse_choices(t, o, DTYPES, DTYPE_ALIASES),
    "pass": lambda t, o: parse_choices(t, o, PASSES),
    "impl": parse_impls,
    "baseline": parse_baselines,
    "device": _one(lambda t, o: parse_choices(t, o, DEVICES)),
    "warmup": _count(1),
    "rep": _count(1),
    "min_rep": _count(1),
    "max_seconds": _float,
    "seed": _count(0),
    "floor": _bool,
}


def option_name(key: str) -> str:
    """The command-line spelling of a key, for error messages: kv_heads -> --kv-heads."""
    return "--" + key.replace("_", "-")


def parse_option(key: str, value) -> object:
    """Parse one option value (text from the command line or a TOML value) for `key`."""
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    elif isinstance(value, bool):
        value = str(value).lower()
    return PARSERS[key](str(value), option_name(key))


# ----------------------------------------------------------------------------------------------- suites

def suite_names() -> List[str]:
    """The presets shipped in `lighthouse.suites`."""
    return sorted(p.name[:-5] for p in resources.files("lighthouse.suites").iterdir() if p.name.endswith(".toml"))


def load_suite(name: str) -> dict:
    """A preset name (suites/NAME.toml, read through importlib.resources) or a path to a .toml file."""
    path = Path(name)
    if name.endswith(".toml") or path.exists():
        if not path.is_file():
            raise GridError(f"--suite: no such file {name!r}")
        text = path.read_text()
    else:
        res = resources.files("lighthouse.suites").joinpath(f"{name}.toml")
        if not res.is_file():
            raise GridError(f"--suite: unknown suite {name!r}; presets: {', '.join(suite_names())}, or a path to a .toml file")
        text = res.read_text()
    tomllib = _toml()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise GridError(f"--suite {name}: not valid TOML: {err}") from None
    return _check_suite(data, name)


def _toml():
    """tomllib (Python >= 3.11) or tomli: imported here so flag-only sweeps run without either."""
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise GridError("--suite: reading TOML on Python 3.10 needs `pip install tomli`") from None
    return tomllib


def _norm_keys(table: dict, where: str, allowed: Iterable[str]) -> dict:
    out = {}
    for key, value in table.items():
        k = key.replace("-", "_")
        if k not in allowed:
            raise GridError(f"--suite {where}: unknown key {key!r}; allowed: {', '.join(allowed)}")
        out[k] = value
    return out


def _check_suite(data: dict, name: str) -> dict:
    grids = data.pop("grid", [])
    if not isinstance(grids, list) or not all(isinstance(g, dict) for g in grids):
        raise GridError(f"--suite {name}: 'grid' must be an array of tables ([[grid]])")
    top = _norm_keys(data, name, POINT_KEYS + RUN_KEYS + DOC_KEYS)
    sub = [_norm_keys(g, f"{name} [[grid]] #{i + 1}", POINT_KEYS) for i, g in enumerate(grids)]
    return {"top": top, "grids": sub}


# ------------------------------------------------------------------------------------------- the plan

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

    def invalid_reason(self) -> Optional[str]:
        if self.heads % self.kv_heads:
            return f"heads={self.heads} must be a multiple of kv_heads={self.kv_heads} (GQA)"
        return None


@dataclass(frozen=True)
class Point:
    """One Lighthouse configuration at one shape."""

    shape: Shape
    levels: int
    pooling: int
    topk: int
    scorer: str

    def config(self, impl: str = "torch", sdpa_backend: Optional[str] = None) -> LighthouseConfig:
        return LighthouseConfig(self.levels, self.pooling, self.topk, self.scorer, impl=impl, sdpa_backend=sdpa_backend)

    def selected_len(self) -> int:
        """S; raises ValueError (naming the parameter) for an invalid combination, before anything is allocated."""
        reason = self.shape.invalid_reason()
        if reason:
            raise ValueError(reason)
        return self.config().selected_len(self.shape.n)

    def label(self) -> str:
        return f"N={fmt_size(self.shape.n)} L{self.levels} p{self.pooling} k{self.topk} {self.scorer}"


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

    def key(self, device: str) -> Tuple[str, ...]:
        """Identity of the row in results.csv (what --resume matches), as the CSV spells it."""
        p = self.point
        return row_key({
            "impl": self.impl, "pass": self.pass_, "device": device, "dtype": self.shape.dtype, "n": self.shape.n,
            "batch": self.shape.batch, "heads": self.shape.heads, "kv_heads": self.shape.kv_heads,
            "head_dim": self.shape.head_dim, "levels": p.levels if p else "", "pooling": p.pooling if p else "",
            "topk": p.topk if p else "", "scorer": p.scorer if p else "",
        })

    def label(self) -> str:
        what = self.point.label() if self.point else self.shape.label()
        return f"{what} · {self.impl} · {self.pass_}"


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
        raise GridError(f"--device: {where} cuda, but CUDA is not available here; use --device cpu")

    run = {}
    for key in RUN_KEYS:
        if key in top and key != "device":
            run[key] = parse_option(key, top[key])
    defaults = dict(RUN_DEFAULTS, floor=device == "cuda")
    for key, value in defaults.items():
        run.setdefault(key, value)
    if run["min_rep"] > run["rep"]:
        run["min_rep"] = run["rep"]

    base = {"levels": "3", "pooling": "4", "scorer": "norm", "batch": "1", "heads": "8", "head_dim": "128",
            "dtype": "bf16" if device == "cuda" else "fp32"}
    points: List[Point] = []
    for g in grids or [{}]:
        merged = {**base, **{k: v for k, v in top.items() if k in POINT_KEYS}, **g}
        for key in ("seq", "topk"):
            if key not in merged:
                raise GridError(f"{option_name(key)}: no value (give it on the command line or in the suite)")
        vals = {k: parse_option(k, v) for k, v in merged.items()}
        kv_list = vals.get("kv_heads")
        for n, topk, levels, pooling, scorer, b, h, d, dtype in itertools.product(
            vals["seq"], vals["topk"], vals["levels"], vals["pooling"], vals["scorer"], vals["batch"], vals["heads"],
            vals["head_dim"], vals["dtype"],
        ):
            for hkv in kv_list or [h]:
                points.append(Point(Shape(n, b, h, hkv, d, dtype), levels, pooling, topk, scorer))
    points = list(dict.fromkeys(points))
    points.sort(key=lambda p: (_shape_order(p.shape), p.levels, p.pooling, p.topk, p.scorer))
    run.setdefault("pass", list(PASSES))
    options = {"suite": suite, "device": device, **run}
    return SweepSpec(
        suite=suite, device=device, points=points, passes=run["pass"], impls=run.get("impl"),
        baselines=run.get("baseline"), warmup=run["warmup"], rep=run["rep"], min_rep=run["min_rep"],
        max_seconds=run["max_seconds"], seed=run["seed"], floor=run["floor"], options=options,
    )


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
                tasks.append(Task("dense", BASELINES[b], pass_, shape, invalid=bad_shape))
        for point in by_shape[shape]:
            try:
                s_sel, invalid = point.selected_len(), None
            except ValueError as err:
                s_sel, invalid = None, str(err)
            if spec.floor and invalid is None:
                for pass_ in spec.passes:
                    tasks.append(Task("floor", FLOOR, pass_, shape, point, s_sel))
            for impl in impls:
                for pass_ in spec.passes:
                    tasks.append(Task("lighthouse", IMPLS[impl], pass_, shape, point, s_sel, invalid))
    return tasks
