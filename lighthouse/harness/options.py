"""Reading what to run: option values (sizes `8k`, lists, `a..b` ranges, names) and TOML suites.

Pure Python and cheap to import (no torch): `lighthouse-bench suites` and every option error run on it alone.
The points these values expand to are made in `points`.
"""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence

from ..config import ROPE_PLACEMENTS, SCORERS, LighthouseConfig
from .tables import BASELINES, DTYPE_ALIASES, DTYPES, IMPLS, PASSES

DEVICES = ("cuda", "cpu")
_LAYER = LighthouseConfig()

SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)([km]?)$")
SUFFIX = {"": 1, "k": 1024, "m": 1024 * 1024}

#: Keys that define a point (may vary inside `[[grid]]` tables) ...
POINT_KEYS = ("seq", "topk", "levels", "pooling", "scorer", "rope", "batch", "heads", "kv_heads", "head_dim", "dtype")
#: ... and keys that set how the whole sweep runs (top level of a suite only). rope_theta: the RoPE base of
#: the `post` rows (the inputs are raw random q, k, so any base is a model's; 10000 unless given).
RUN_KEYS = (
    "pass",
    "impl",
    "baseline",
    "device",
    "warmup",
    "rep",
    "min_rep",
    "max_seconds",
    "seed",
    "floor",
    "cuda_graph",
    "rope_theta",
)
DOC_KEYS = ("description",)

#: A point key a suite or the command line leaves out: the layer's own defaults (LighthouseConfig, the one
#: place they are set), the paper's layer shape, and the dtype of the device.
POINT_DEFAULTS = {
    "levels": str(_LAYER.levels),
    "pooling": str(_LAYER.pooling),
    "scorer": _LAYER.scorer,
    "rope": _LAYER.rope,
    "batch": "1",
    "heads": "8",
    "head_dim": "128",
}
DTYPE_DEFAULTS = {"cuda": "bf16", "cpu": "fp32"}
#: The grid when no --suite is given on CUDA: the paper's layer shape, several budgets, 8K..256K.
CUDA_DEFAULTS = {"seq": "8k..256k", "topk": "512,1024,2048,4096", "dtype": "bf16", "pass": "fwd,bwd,fwdbwd"}
#: Without --suite on the CPU the sweep is this preset (seconds).
CPU_DEFAULT_SUITE = "quick"
RUN_DEFAULTS = {
    "warmup": 3,
    "rep": 20,
    "min_rep": 3,
    "max_seconds": 3.0,
    "seed": 0,
    "cuda_graph": False,
    "rope_theta": _LAYER.rope_theta,
}


#: The longest sequence the layer supports (lighthouse.plan); every size option stays within it.
MAX_SIZE = 2**30


class OptionError(ValueError):
    """A bad option value or suite; the message names the option."""


# ---------------------------------------------------------------------------------------------- parsing


def parse_size(token: str, option: str) -> int:
    """'8k' -> 8192, '1m' -> 1048576, '1.5k' -> 1536, '96' -> 96 (k = 1024, m = 1048576)."""
    t = str(token).strip().lower()
    m = SIZE_RE.match(t)
    if not m:
        raise OptionError(f"{option}: cannot read {token!r} as a size (examples: 8192, 8k, 1.5k, 1m)")
    value = float(m.group(1)) * SUFFIX[m.group(2)]
    if value != int(value) or value < 1:
        raise OptionError(f"{option}: {token!r} is not a positive whole number")
    if value > MAX_SIZE:
        raise OptionError(f"{option}: {token!r} is above the longest supported sequence, 2**30 = {MAX_SIZE} (1024m)")
    return int(value)


def parse_ints(text, option: str, *, linear: bool = False) -> List[int]:
    """A list of sizes: '8k,96k,128k'; ranges double ('8k..256k' = 8k,16k,...,256k) unless `linear`
    ('2..4' = 2,3,4). A doubling range stops at the last value <= its end. Duplicates are dropped."""
    out: List[int] = []
    items = [s.strip() for s in str(text).split(",")]
    if not any(items):
        raise OptionError(f"{option}: empty list")
    for item in items:
        if not item:
            raise OptionError(f"{option}: empty item in {text!r}")
        if ".." in item:
            lo_s, _, hi_s = item.partition("..")
            lo, hi = parse_size(lo_s, option), parse_size(hi_s, option)
            if hi < lo:
                raise OptionError(f"{option}: range {item!r} ends before it starts")
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
            raise OptionError(f"{option}: {item!r} is not one of {', '.join(choices)}")
        out.append(name)
    if not out:
        raise OptionError(f"{option}: empty list")
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
            raise OptionError(f"{option}: takes one value, got {text!r}")
        return values[0]

    return parse


