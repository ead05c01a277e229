"""`lighthouse-bench report`: one self-contained report from one or more result folders.

A folder holds a sweep (results.csv + machine.json, see sweep.py) or a profile (profile.csv + machine.json, see
profile.py). The report answers the question a reader has first (does Lighthouse pay off here, from which N, by
how much) before the tables that back it, and keeps the provenance of every number (machine.json) beside it.

Outputs in `out`: report.md (charts as relative files in charts/), report.html (one file, CSS inline, charts
embedded as base64 PNG, nothing loaded from elsewhere, so it can be mailed or attached as a CI artifact),
charts/*.png, and headline.json (the headline numbers, for scripts and regression gates).

The headline numbers come from pure functions over the CSV row dicts (`sweep_headline`, `crossover_n`, ...),
so they are tested without drawing anything.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from ..harness import machine, tables
from ..harness.outdir import writable_folder
from ..harness.tables import BASELINES, PASSES, PROFILE, SWEEP, fmt_size
from .document import Block, Chart, Heading, Para, Table, to_html, to_markdown

SWEEP_CSV, PROFILE_CSV, MACHINE_JSON = "results.csv", "profile.csv", "machine.json"
#: The Lighthouse paths in order of preference for the headline (the fused kernels are what ships).
PREFERRED_IMPLS = ("lighthouse_triton", "lighthouse_torch")
#: Preferred headline pass: a training step runs forward and backward.
PREFERRED_PASSES = ("fwdbwd", "fwd", "bwd")
PREFERRED_BASELINE = "sdpa_cudnn"
#: What identifies a Lighthouse point across two sweeps (plus impl, so torch and triton rows stay apart).
POINT_KEY, SHAPE_KEY = tables.POINT_COLUMNS, tables.SHAPE_COLUMNS
PROFILE_POINT_KEY = ("impl",) + POINT_KEY
PROFILE_SUMMARY_STAGES = tables.PROFILE_SUMMARY

Row = Dict[str, str]


# ------------------------------------------------------------------------------------------- small helpers
_num, _norm = tables.num, tables.norm


def _int(x) -> Optional[int]:
    v = _num(x)
    return int(v) if v is not None else None


def _ok(row: Row) -> bool:
    return row.get("status") == "ok" and _num(row.get("median_ms")) is not None


def _fmt(x: Optional[float], spec: str, suffix: str = "") -> str:
    return tables.fmt(x, spec=spec, suffix=suffix)


def _size(n) -> str:
    v = _int(n)
    return fmt_size(v) if v is not None else "-"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "run"


# ------------------------------------------------------------------------------------- headline (pure)
def lighthouse_impl(rows: Iterable[Row]) -> Optional[str]:
    """The Lighthouse path to headline: triton when it has an ok row, else torch, else any Lighthouse impl."""
    impls = {r.get("impl") for r in rows if r.get("kind") == "lighthouse" and _ok(r)}
    for impl in PREFERRED_IMPLS:
        if impl in impls:
            return impl
    return min(impls) if impls else None


def headline_pass(rows: Iterable[Row], impl: Optional[str]) -> Optional[str]:
    """fwdbwd when the impl has an ok row for it (a training step), else fwd, else bwd."""
    passes = {r.get("pass") for r in rows if r.get("impl") == impl and _ok(r)}
    return next((p for p in PREFERRED_PASSES if p in passes), min(passes) if passes else None)


def headline_baseline(rows: Iterable[Row]) -> Optional[str]:
    """The dense impl the speedups are read against: cuDNN when its column has values, else the first
    speedup_vs_* column with any value (in the CSV's column order)."""
    lh = [r for r in rows if r.get("kind") == "lighthouse"]
    order = [PREFERRED_BASELINE] + [b for b in BASELINES.values() if b != PREFERRED_BASELINE]
    for base in order:
        if any(_num(r.get(f"speedup_vs_{base}")) is not None for r in lh):
            return base
    return None


def best_by_n(rows: Iterable[Row], impl: str, pass_: str, baseline: str) -> Dict[int, Row]:
    """Per N, the ok Lighthouse row with the largest speedup (a sweep may try several k or L at one N; the
    question 'is Lighthouse faster at N' is answered by its best configuration there)."""
    col = f"speedup_vs_{baseline}"
    best: Dict[int, Row] = {}
    for r in rows:
        if r.get("kind") != "lighthouse" or r.get("impl") != impl or r.get("pass") != pass_ or not _ok(r):
            continue
        n, s = _int(r.get("n")), _num(r.get(col))
        if n is None or s is None:
            continue
        if n not in best or s > _num(best[n][col]):
            best[n] = r
    return best


def crossover_n(speedups: Mapping[int, float]) -> Optional[int]:
    """The smallest N from which on Lighthouse is faster (speedup > 1) at every larger N measured; None when
    it loses at the longest N (or nothing was measured). A win below a later loss does not count."""
    cross = None
    for n in sorted(speedups, reverse=True):
        if speedups[n] is None or speedups[n] <= 1.0:
            break
        cross = n
    return cross


def dense_row(rows: Iterable[Row], like: Row, baseline: str) -> Optional[Row]:
    """The ok dense row of `baseline` at the same shape and pass as the Lighthouse row `like`."""

    def match(r: Row):  # graphed Lighthouse (sweep --cuda-graph) against graphed dense; a row without it: eager
        return tuple(_norm(r.get(k)) for k in tables.DENSE_MATCH_COLUMNS) + (_norm(r.get("cuda_graph")) or "False",)

    key = match(like)
    for r in rows:
        if r.get("kind") == "dense" and r.get("impl") == baseline and _ok(r):
            if match(r) == key:
                return r
    return None


def memory_saved(lh: Row, dense: Optional[Row]) -> Optional[float]:
    """1 - Lighthouse peak / dense peak (None without both peaks: CPU runs have no memory column)."""
    a, b = _num(lh.get("peak_mem_gib")), _num((dense or {}).get("peak_mem_gib"))
    return 1.0 - a / b if a is not None and b else None


def sweep_headline(rows: Sequence[Row]) -> dict:
    """The headline of one sweep: speedup, crossover, memory saved and floor ratio at the longest N where
    both Lighthouse and the dense baseline ran ok (a dense OOM at the very longest N leaves no speedup there)."""
    impl = lighthouse_impl(rows)
    pass_ = headline_pass(rows, impl)
    base = headline_baseline(rows)
    out = {
        "impl": impl,
        "pass": pass_,
        "baseline": base,
        "n": None,
        "point": None,
        "lighthouse_ms": None,
        "dense_ms": None,
        "speedup": None,
        "crossover_n": None,
        "faster_at_every_n": False,
        "memory_saved": None,
        "floor_ratio": None,
        "n_measured": [],
        "device": next((r.get("device") for r in rows if r.get("device")), None),
        "longest_lighthouse_n": max(
            (
                n
                for r in rows
                if r.get("impl") == impl and r.get("pass") == pass_ and _ok(r) and (n := _int(r.get("n"))) is not None
            ),
            default=None,
        ),
    }
    if impl is None or pass_ is None or base is None:
        return out
    best = best_by_n(rows, impl, pass_, base)
    if not best:
        return out
    col = f"speedup_vs_{base}"
    speedups = {n: _num(r[col]) for n, r in best.items()}
    n_max = max(best)
    row = best[n_max]
    dense = dense_row(rows, row, base)
    cross = crossover_n(speedups)
    out.update(
        n=n_max,
        point={k: _norm(row.get(k)) for k in POINT_KEY if k != "n"},
        lighthouse_ms=_num(row["median_ms"]),
        dense_ms=_num((dense or {}).get("median_ms")),
        speedup=speedups[n_max],
        crossover_n=cross,
        faster_at_every_n=cross is not None and cross == min(best),
        memory_saved=memory_saved(row, dense),
        floor_ratio=_num(row.get("floor_ratio")),
        n_measured=sorted(best),
        speedup_host_ahead=_num(row.get(tables.clock_column(col, tables.HOST_AHEAD))),
        floor_ratio_host_ahead=_num(row.get(tables.clock_column("floor_ratio", tables.HOST_AHEAD))),
        break_even=_break_even_of(rows, row, base),
    )
    return out


def _break_even_of(rows: Sequence[Row], row: Row, base: str) -> Dict[str, Optional[str]]:
    """The break-even N of the headline row's configuration, per clock, in words (breakeven.py)."""
    from ..bench.breakeven import CONFIG_COLUMNS, break_even_rows

    key = tuple(_norm(row.get(c)) for c in CONFIG_COLUMNS)
    for found in break_even_rows(rows, base):
        if tuple(_norm(found[c]) for c in CONFIG_COLUMNS) == key:
            return {clock: found[clock].describe() if found[clock] is not None else None for clock in tables.CLOCKS}
    return {clock: None for clock in tables.CLOCKS}


def headline_sentence(h: dict) -> str:
    """The headline in words, for the top of the report."""
    if h.get("speedup") is None:
        return "No headline: no Lighthouse row with a successful dense baseline at the same shape and pass."
    impl = (h["impl"] or "").removeprefix("lighthouse_")
    point = h.get("point") or {}
    config = f"k={point.get('topk')}, L={point.get('levels')}, p={point.get('pooling')}, {point.get('scorer')} scorer"
    if point.get("rope") not in (None, "", "pre"):
        config += f", rope={point['rope']}"
    ahead = (
        f" as launched, {h['speedup_host_ahead']:.3g}x host ahead (the kernels alone, each side on its own clock)"
        if h.get("speedup_host_ahead") is not None
        else " as launched"
    )
    parts = [
        f"Lighthouse ({impl}, {h['pass']}) is {h['speedup']:.3g}x as fast as {h['baseline']}{ahead} at "
        f"N={_size(h['n'])} in its best configuration there ({config}; each N is judged by its best "
        f"configuration)"
    ]
    even = h.get("break_even") or {}
    if any(even.values()):
        parts.append(
            "it breaks even with dense at N "
            + ", ".join(f"{text} {tables.CLOCKS[clock]}" for clock, text in even.items() if text)
        )
    if h["crossover_n"] is None:
        parts.append("it is not faster at the longest N measured, so there is no crossover")
    elif h["faster_at_every_n"]:
        parts.append(f"faster at every N measured (from N={_size(h['crossover_n'])})")
    else:
        parts.append(f"faster from N={_size(h['crossover_n'])} on")
    if h["memory_saved"] is not None:
        parts.append(f"{100 * h['memory_saved']:.1f}% less peak memory than dense at N={_size(h['n'])}")
    if h["floor_ratio"] is not None:
        ahead = h.get("floor_ratio_host_ahead")
        parts.append(
            f"{h['floor_ratio']:.3g}x its floor as launched"
            + (f", {ahead:.3g}x host ahead" if ahead else "")
            + " (dense SDPA on the S selected entries alone)"
        )
    if h.get("baseline") == "sdpa_math":
        parts.append(
            "sdpa_math is PyTorch's unfused reference attention, far slower than the fused kernels "
            "(cuDNN, flash) a GPU run compares with"
        )
    if h.get("device") == "cpu":
        parts.append("CPU timings are noisy and say little about a GPU: read them as a smoke test")
    return "; ".join(parts) + "."


# ------------------------------------------------------------------------------------------ the input runs
@dataclass
class Run:
    """One input: a sweep or a profile, its rows, its machine.json and the label it is shown under."""

    kind: str  # "sweep" or "profile"
    csv: Path
    rows: List[Row]
    info: dict
    label: str = ""
    headline: dict = field(default_factory=dict)
    torn: int = 0  # incomplete rows left out (a crash cut them short)

    @property
    def commit(self) -> Optional[str]:
        git = self.info.get("git") if isinstance(self.info.get("git"), dict) else {}
        return git.get("commit") or self.info.get("commit")

    @property
    def commit_label(self) -> Optional[str]:
        """Short commit, "+dirty" when the run's tree had uncommitted changes (the commit alone would lie)."""
        if not self.commit:
            return None
        git = self.info.get("git") if isinstance(self.info.get("git"), dict) else {}
        return self.commit[:7] + ("+dirty" if git.get("dirty") else "")


def _kind_of_csv(path: Path) -> Optional[str]:
    """A CSV given directly: by its name, else by its header (a profile has a `stage` column)."""
    if path.name == SWEEP_CSV:
        return "sweep"
    if path.name == PROFILE_CSV:
        return "profile"
    table = tables.kind_of_header(tables.header_of(path))
    return {SWEEP: "sweep", PROFILE: "profile"}.get(table)


def _not_a_results_file(path: Path) -> tables.ResultsFormatError:
    """Why a file given to `report` is neither a sweep's nor a profile's CSV (empty, binary, other columns)."""
    try:
        tables.read_rows(path, SWEEP)
        why = f"{path} has neither a sweep's nor a profile's columns"
    except tables.ResultsFormatError as err:
        why = str(err).split(": ", 1)[-1]
    except OSError as err:
        why = f"{path} cannot be read ({err.strerror or err})"
    return tables.ResultsFormatError(f"not a lighthouse-bench {SWEEP_CSV} or {PROFILE_CSV}: {why}")


def find_runs(inputs: Sequence[Union[str, Path]]) -> List[Run]:
    """Resolve each input (a folder or a CSV) to its runs; a folder with both CSVs gives two runs. Raises
    ValueError naming the path when it holds neither, so a typo fails before anything is drawn."""
    runs: List[Run] = []
    for raw in inputs:
        path = Path(raw)
        found: List[Tuple[str, Path]] = []
        if path.is_dir():
            found = [
                (kind, path / name)
                for kind, name in (("sweep", SWEEP_CSV), ("profile", PROFILE_CSV))
                if (path / name).is_file()
            ]
        elif path.is_file():
            kind = _kind_of_csv(path)
            if kind is None:
                raise _not_a_results_file(path)
            found = [(kind, path)]
        if not found:
            raise ValueError(f"{path}: no {SWEEP_CSV} (sweep) or {PROFILE_CSV} (profile) found there")
        for kind, csv_path in found:
            info = machine.read(csv_path.parent / MACHINE_JSON) or {}
            table = SWEEP if kind == "sweep" else PROFILE
            complete, torn = tables.read_rows(csv_path, table)
            if not complete:  # a header alone (or only torn rows): nothing to report, never empty charts
                raise tables.ResultsFormatError(f"{csv_path} has no finished row to report ({len(torn)} torn)")
            runs.append(Run(kind, csv_path, complete, info, torn=len(torn)))
    _label(runs)
    return runs


def _label(runs: List[Run]) -> None:
    """Folder name (plus @short commit when machine.json has one); duplicates get -2, -3 ..."""
    seen: Dict[str, int] = {}
    for run in runs:
        base = run.csv.parent.resolve().name or run.csv.stem
        if run.commit:
            base += f"@{run.commit_label}"
        if sum(1 for r in runs if r.csv.parent.resolve() == run.csv.parent.resolve()) > 1:
            base += f" ({run.kind})"
        seen[base] = seen.get(base, 0) + 1
        run.label = base if seen[base] == 1 else f"{base}-{seen[base]}"


# ------------------------------------------------------------------------------------------ report sections
def machine_table(runs: Sequence[Run]) -> Table:
    """Where each run came from; a key machine.json lacks is shown as '-'."""
    rows = []
    for run in runs:
        i = run.info
        date = i.get("start_time") or i.get("end_time") or i.get("date")
        device = i.get("gpu") or (
            f"CPU: {i['cpu']}" + (f" ({i['cpu_count']} cores)" if i.get("cpu_count") else "") if i.get("cpu") else "-"
        )
        rows.append(
            [
                run.label,
                run.kind,
                str(run.csv),
                device,
                i.get("torch") or "-",
                i.get("triton") or "-",
                i.get("cuda") or "-",
                run.commit_label or "-",
                date or "-",
            ]
        )
    return Table(["run", "kind", "source", "device", "torch", "triton", "cuda", "commit", "date"], rows, "Runs")


def headline_table(sweeps: Sequence[Run]) -> Table:
    rows = []
    for run in sweeps:
        h = run.headline
        cross = "-" if h.get("crossover_n") is None else _size(h["crossover_n"])
        if h.get("faster_at_every_n"):
            cross += " (faster at every N measured)"
        point = h.get("point") or {}
        rows.append(
            [
                run.label,
                (h.get("impl") or "-").removeprefix("lighthouse_"),
                h.get("pass") or "-",
                h.get("baseline") or "-",
                _size(h.get("n")),
                f"k{point.get('topk')} L{point.get('levels')} p{point.get('pooling')}" if point else "-",
                _fmt(h.get("speedup"), ".3g", "x"),
                _fmt(h.get("speedup_host_ahead"), ".3g", "x"),
                cross,
                _fmt(None if h.get("memory_saved") is None else 100 * h["memory_saved"], ".1f", "%"),
                _fmt(h.get("floor_ratio"), ".3g"),
                _fmt(h.get("floor_ratio_host_ahead"), ".3g"),
            ]
        )
    return Table(
        [
            "run",
            "impl",
            "pass",
            "vs",
            "longest N",
            "point",
            "speedup (as launched)",
            "speedup (host ahead)",
            "crossover N (as launched)",
            "memory saved",
            "floor ratio (as launched)",
            "floor ratio (host ahead)",
        ],
        rows,
        "Headline at the longest N where Lighthouse and dense both ran",
    )


def _pass_rank(p: str) -> int:
    return PASSES.index(p) if p in PASSES else len(PASSES)


def _scorer_cell(scorer: str, rope: str) -> str:
    """The scorer, and the RoPE placement when it is not the default (a file of pre rows reads as before)."""
    return scorer if rope in ("", "pre") else f"{scorer} rope={rope}"


def _both_ropes(rows: Sequence[Row]) -> bool:
    return len({r.get("rope") or "pre" for r in rows if r.get("kind") == "lighthouse"}) > 1


def _varying_shape(rows: Sequence[Row]) -> List[str]:
    return [k for k in SHAPE_KEY if len({_norm(r.get(k)) for r in rows if r.get("kind") == "lighthouse"}) > 1]


def _shape_cell(r: Row, varying: Sequence[str]) -> List[str]:
    return [" ".join(f"{k}={_norm(r.get(k))}" for k in varying)] if varying else []


def point_table(run: Run) -> Table:
    """Every Lighthouse row: its ms, the baseline's ms, the speedup, floor ratio, peak-memory ratio, status."""
    base = run.headline.get("baseline") or PREFERRED_BASELINE
    lh = [r for r in run.rows if r.get("kind") == "lighthouse"]
    varying = _varying_shape(run.rows)
    ropes = _both_ropes(run.rows)
    lh.sort(
        key=lambda r: (
            r.get("impl", ""),
            _pass_rank(r.get("pass", "")),
            _int(r.get("n")) or 0,
            [_norm(r.get(k)) for k in ("topk", "levels", "pooling", "scorer") + SHAPE_KEY],
            r.get("rope") != "pre",
        )
    )
    rows = []
    for r in lh:
        d = dense_row(run.rows, r, base)
        lm, dm = _num(r.get("peak_mem_gib")), _num((d or {}).get("peak_mem_gib"))
        status = r.get("status") or "-"
        if status != "ok" and r.get("reason"):
            status += f": {r['reason'][:80]}"
        rows.append(
            [
                r.get("impl", "").removeprefix("lighthouse_"),
                r.get("pass", ""),
                _size(r.get("n")),
                _norm(r.get("topk")),
                _norm(r.get("levels")),
                _norm(r.get("pooling")),
                r.get("scorer", ""),
                *([r.get("rope") or "pre"] if ropes else []),
                *_shape_cell(r, varying),
                _norm(r.get("s_sel")) or "-",
                *(cell for clock in tables.CLOCKS for cell in _clock_cells(r, d, base, clock)),
                _fmt(_num(r.get(tables.HOST_MS)), ".3g"),
                _fmt(lm / dm if lm is not None and dm else None, ".3f"),
                status,
            ]
        )
    headers = [
        "impl",
        "pass",
        "N",
        "k",
        "L",
        "p",
        "scorer",
        *(["rope"] if ropes else []),
        *(["shape"] if varying else []),
        "S",
        *(
            f"{h} ({name})"
            for name in tables.CLOCKS.values()
            for h in ("Lighthouse ms", f"{base} ms", "speedup", "floor ratio")
        ),
        "host ms/call",
        "peak mem ratio",
        "status",
    ]
    return Table(
        headers,
        rows,
        f"{run.label}: every Lighthouse point (vs {base}) on both clocks: as launched (the GPU "
        f"waits for launches) and host ahead (the kernels alone); each against dense on the "
        f"same clock",
    )


def _clock_cells(r: Row, d: Optional[Row], base: str, clock: str) -> List[str]:
    """Lighthouse ms, dense ms, speedup and floor ratio of one row on one clock."""
    col = tables.clock_column
    return [
        _fmt(_num(r.get(col("median_ms", clock))) if _ok(r) else None, ".4g"),
        _fmt(_num((d or {}).get(col("median_ms", clock))), ".4g"),
        _fmt(_num(r.get(col(f"speedup_vs_{base}", clock))), ".3g", "x"),
        _fmt(_num(r.get(col("floor_ratio", clock))), ".3g"),
    ]


def breakeven_table(run: Run) -> Optional[Table]:
    """Per configuration, the smallest N from which Lighthouse beats dense, on each clock (breakeven.py)."""
    from ..bench.breakeven import break_even_rows

    base = run.headline.get("baseline") or PREFERRED_BASELINE
    found = break_even_rows(run.rows, base)
    if not found:
        return None
    rows = []
    for f in found:
        config = (
            f"{f['impl'].removeprefix('lighthouse_')} {f['pass']} {f['dtype']} B{f['batch']} H{f['heads']}/"
            f"{f['kv_heads']} D{f['head_dim']} L{f['levels']} p{f['pooling']} {_scorer_cell(f['scorer'], f['rope'])}"
        )
        rows.append(
            [
                config,
                ", ".join(_size(n) for n in f["n_measured"]),
                *((f[c].describe() if f[c] is not None else "-") for c in tables.CLOCKS),
            ]
        )
    return Table(
        ["configuration", "N measured", *(f"break-even N ({name})" for name in tables.CLOCKS.values())],
        rows,
        f"{run.label}: break-even N, the smallest N from which Lighthouse beats {base} (speedup "
        "crossing "
        "1.0, interpolated linearly in log N between the measured N around it; each N judged by its "
        "best k)",
    )


def failed_table(run: Run) -> Optional[Table]:
    """Rows of any kind that did not run ok, with why: an OOM or an unsupported backend belongs in view."""
    bad = [r for r in run.rows if r.get("status") != "ok"]
    if not bad:
        return None
    rows = [
        [
            r.get("impl", ""),
            r.get("kind", ""),
            r.get("pass", ""),
            _size(r.get("n")),
            _norm(r.get("topk")) or "-",
            r.get("status", "") or "-",
            (r.get("reason") or "-")[:160],
        ]
        for r in bad
    ]
    return Table(["impl", "kind", "pass", "N", "k", "status", "reason"], rows, f"{run.label}: rows not ok")


def comparison(a: Run, b: Run) -> Tuple[Optional[Table], dict]:
    """Two sweeps side by side: Lighthouse rows joined on the point (and impl), ms A, ms B, B/A, speedups."""

    def passes(run):
        return {r.get("pass") for r in run.rows if r.get("kind") == "lighthouse" and _ok(r)}

    common = passes(a) & passes(b)
    pass_ = next((p for p in PREFERRED_PASSES if p in common), None)
    summary = {"a": a.label, "b": b.label, "pass": pass_, "points": 0, "geomean_b_over_a": None}
    if pass_ is None:
        return None, summary

    def index(run):
        out = {}
        for r in run.rows:
            if r.get("kind") == "lighthouse" and r.get("pass") == pass_ and _ok(r):
                out[tuple(_norm(r.get(k)) for k in PROFILE_POINT_KEY)] = r
        return out

    ia, ib = index(a), index(b)
    base_a = a.headline.get("baseline") or PREFERRED_BASELINE
    base_b = b.headline.get("baseline") or PREFERRED_BASELINE
    keys = sorted(set(ia) & set(ib), key=lambda k: (k[0], int(k[1]) if k[1].isdigit() else 0, k[1:]))
    rows, logs = [], []
    for key in keys:
        ra, rb = ia[key], ib[key]
        ma, mb = _num(ra["median_ms"]), _num(rb["median_ms"])
        ratio = mb / ma if ma else None
        if ratio:
            logs.append(math.log(ratio))
        impl, n, topk, levels, pooling, scorer, rope, dtype, batch, heads, kv_heads, head_dim = key
        rows.append(
            [
                impl.removeprefix("lighthouse_"),
                _size(n),
                topk,
                levels,
                pooling,
                _scorer_cell(scorer, rope),
                f"{dtype} B{batch} H{heads}/{kv_heads} D{head_dim}",
                _fmt(ma, ".4g"),
                _fmt(mb, ".4g"),
                _fmt(ratio, ".3f"),
                _fmt(_num(ra.get(f"speedup_vs_{base_a}")), ".3g", "x"),
                _fmt(_num(rb.get(f"speedup_vs_{base_b}")), ".3g", "x"),
            ]
        )
    summary.update(points=len(rows), geomean_b_over_a=math.exp(sum(logs) / len(logs)) if logs else None)
    headers = [
        "impl",
        "N",
        "k",
        "L",
        "p",
        "scorer",
        "shape",
        "ms A",
        "ms B",
        "B/A",
        f"speedup A (vs {base_a})",
        f"speedup B (vs {base_b})",
    ]
    title = f"{pass_}: A = {a.label}, B = {b.label} (B/A < 1: B is faster)"
    return Table(headers, rows, title), summary


def profile_points(rows: Sequence[Row]) -> Dict[tuple, List[Row]]:
    points: Dict[tuple, List[Row]] = {}
    for r in rows:
        points.setdefault(tuple(_norm(r.get(k)) for k in PROFILE_POINT_KEY), []).append(r)
    return points


def profile_table(key: tuple, rows: Sequence[Row]) -> Table:
    """Per stage: ms, share of the pass, GB moved, the floor and the distance to it."""
    impl, n, topk, levels, pooling, scorer, rope, dtype, batch, heads, kv_heads, head_dim = key
    scorer = _scorer_cell(scorer, rope)
    out = []
    for r in sorted(rows, key=lambda r: _pass_rank(r.get("pass", ""))):
        share, nbytes = _num(r.get("share")), _num(r.get("bytes"))
        out.append(
            [
                r.get("pass", ""),
                r.get("stage", ""),
                _fmt(_num(r.get("ms")), ".4g"),
                _fmt(None if share is None else 100 * share, ".1f", "%"),
                _fmt(None if nbytes is None else nbytes / 1e9, ".3f"),
                _fmt(_num(r.get("floor_ms")), ".4g"),
                _fmt(_num(r.get("floor_ratio")), ".3g"),
            ]
        )
    title = (
        f"{impl}: N={_size(n)} k={topk} L{levels} p{pooling} {scorer} {dtype} B{batch} H{heads}/{kv_heads} "
        f"D{head_dim}, S={_norm(rows[0].get('s_sel')) or '-'}"
    )
    return Table(["pass", "stage", "ms", "share", "GB moved", "floor ms", "ms / floor"], out, title)


def profile_headline(rows: Sequence[Row]) -> List[dict]:
    """Per profiled point and pass: the measured pass, the sum of its stages and the costliest stage."""
    out = []
    for key, rs in profile_points(rows).items():
        for pass_ in PASSES:
            sub = [r for r in rs if r.get("pass") == pass_]
            if not sub:
                continue
            stages = [r for r in sub if r.get("stage") not in PROFILE_SUMMARY_STAGES and _num(r.get("ms")) is not None]
            by = {r.get("stage"): _num(r.get("ms")) for r in sub}
            top = max(stages, key=lambda r: _num(r["ms"]), default=None)
            out.append(
                {
                    **dict(zip(PROFILE_POINT_KEY, key)),
                    "pass": pass_,
                    "measured_ms": by.get("measured"),
                    "stages_ms": by.get("total"),
                    "top_stage": top.get("stage") if top else None,
                    "top_share": _num(top.get("share")) if top else None,
                }
            )
    return out


# --------------------------------------------------------------------------------------------------- charts
def sweep_charts(run: Run, charts: Path) -> List[Union[Chart, str]]:
    """plots.make_charts into a scratch folder, then into charts/ under the run's name (runs share charts/).
    A chart that fails to draw becomes a line in the report: the tables are still worth having."""
    from ..bench.plots import make_charts

    out: List[Union[Chart, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            made = make_charts(run.csv, Path(tmp), info=run.info, warn_torn=False)  # noted in the report
        except Exception as err:  # noqa: BLE001 - report it in the document and carry on
            return [f"Charts for {run.label} failed: {type(err).__name__}: {err}"]
        for path in made:
            dest = charts / f"{_slug(run.label)}-{path.name}"
            shutil.move(str(path), dest)
            if dest.suffix == ".png":
                out.append(Chart(dest, f"{run.label}: {path.stem}"))
    return out


def profile_chart(run: Run, charts: Path) -> List[Chart]:
    """The stacked bar of stage ms per pass: the profile's own profile.png when it is there, else drawn now."""
    name = f"{_slug(run.label)}-profile"
    beside = run.csv.parent / "profile.png"
    if beside.is_file():
        shutil.copyfile(beside, charts / f"{name}.png")
    else:
        from ..bench.profile_view import stacked_chart

        stacked_chart(run.rows, charts, name=name, device_name=run.info.get("gpu") or run.info.get("cpu"))
    return [Chart(charts / f"{name}.png", f"{run.label}: time per stage")]


# ---------------------------------------------------------------------------------------------- the report
@dataclass
class ReportFiles:
    markdown: Path
    html: Path
    headline_json: Path
    charts: List[Path]
    headline: dict


def build_report(inputs: Sequence[Path], out: Path, title: Optional[str] = None) -> ReportFiles:
    """Read every input, write report.md, report.html, charts/ and headline.json into `out`."""
    quality_csvs, inputs = split_quality_inputs(inputs)
    train_dirs, inputs = split_train_inputs(inputs)
    runs = find_runs(inputs) if inputs or not (quality_csvs or train_dirs) else []
    out = writable_folder(out)
    charts_dir = writable_folder(out / "charts")
    sweeps = [r for r in runs if r.kind == "sweep"]
    profiles = [r for r in runs if r.kind == "profile"]
    for run in sweeps:
        run.headline = sweep_headline(run.rows)
    for run in profiles:
        run.headline = {"points": profile_headline(run.rows)}
    title = title or "Lighthouse benchmark report: " + ", ".join(r.label for r in runs)

    blocks: List[Block] = []
    if sweeps:
        blocks.append(Heading("Headline"))
        blocks += [
            Para((f"{run.label}: " if len(sweeps) > 1 else "") + headline_sentence(run.headline), "headline")
            for run in sweeps
        ]
        blocks.append(headline_table(sweeps))
    blocks.append(machine_table(runs))
    compare = None
    if len(sweeps) == 2:
        table, compare = comparison(*sweeps)
        blocks.append(Heading("Side by side"))
        if compare.get("geomean_b_over_a") is not None:
            blocks.append(
                f"Over {compare['points']} common points, B takes {compare['geomean_b_over_a']:.3f}x "
                f"the time of A (geometric mean of B/A)."
            )
        blocks.append(table if table is not None else "No common pass with ok Lighthouse rows in both sweeps.")

    for run in runs:
        if run.torn:
            blocks.insert(0, Para(f"Warning: {tables.torn_note(run.csv, run.torn)}."))
    for run in sweeps:
        blocks.append(Heading(f"Sweep {run.label}"))
        for chart in sweep_charts(run, charts_dir):
            blocks.append(chart)
        even = breakeven_table(run)
        if even is not None:
            blocks.append(even)
        blocks.append(point_table(run))
        bad = failed_table(run)
        if bad is not None:
            blocks.append(bad)
    for run in profiles:
        blocks.append(Heading(f"Profile {run.label}"))
        blocks += profile_chart(run, charts_dir)
        for key, rows in profile_points(run.rows).items():
            blocks.append(profile_table(key, rows))
    if quality_csvs:
        blocks += quality_blocks(sweeps, quality_csvs, charts_dir)
    for folder in train_dirs:
        blocks += train_blocks(folder, charts_dir)
    charts = sorted(charts_dir.iterdir())

    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    blocks.append(f"Generated {generated} by lighthouse-bench report.")
    headline = {
        "title": title,
        "generated": generated,
        "runs": [
            {
                "label": r.label,
                "kind": r.kind,
                "source": str(r.csv),
                "commit": r.commit,
                "torn_rows": r.torn,
                **r.headline,
            }
            for r in runs
        ],
        "comparison": compare,
    }
    md_path, html_path, json_path = out / "report.md", out / "report.html", out / "headline.json"
    md_path.write_text(to_markdown(title, blocks, out))
    html_path.write_text(to_html(title, blocks))
    json_path.write_text(json.dumps(headline, indent=2, default=str) + "\n")
    return ReportFiles(md_path, html_path, json_path, charts, headline)


# ------------------------------------------------------------------- training runs (lighthouse-bench train)
TRAIN_FILES = ("train.csv", "curve.csv", "study.json")


def split_train_inputs(inputs: Sequence[Path]) -> Tuple[List[Path], List[Path]]:
    """(train folders, the other inputs): a folder holding train.csv (throughput), curve.csv (two-stage recipe)
    or study.json (a study) is a training run. A folder above such runs (reports/h200/study) gives each of them;
    it stays an input for the sweeps and profiles only when it holds one."""

    def is_train(path: Path) -> bool:
        return path.is_dir() and any((path / name).is_file() for name in TRAIN_FILES)

    train, rest = [], []
    for raw in inputs:
        path = Path(raw)
        if is_train(path):
            train.append(path)
            continue
        below = sorted({f.parent for name in TRAIN_FILES for f in path.rglob(name)}) if path.is_dir() else []
        below = [d for d in below if not any(a in below for a in d.parents)]  # not the study's own jobs/ etc.
        train += below
        if not below or any(next(path.rglob(name), None) for name in ("results.csv", "profile.csv")):
            rest.append(path)
    return train, rest


def train_blocks(folder: Path, charts: Path) -> List[Block]:
    """The training section: tokens/s, speedup, attention share, memory and MFU per point, the two-stage
    recipe's final losses and wall times, and their charts (tables from lighthouse.train.report)."""
    from ..train.report import RECIPE_HEADER, THROUGHPUT_HEADER, recipe_rows, recipe_summary, throughput_rows

    folder = Path(folder)
    blocks: List[Block] = [Heading(f"Training {folder.name}")]
    if (folder / "train.csv").is_file():
        blocks.append(
            Table(
                list(THROUGHPUT_HEADER),
                throughput_rows(folder / "train.csv"),
                "Training step throughput (median optimizer step after warm-up)",
            )
        )
    if (folder / "curve.csv").is_file():
        blocks.append(
            Table(
                list(RECIPE_HEADER),
                recipe_rows(recipe_summary(folder / "curve.csv")),
                "Two-stage recipe: Lighthouse then dense, against dense all the way",
            )
        )
    if (folder / "study.json").is_file():
        blocks += study_blocks(folder)
    names = ["train_tokens_per_s.png", "train_loss.png"] + sorted(
        p.name for p in folder.glob("*.png") if p.name.startswith(("loss_", "recovery", "stage1"))
    )
    for name in names:
        if (folder / name).is_file():
            dest = charts / f"{_slug(folder.resolve().name)}-{name}"
            shutil.copy(folder / name, dest)
            blocks.append(Chart(dest, f"{folder.name}: {name[:-4].replace('_', ' ')}"))
    return blocks


def study_blocks(folder: Path) -> List[Block]:
    """A study folder (lighthouse-bench study): the verdict table (configuration, gap to dense with its 95%
    interval, wall-clock ratio, whether it matches dense), the recovery answer and the stage-1 table, all from
    its curves (lighthouse.train.study_report)."""
    from ..train.study_report import arm_results, recovery_answer, summarize, verdict_rows

    summaries = summarize(arm_results(folder))
    blocks: List[Block] = [Heading("Two-stage study: does Lighthouse-then-dense match dense?", 3)]
    rows = verdict_rows(summaries)
    if rows:
        blocks.append(
            Table(
                [
                    "experiment",
                    "configuration",
                    "gap to dense (95% interval, % of dense loss)",
                    "wall ratio (solo clock)",
                    "seeds",
                    "matches dense",
                ],
                rows,
                "Gap paired by seed; 'matches dense' = mean gap <= 1% or an interval holding 0, "
                "with a half-width <= 2%; 'no' when the whole interval lies above 1%",
            )
        )
        reached = sum(r[-1] == "yes" for r in rows)
        blocks.append(Para(f"{reached} of {len(rows)} configurations reach the paper's claim."))
    else:
        blocks.append(Para("No Lighthouse-then-dense arm of this study has finished."))
    blocks += [Para(line.removeprefix("- ")) for line in recovery_answer(summaries)]
    stage1 = [s for s in summaries if s.label.startswith("lighthouse k=") and s.loss is not None]
    if stage1:
        blocks.append(
            Table(
                [
                    "experiment",
                    "k",
                    "S/N",
                    "seeds",
                    "val loss, Lighthouse mode",
                    "same weights, dense mode",
                    "gap to dense",
                ],
                [
                    [
                        s.experiment,
                        s.topk,
                        fmt_num(s.s_over_n),
                        s.seeds,
                        _interval(s.loss),
                        _interval(s.stage1_dense_mode),
                        _interval(s.gap, "%"),
                    ]
                    for s in stage1
                ],
                "Stage 1 only, validated in both modes",
            )
        )
    return blocks


def fmt_num(x) -> str:
    return "" if x is None else f"{x:.3g}"


def _interval(iv, unit: str = "") -> str:
    if iv is None:
        return ""
    if iv.half_width is None:
        return f"{iv.mean:.4g}{unit} (1 seed)"
    return f"{iv.mean:.4g}{unit} ± {iv.half_width:.2g}{unit}"


# ------------------------------------------------------------------- quality results (lighthouse-bench quality)
def split_quality_inputs(inputs: Sequence[Path]) -> Tuple[List[Path], List[Path]]:
    """(quality.csv files, the other inputs): a folder holding quality.csv contributes it, and stays an input
    only if it also holds a sweep or a profile."""
    from ..quality.recommend import QUALITY_FILE

    quality, rest = [], []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir() and (path / QUALITY_FILE).is_file():
            quality.append(path / QUALITY_FILE)
            if (path / SWEEP_CSV).is_file() or (path / PROFILE_CSV).is_file():
                rest.append(path)
        elif path.is_file() and (path.name == QUALITY_FILE or "out_rel_err" in tables.header_of(path)):
            quality.append(path)
        else:
            rest.append(path)
    return quality, rest


def quality_blocks(sweeps: Sequence[Run], quality_csvs: Sequence[Path], charts: Path) -> List[Block]:
    """Speed against quality: the Pareto charts (sweep speedup vs needle recall and vs output error, per N
    measured on both sides) and the quality charts, drawn by lighthouse.quality.charts."""
    from ..quality.charts import pareto_chart, quality_charts
    from ..quality.summary import SOURCE, checkpoint_table, needle_verdict, scorer_table

    rows = [
        {**r, SOURCE: tag}
        for p, tag in zip(quality_csvs, source_tags(quality_csvs))
        for r in tables.read_rows(p, tables.QUALITY)[0]
    ]
    sweep_rows = [r for run in sweeps for r in run.rows]
    blocks: List[Block] = [Heading("Speed against quality")]
    headers, table_rows = scorer_table(rows)
    if table_rows:
        blocks.append(Table(headers, table_rows, "Needle retrieval and output error per scorer and N"))
    blocks += [Para(text) for text in needle_verdict(rows)]
    headers, table_rows = checkpoint_table(rows)
    if table_rows:
        blocks.append(Heading("A trained model's own q, k, v", 3))
        blocks.append(
            Table(
                headers,
                table_rows,
                "Each configuration on the q, k, v captured layer by layer from a "
                "checkpoint (`--inputs checkpoint:PATH`): medians over every (layer, configuration)",
            )
        )
    blocks += recommendation_blocks(sweep_rows, rows)
    made = []
    for figure in ("needle_recall", "out_rel_err"):
        made += pareto_chart(sweep_rows, rows, charts, figure=figure)
    if not made:
        blocks.append(
            "No configuration has both a sweep speedup (fwdbwd, over sdpa_cudnn) and a quality figure "
            "at the same N: give the sweep and the quality folders of one grid."
        )
    blocks += [Chart(p, p.stem.replace("_", " ")) for p in made]
    for csv_path in quality_csvs:
        with tempfile.TemporaryDirectory() as tmp:
            for path in quality_charts(csv_path, Path(tmp)):
                folder = csv_path.parent.resolve()
                dest = charts / f"{_slug(folder.parent.name)}-{_slug(folder.name)}-{path.name}"
                shutil.move(str(path), dest)
                caption = f"{csv_path.parent.parent.name}/{csv_path.parent.name}: {path.stem.replace('_', ' ')}"
                blocks.append(Chart(dest, caption))
    return blocks


def source_tags(quality_csvs: Sequence[Path]) -> List[str]:
    """A name per quality file for the checkpoint table: its folder and the folder above ("quality/ckpt-16k"),
    with "#2", "#3" ... added where two files still share one, so two runs never merge."""
    tags, seen = [], {}
    for path in quality_csvs:
        parent = Path(path).resolve().parent
        tag = f"{parent.parent.name}/{parent.name}"
        seen[tag] = seen.get(tag, 0) + 1
        tags.append(tag if seen[tag] == 1 else f"{tag}#{seen[tag]}")
    return tags


def recommendation_blocks(
    sweep_rows: List[dict], quality_rows: List[dict], min_needle_recall: float = 0.9, runners_up: int = 5
) -> List[Block]:
    """`lighthouse-bench recommend --min-needle-recall 0.9` for every N measured on both sides (fwdbwd speedup over
    sdpa_cudnn): the choice and its runners-up, or why there is none; the names of the configurations measured
    on one side only are left to the recommend command."""
    from ..quality.recommend import Bar, recommend

    bar = Bar("needle_recall", min_needle_recall, "needle")

    def seqs(rows, kind_ok):
        return {int(tables.num(r["n"])) for r in rows if kind_ok(r) and tables.num(r.get("n")) is not None}

    both = seqs(sweep_rows, lambda r: r.get("kind") == "lighthouse" and r.get("status") == "ok") & seqs(
        quality_rows, lambda r: r.get("inputs") == "needle" and r.get("status") == "ok"
    )
    blocks: List[Block] = []
    for n in sorted(both):
        rec = recommend(sweep_rows, quality_rows, n, bar)
        blocks.append(Heading(f"Recommendation for N={tables.fmt_size(n)}", 3))
        if not rec.ranked:
            blocks.append(
                Para(
                    f"No configuration has both a speed and a needle-recall figure at N={rec.seq} "
                    f"({len(rec.speed_only)} have speed only, {len(rec.quality_only)} quality only): "
                    "nothing is recommended (no figure is interpolated)."
                )
            )
            continue
        if rec.chosen is None:
            best = max(rec.ranked, key=lambda c: c.quality)
            blocks.append(
                Para(
                    f"No measured configuration reaches {bar.describe()}; the best is {best.label()} "
                    f"({tables.fmt(best.quality)}, {best.speedup:.2f}x {rec.baseline})."
                )
            )
        else:
            c = rec.chosen
            blocks.append(
                Para(
                    f"Bar: {bar.describe()}. Use {c.label()}: {c.speedup:.2f}x {rec.baseline} "
                    f"({rec.pass_}), needle recall {tables.fmt(c.quality)}."
                )
            )
        blocks.append(
            Table(
                ["configuration", "speedup", "needle recall", "meets bar", "out_rel_err", "coverage"],
                [
                    [
                        c.label(),
                        f"{c.speedup:.2f}x",
                        tables.fmt(c.quality),
                        "yes" if c.meets else "no",
                        tables.fmt(c.extra.get("out_rel_err")),
                        tables.fmt(c.extra.get("coverage")),
                    ]
                    for c in rec.ranked[: runners_up + 1]
                ],
                "The fastest measured configurations, those meeting the bar first",
            )
        )
        missing = len(rec.quality_only) + len(rec.speed_only)
        if missing:
            blocks.append(
                Para(
                    f"{len(rec.quality_only)} configurations have quality but no speed at this N, "
                    f"{len(rec.speed_only)} speed but no quality: not ranked (nothing is interpolated)."
                )
            )
    return blocks