def _bool(text, option):
    t = str(text).strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise OptionError(f"{option}: expected true or false, got {text!r}")


def _float(text, option):
    try:
        value = float(text)
    except ValueError:
        raise OptionError(f"{option}: expected a number of seconds, got {text!r}") from None
    if value < 0:
        raise OptionError(f"{option}: must be >= 0, got {text!r}")
    return value


def _positive(text, option):
    """A finite number > 0 (the RoPE base)."""
    try:
        value = float(str(text).strip())
    except ValueError:
        raise OptionError(f"{option}: expected a number > 0, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise OptionError(f"{option}: must be a finite number > 0, got {text!r}")
    return value


def _count(minimum: int):
    def parse(text, option):
        try:
            value = int(str(text).strip())
        except ValueError:
            raise OptionError(f"{option}: expected an integer, got {text!r}") from None
        if value < minimum:
            raise OptionError(f"{option}: must be >= {minimum}, got {value}")
        return value

    return parse


#: key -> parser(text, option). Point keys give lists, run keys scalars (pass/impl/baseline: lists).
PARSERS: Dict[str, Callable] = {
    "seq": parse_ints,
    "topk": parse_ints,
    "levels": lambda t, o: parse_ints(t, o, linear=True),
    "pooling": parse_ints,
    "scorer": lambda t, o: parse_choices(t, o, SCORERS),
    "rope": lambda t, o: parse_choices(t, o, ROPE_PLACEMENTS),
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
    "cuda_graph": _bool,
    "rope_theta": _positive,
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


def is_suite_path(name: str) -> bool:
    """A name ending in .toml or holding a path separator is a file; any other name is a preset. Never decided
    by what exists on disk: a folder named like a preset (`--out quick`) must not hide the preset."""
    return name.endswith(".toml") or "/" in name or os.sep in name


def load_suite(name: str) -> dict:
    """A preset name (suites/NAME.toml, read through importlib.resources) or a path to a .toml file."""
    if is_suite_path(name):
        path = Path(name)
        if not path.is_file():
            raise OptionError(f"--suite: no such file {name!r}")
        text = path.read_text()
    else:
        res = resources.files("lighthouse.suites").joinpath(f"{name}.toml")
        if not res.is_file():
            raise OptionError(
                f"--suite: unknown suite {name!r}; presets: {', '.join(suite_names())}; a file is "
                f"named with .toml or a / (e.g. ./{name}.toml)"
            )
        text = res.read_text()
    tomllib = _toml()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise OptionError(f"--suite {name}: not valid TOML: {err}") from None
    return _check_suite(data, name)


def _toml():
    """tomllib (Python >= 3.11) or tomli: imported here so flag-only sweeps run without either."""
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise OptionError("--suite: reading TOML on Python 3.10 needs `pip install tomli`") from None
    return tomllib


def _norm_keys(table: dict, where: str, allowed: Iterable[str]) -> dict:
    out = {}
    for key, value in table.items():
        k = key.replace("-", "_")
        if k not in allowed:
            raise OptionError(f"--suite {where}: unknown key {key!r}; allowed: {', '.join(allowed)}")
        out[k] = value
    return out


def _check_suite(data: dict, name: str) -> dict:
    grids = data.pop("grid", [])
    if not isinstance(grids, list) or not all(isinstance(g, dict) for g in grids):
        raise OptionError(f"--suite {name}: 'grid' must be an array of tables ([[grid]])")
    top = _norm_keys(data, name, POINT_KEYS + RUN_KEYS + DOC_KEYS)
    sub = [_norm_keys(g, f"{name} [[grid]] #{i + 1}", POINT_KEYS) for i, g in enumerate(grids)]
    return {"top": top, "grids": sub}
