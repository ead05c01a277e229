"""`lighthouse-bench check`: the regression gate.

Compares a results.csv (measured now with the `ci` suite, or given with --results) against a recorded baseline
(reports/baselines/<gpu>.csv) and answers with an exit code:

    0  every gated figure holds
    1  a regression: a gated figure moved past the tolerance (after repeats), or Triton and PyTorch disagree
    2  could not measure or write: no CUDA where the suite must run, no baseline for this GPU (the message
       gives the command that records one) or an unreadable one, a baseline point missing from the results or
       not ok there, zero gated figures judged, an --out that cannot be written (checked before measuring),
       any error while measuring; always one line, never a traceback

Gated figures, per Lighthouse point (POINT_COLUMNS) the baseline holds, on the host-ahead clock (tables.CHECK_CLOCK:
the GPU held until the host has queued the step, so a slower kernel cannot hide in time the GPU spent waiting for
launches; timing.py): `host_ahead_speedup_vs_sdpa_cudnn` (higher is better), `host_ahead_floor_ratio` (lower is
better) and `host_ahead_speedup_vs_plain_sdpa` (higher is better), ratios measured within one run, so they carry
across machines and runs far better than absolute milliseconds, which are shown but never gated; and the host's
own time to issue one step, `host_ms_per_call` (lower is better), the one absolute figure, since a slower host
path is what the kernel clock cannot see (judged against a baseline of the same GPU model's machine). The first two
ratios go through project code on both sides (lighthouse/sdpa.py, the sweep's timer), so
a slowdown shared by every row cancels in them; the third divides by dense attention timed by plain PyTorch
(`plain_reference`, no project code), so a shared slowdown cannot pass.

Noise (`baseline_from_runs`, `tolerance_for`): a baseline is the median of several runs (`--record --runs`) with
each figure's spread ((max - min) / median) recorded; each figure is judged against max(--tolerance,
SPREAD_FACTOR x its spread), so a noisy point gets the room its own runs showed and a steady one stays tight.
Zero gated figures is never a pass (exit 2), and any failure to measure or to write is exit 2 with one line.

Correctness: when the check measures (no --results) it also runs the Triton and the PyTorch path of every
Lighthouse point of the suite on the same inputs (forward + backward) and gates on identical selections and
relative errors of out, dq, dk, dv within PARITY_TOL (`parity.parity_rows`).

A point that looks regressed is measured again (`remeasure`, by default the sweep machinery on that one point
into out/repeat-<i>) up to REPEATS times and judged on the best of its measurements: a noisy neighbour on the
GPU should not fail a pull request, a real regression fails every repeat.

Outputs (when `out` is given or the check measured): out/check.csv (one row per figure, for CI to upload) and
out/check.md (the same table in Markdown, for a pull-request comment).
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..harness import machine, points, tables
from . import plain_reference
from ..harness.options import OptionError
from .parity import PARITY_TOL, parity_rows
from ..harness.tables import BASELINE, CHECK, PARITY, PARITY_FIGURES, SWEEP, ResultsFormatError, read_rows, write_rows

#: What identifies a gated point in the baseline and the results (tables.CHECK_POINT_COLUMNS: the sweep key
#: without the device) and the dense row it is compared with (same pass, N and shape).
POINT_COLUMNS, SHAPE_COLUMNS = tables.CHECK_POINT_COLUMNS, tables.DENSE_MATCH_COLUMNS
BASELINE_IMPL = tables.BASELINES["cudnn"]
SPEEDUP, FLOOR_RATIO = tables.CHECK_SPEEDUP, tables.CHECK_FLOOR_RATIO
#: Plain PyTorch dense SDPA time / Lighthouse time, both measured in the same run (plain_reference.py).
PLAIN = tables.CHECK_PLAIN
#: The host's own time to issue one step (not a ratio: judged against the same GPU model's baseline).
HOST_MS = tables.HOST_MS
#: Gated figures: name -> True when higher is better.
GATED: Dict[str, bool] = {SPEEDUP: True, FLOOR_RATIO: False, PLAIN: True, HOST_MS: False}
#: Times shown beside the figures, never gated: the Lighthouse layer on each clock.
SHOWN_TIMES = ("median_ms", tables.HOST_AHEAD_TIMES[0])
#: Baseline column with a figure's relative spread over the recorded runs ((max - min) / median).
SPREAD = {f: tables.spread_column(f) for f in GATED}
#: A figure's tolerance is max(--tolerance, SPREAD_FACTOR x its recorded spread).
SPREAD_FACTOR = 1.0
#: Between a 5% and a 10% slower layer: those move the speedups by -4.8% and -9.1%, the floor ratio by +5% and
#: +10%, so with the best of up to 3 measurements judged, 10% fails and 5% holds unless the noise is wide.
DEFAULT_TOLERANCE = 0.06
#: Runs of the suite that `--record` measures by default (median and spread).
RECORD_RUNS = 3
MACHINE_COLUMNS, BASELINE_COLUMNS = tables.CHECK_MACHINE_COLUMNS, BASELINE.columns
#: `--baseline auto`: this folder, one file per GPU model (`baseline_slug`).
BASELINES_DIR = Path("reports") / "baselines"
AUTO = "auto"

EXIT_OK, EXIT_REGRESSED, EXIT_UNMEASURED = 0, 1, 2
#: How many times a point that looks regressed is measured again before it is judged.
REPEATS = 2

OK, REGRESSED, MISSING, NOT_MEASURED, NOT_GATED, SKIPPED = "ok", "REGRESSED", "missing", "not measured", "not gated", "skipped"

Row = Dict[str, str]
Remeasure = Callable[[List[dict]], List[dict]]


# ------------------------------------------------------------------------------------------- small helpers
_num, _norm = tables.num, tables.norm


def point_key(row: dict) -> Tuple[str, ...]:
    return tuple(_norm(row.get(c)) for c in POINT_COLUMNS)


def point_name(row: dict) -> str:
    """How a point is named in every message: impl, pass, dtype, n, topk, levels, pooling, then scorer, batch,
    heads, kv_heads, head_dim where they differ from the usual norm, 1, 8, =heads, 128."""
    g = {c: _norm(row.get(c)) for c in POINT_COLUMNS}
    name = f"{g['impl']} {g['pass']} {g['dtype']} n={g['n']} topk={g['topk']} levels={g['levels']} pooling={g['pooling']}"
    extra = [f"{c}={g[c]}" for c, default in (("scorer", "norm"), ("batch", "1"), ("heads", "8"), ("kv_heads", g["heads"]),
                                               ("head_dim", "128")) if g[c] != default]
    return " ".join([name, *extra])


def _fmt(x: Optional[float], spec: str = ".4g") -> str:
    return tables.fmt(x, spec=spec, missing="")


def _lighthouse_rows(rows: Sequence[Row]) -> Dict[Tuple[str, ...], Row]:
    """Lighthouse rows by point; an ok row wins over a failed one, a later row over an earlier one."""
    out: Dict[Tuple[str, ...], Row] = {}
    for r in rows:
        if r.get("kind") != "lighthouse":
            continue
        key = point_key(r)
        if key in out and out[key].get("status") == "ok" and r.get("status") != "ok":
            continue
        out[key] = r
    return out


def _dense_ms(rows: Sequence[Row], point: Row, impl: str = BASELINE_IMPL) -> Optional[float]:
    shape = tuple(_norm(point.get(c)) for c in SHAPE_COLUMNS)
    for r in rows:
        if (r.get("impl") == impl and r.get("status") == "ok"
                and tuple(_norm(r.get(c)) for c in SHAPE_COLUMNS) == shape):
            return _num(r.get("median_ms"))
    return None


def _related_rows(rows: Sequence[Row], point: Row) -> List[Row]:
    """The rows a point's figures come from: its Lighthouse row, the dense cuDNN row of its shape and pass,
    and its floor row."""
    shape = tuple(_norm(point.get(c)) for c in SHAPE_COLUMNS)
    lh_cfg = tuple(_norm(point.get(c)) for c in ("levels", "pooling", "topk", "scorer"))
    out = [point]
    for r in rows:
        if r is point or tuple(_norm(r.get(c)) for c in SHAPE_COLUMNS) != shape:
            continue
        if r.get("impl") == BASELINE_IMPL or (
                r.get("kind") == "floor" and tuple(_norm(r.get(c)) for c in ("levels", "pooling", "topk", "scorer")) == lh_cfg):
            out.append(r)
    return out


def machine_info(results: Path) -> Dict[str, str]:
    """gpu, torch, triton, commit from machine.json beside results.csv (empty where unknown)."""
    info = machine.read(Path(results).parent / "machine.json") or {}
    git = info.get("git") or {}
    return {"gpu": info.get("gpu") or "", "torch": info.get("torch") or "", "triton": info.get("triton") or "",
            "commit": (git.get("commit") or "") if isinstance(git, dict) else ""}


# ------------------------------------------------------------------------------------------- the plain reference
def with_plain(rows: Sequence[Row]) -> List[Row]:
    """The rows with the plain figure on each clock (speedup_vs_plain_sdpa, host_ahead_speedup_vs_plain_sdpa: the
    reference's time over the layer's on that clock) and plain_median_ms filled into every ok Lighthouse row whose
    shape and pass has an ok plain-PyTorch reference row (kind `reference`, plain_reference.py) among them."""
    refs = {}
    for r in rows:
        if r.get("kind") == "reference" and r.get("status") == "ok" and _num(r.get("median_ms")):
            refs[tuple(_norm(r.get(c)) for c in SHAPE_COLUMNS)] = r
    if not refs:
        return list(rows)
    out = []
    for r in rows:
        ref = refs.get(tuple(_norm(r.get(c)) for c in SHAPE_COLUMNS))
        if r.get("kind") == "lighthouse" and r.get("status") == "ok" and ref:
            r = {**r, "plain_median_ms": _fmt(_num(ref.get("median_ms")), ".6g")}
            for clock in tables.CLOCKS:  # the reference and the layer on the same clock
                ms, ref_ms = (_num(x.get(tables.clock_column("median_ms", clock))) for x in (r, ref))
                if ms and ref_ms:
                    r[tables.clock_column(tables.PLAIN_SPEEDUP, clock)] = _fmt(ref_ms / ms, ".6g")
        out.append(r)
    return out


def read_results(path: Path, torn: Optional[List[Row]] = None) -> List[Row]:
    """The finished rows of a results.csv plus the plain-PyTorch reference rows of its folder (reference.csv,
    when there is one), the plain figure filled in. Torn rows (a run cut short) are left out, appended to
    `torn` when given. Raises OSError / ResultsFormatError for a file that cannot be read as one."""
    rows, cut = read_rows(path, SWEEP)
    refs = plain_reference.read(Path(path).parent / plain_reference.FILE) or []
    if torn is not None:
        torn.extend(cut)
    return with_plain(rows + refs)


# ------------------------------------------------------------------------------------------- the baseline
def _median(xs: Sequence[float]) -> float:
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def baseline_from_runs(runs: Sequence[Sequence[Row]], info: Optional[Dict[str, str]] = None) -> List[dict]:
    """--record: the baseline rows from one or more runs of the same suite. Per point that is ok in at least
    one run: each gated figure's median over the runs and its spread ((max - min) / median, with 2 runs or
    more), the number of runs, the median ms of Lighthouse (both clocks), of dense cuDNN and of plain PyTorch SDPA,
    S and the machine info. A point without any gated ratio (a CPU sweep: no cuDNN, no floor) is left out."""
    info = dict(info or {})
    info.setdefault("recorded_at", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    per_point: Dict[Tuple[str, ...], List[Tuple[Row, Sequence[Row]]]] = {}
    for rows in runs:
        rows = with_plain(rows)
        for key, r in _lighthouse_rows(rows).items():
            if r.get("status") == "ok":
                per_point.setdefault(key, []).append((r, rows))
    out = []
    for measured in per_point.values():
        first = measured[0][0]
        rec = {c: _norm(first.get(c)) for c in POINT_COLUMNS}
        for figure in GATED:
            values = [v for v in (_num(r.get(figure)) for r, _ in measured) if v is not None]
            mid = _median(values) if values else None
            rec[figure] = _fmt(mid, ".6g")
            rec[SPREAD[figure]] = _fmt((max(values) - min(values)) / mid, ".4g") if len(values) > 1 and mid else ""
        if not any(rec[f] for f in GATED if f != HOST_MS):  # the host's time alone judges no kernel
            continue

        def median_of(get) -> str:
            values = [v for v in (get(r, rows) for r, rows in measured) if v is not None]
            return _fmt(_median(values), ".6g") if values else ""

        shown = {t: median_of(lambda r, rows, t=t: _num(r.get(t))) for t in SHOWN_TIMES}
        rec.update({"runs": str(len(measured)), **shown,
                    "dense_median_ms": median_of(lambda r, rows: _dense_ms(rows, r)),
                    "plain_median_ms": median_of(lambda r, rows: _num(r.get("plain_median_ms"))),
                    "s_sel": _norm(first.get("s_sel"))})
        rec.update({c: info.get(c, "") for c in MACHINE_COLUMNS})
        out.append(rec)
    return out


def baseline_rows(rows: Sequence[Row], info: Optional[Dict[str, str]] = None) -> List[dict]:
    """The baseline of a single run (see baseline_from_runs)."""
    return baseline_from_runs([rows], info)


def record_baseline(results: Path, baseline: Path) -> List[dict]:
    """Write the baseline file from a results.csv (parent folders created). Returns the rows written."""
    rows = baseline_rows(read_results(results), machine_info(results))
    write_rows(baseline, BASELINE, rows)
    return rows


def baseline_slug(gpu_name: str) -> str:
    """A GPU model as a file name: 'NVIDIA H200' -> 'nvidia-h200', 'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'."""
    return re.sub(r"[^a-z0-9]+", "-", str(gpu_name).lower()).strip("-")


def auto_baseline(gpu_name: Optional[str], folder: Path = BASELINES_DIR) -> Optional[Path]:
    """`--baseline auto`: folder/<slug of the GPU model>.csv (None without a GPU name)."""
    return Path(folder) / f"{baseline_slug(gpu_name)}.csv" if gpu_name and baseline_slug(gpu_name) else None


def record_command(baseline: Path, suite: str = "ci") -> str:
    """The exact command that records `baseline` on this GPU."""
    extra = f" --suite {suite}" if suite != "ci" else ""
    return f"lighthouse-bench check --baseline {baseline} --record --runs {RECORD_RUNS}{extra}"


# ------------------------------------------------------------------------------------------- judging
@dataclass
class Verdict:
    point: str
    figure: str
    baseline: Optional[float] = None
    now: Optional[float] = None
    verdict: str = OK
    note: str = ""
    baseline_text: str = ""
    now_text: str = ""

    @property
    def change_pct(self) -> Optional[float]:
        if self.baseline is None or self.now is None or self.baseline == 0:
            return None
        return (self.now / self.baseline - 1.0) * 100.0

    def as_row(self) -> dict:
        return {"point": self.point, "figure": self.figure,
                "baseline": self.baseline_text or _fmt(self.baseline), "now": self.now_text or _fmt(self.now),
                "change_pct": _fmt(self.change_pct, "+.1f"), "verdict": self.verdict, "note": self.note}


def _regressed(figure: str, base: float, now: float, tolerance: float) -> bool:
    if GATED[figure]:
        return now < base * (1.0 - tolerance)
    return now > base * (1.0 + tolerance)


def tolerance_for(base: Row, figure: str, tolerance: float) -> float:
    """The tolerance of one figure of one baseline point: max(tolerance, SPREAD_FACTOR x its recorded spread)."""
    spread = _num(base.get(SPREAD[figure]))
    return max(tolerance, SPREAD_FACTOR * spread) if spread is not None else tolerance


def _limit_note(base: Row, figure: str, tolerance: float) -> str:
    tol = tolerance_for(base, figure, tolerance)
    note = f"limit {'-' if GATED[figure] else '+'}{tol * 100:.3g}%"
    spread, runs = _num(base.get(SPREAD[figure])), _norm(base.get("runs"))
    if spread is not None:
        note += f" (baseline: median of {runs or '?'} runs, spread {spread * 100:.3g}%)"
    return note


@dataclass
class _Point:
    """One baseline point being judged: its baseline record and every measurement of it so far."""

    base: Row
    measurements: List[Row] = field(default_factory=list)

    def best(self, figure: str) -> Optional[float]:
        values = [v for v in (_num(m.get(figure)) for m in self.measurements) if v is not None]
        if not values:
            return None
        return max(values) if GATED[figure] else min(values)

    def looks_regressed(self, tolerance: float) -> bool:
        for figure in GATED:
            base, now = _num(self.base.get(figure)), self.best(figure)
            if base is not None and now is not None and _regressed(figure, base, now, tolerance_for(self.base, figure, tolerance)):
                return True
        return False


def _ok_row_of(rows: Sequence[dict], key: Tuple[str, ...]) -> Optional[dict]:
    hits = [r for r in rows if r.get("kind", "lighthouse") == "lighthouse" and point_key(r) == key and r.get("status") == "ok"]
    return hits[-1] if hits else None


def judge(baseline: Sequence[Row], results: Sequence[Row], tolerance: float,
          remeasure: Optional[Remeasure] = None, repeats: int = REPEATS) -> List[Verdict]:
    """Every gated figure of every baseline point, with its verdict (plus the not-gated median ms)."""
    found = _lighthouse_rows(with_plain(results))
    verdicts: List[Verdict] = []
    for base in baseline:
        key, name = point_key(base), point_name(base)
        row = found.get(key)
        # a figure is judged when the baseline or the results hold it: a baseline recorded before a figure
        # existed cannot silently leave it unjudged
        figures = [f for f in GATED if _num(base.get(f)) is not None or (row is not None and _num(row.get(f)) is not None)]
        if row is None:
            verdicts += [Verdict(name, f, _num(base.get(f)), verdict=MISSING, note="point not in the results")
                         for f in figures]
            continue
        if row.get("status") != "ok":
            reason = f"status {row.get('status') or '?'}" + (f": {row.get('reason')}" if row.get("reason") else "")
            verdicts += [Verdict(name, f, _num(base.get(f)), verdict=NOT_MEASURED, note=reason) for f in figures]
            continue
        point = _Point(base, [row])
        repeated, repeat_failures = 0, []
        if remeasure is not None:
            while repeated < repeats and point.looks_regressed(tolerance):
                repeated += 1
                try:
                    again = _ok_row_of(with_plain(remeasure(_related_rows(results, row))), key)
                except Exception as err:  # noqa: BLE001 - a failed repeat leaves the first measurement standing
                    again, why = None, f"{type(err).__name__}: {err}"
                else:
                    why = "no ok row"
                if again is None:
                    repeat_failures.append(why)
                else:
                    point.measurements.append(again)
        for figure in figures:
            b, now = _num(base.get(figure)), point.best(figure)
            notes = []
            if repeated:
                notes.append(f"best of {len(point.measurements)} measurements ({repeated} repeat{'s' if repeated > 1 else ''})")
            if repeat_failures:
                notes.append("repeat failed: " + "; ".join(repeat_failures))
            if b is None:
                verdicts.append(Verdict(name, figure, None, now, NOT_MEASURED,
                                        f"{figure} is not in the baseline (recorded before it was gated): record it again"))
                continue
            if now is None:
                verdicts.append(Verdict(name, figure, b, verdict=NOT_MEASURED, note=f"no {figure} in the results row"))
                continue
            verdict = REGRESSED if _regressed(figure, b, now, tolerance_for(base, figure, tolerance)) else OK
            verdicts.append(Verdict(name, figure, b, now, verdict, "; ".join([_limit_note(base, figure, tolerance)] + notes)))
        for shown in SHOWN_TIMES:
            values = [v for v in (_num(m.get(shown)) for m in point.measurements) if v is not None]
            verdicts.append(Verdict(name, shown, _num(base.get(shown)), min(values) if values else None, NOT_GATED,
                                    "absolute time: shown, not gated (differs across machines)"))
    return verdicts


def parity_verdicts(rows: Sequence[dict], tol: float = PARITY_TOL) -> List[Verdict]:
    out = []
    for r in rows:
        name = point_name(r)
        if r.get("status") != "ok":
            out.append(Verdict(name, "parity", verdict=NOT_MEASURED, note=f"status {r.get('status')}: {r.get('reason')}"))
            continue
        same = r.get("same_selection")
        out.append(Verdict(name, "parity: selection", verdict=OK if same else REGRESSED,
                           baseline_text="identical", now_text="identical" if same else "DIFFERENT", note=r.get("reason") or ""))
        for f in PARITY_FIGURES:
            v = r.get(f"rel_{f}")
            out.append(Verdict(name, f"parity: rel err {f}", verdict=OK if v is not None and v <= tol else REGRESSED,
                               baseline_text=f"<= {tol:g}", now_text=_fmt(v, ".3g")))
    return out


def exit_code(verdicts: Sequence[Verdict]) -> int:
    """1 when anything regressed (a definite finding wins), else 2 when anything could not be judged, else 0."""
    kinds = {v.verdict for v in verdicts}
    if REGRESSED in kinds:
        return EXIT_REGRESSED
    if kinds & {MISSING, NOT_MEASURED} or gated_count(verdicts) == 0:
        return EXIT_UNMEASURED
    return EXIT_OK


def gated_count(verdicts: Sequence[Verdict]) -> int:
    """How many performance figures were actually judged (ok or regressed): 0 is never a pass."""
    return sum(1 for v in verdicts if v.figure in GATED and v.verdict in (OK, REGRESSED))


# ------------------------------------------------------------------------------------------- output
def check_table(verdicts: Sequence[Verdict], title: str) -> Table:
    table = Table(title=title)
    for col, just in (("point", "left"), ("figure", "left"), ("baseline", "right"), ("now", "right"),
                      ("change %", "right"), ("verdict", "left"), ("note", "left")):
        table.add_column(col, justify=just)
    style = {OK: "green", REGRESSED: "bold red", MISSING: "red", NOT_MEASURED: "red", NOT_GATED: "dim", SKIPPED: "yellow"}
    for v in verdicts:
        r = v.as_row()
        table.add_row(*(escape(r[c]) for c in ("point", "figure", "baseline", "now", "change_pct")),
                      f"[{style.get(v.verdict, '')}]{escape(v.verdict)}[/]", escape(r["note"]))
    return table


def markdown(verdicts: Sequence[Verdict], final: str) -> str:
    def cell(x: str) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    icon = {OK: "✅ ok", REGRESSED: "❌ **REGRESSED**", MISSING: "⚠️ missing", NOT_MEASURED: "⚠️ not measured",
            NOT_GATED: "not gated", SKIPPED: "skipped"}
    lines = ["## lighthouse-bench check", "", final, "",
             "| point | figure | baseline | now | change % | verdict | note |", "| --- | --- | ---: | ---: | ---: | --- | --- |"]
    for v in verdicts:
        r = v.as_row()
        lines.append("| " + " | ".join(cell(x) for x in (r["point"], r["figure"], r["baseline"], r["now"], r["change_pct"],
                                                           icon.get(v.verdict, v.verdict), r["note"])) + " |")
    return "\n".join(lines) + "\n"


def final_line(code: int, verdicts: Sequence[Verdict], tolerance: float) -> str:
    gated = [v for v in verdicts if v.verdict not in (NOT_GATED, SKIPPED)]
    if code == EXIT_OK:
        return f"check: PASSED - all {len(gated)} gated figures hold (tolerance {tolerance * 100:g}%)"
    bad = [v for v in gated if v.verdict == REGRESSED]
    if code == EXIT_REGRESSED:
        return f"check: FAILED - {len(bad)} of {len(gated)} gated figures regressed (tolerance {tolerance * 100:g}%)"
    bad = [v for v in gated if v.verdict in (MISSING, NOT_MEASURED)]
    if not bad and gated_count(verdicts) == 0:
        return f"check: COULD NOT MEASURE - no gated figure ({', '.join(GATED)}) was judged: nothing was checked"
    return f"check: COULD NOT MEASURE - {len(bad)} of {len(gated)} gated figures have no measurement"


def _problem_lines(verdicts: Sequence[Verdict]) -> List[str]:
    out = []
    for v in verdicts:
        if v.verdict == REGRESSED:
            out.append(f"REGRESSED: {v.point} {v.figure}: baseline {v.as_row()['baseline']} -> now {v.as_row()['now']}"
                       + (f" ({v.change_pct:+.1f}%)" if v.change_pct is not None else "") + (f"; {v.note}" if v.note else ""))
        elif v.verdict in (MISSING, NOT_MEASURED):
            out.append(f"{v.verdict.upper()}: {v.point} {v.figure}: {v.note}")
    return list(dict.fromkeys(out))


def write_outputs(out: Path, verdicts: Sequence[Verdict], final: str) -> Tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / "check.csv", out / "check.md"
    write_rows(csv_path, CHECK, [v.as_row() for v in verdicts])
    md_path.write_text(markdown(verdicts, final))
    return csv_path, md_path


# ------------------------------------------------------------------------------------------- measuring
#: Seconds of untimed Lighthouse calls on the suite's points before the first timed row (see warm_up).
WARM_SECONDS = 2.0


def default_out_dir() -> Path:
    return Path("out") / f"check-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def point_flags(row: dict) -> Dict[str, str]:
    """The sweep flags that select exactly one results row's point, its Lighthouse impl, its pass and the floor;
    on CUDA (or a row without a device) also the cuDNN baseline; elsewhere the suite's baselines stay."""
    impl = _norm(row.get("impl")).removeprefix("lighthouse_")
    device = _norm(row.get("device")) or "cuda"
    flags = {"seq": _norm(row["n"]), "topk": _norm(row["topk"]), "levels": _norm(row["levels"]),
             "pooling": _norm(row["pooling"]), "scorer": _norm(row["scorer"]), "batch": _norm(row["batch"]),
             "heads": _norm(row["heads"]), "kv_heads": _norm(row["kv_heads"]), "head_dim": _norm(row["head_dim"]),
             "dtype": _norm(row["dtype"]), "pass": _norm(row["pass"]), "impl": impl, "device": device, "floor": True}
    if device == "cuda":
        flags["baseline"] = "cudnn"
    return flags


def _timing(spec) -> dict:
    return dict(warmup=spec.warmup, rep=spec.rep, min_rep=spec.min_rep, max_seconds=spec.max_seconds)


def measure_references(spec, out: Path, rows: Sequence[Row]) -> List[dict]:
    """Plain-PyTorch reference rows for the Lighthouse rows' shapes and passes, written to out/reference.csv."""
    refs = plain_reference.measure(rows, spec.device, spec.seed, **_timing(spec))
    plain_reference.write(Path(out) / plain_reference.FILE, refs)
    return refs


def sweep_remeasure(suite: Optional[str], out: Path, console: Optional[Console] = None) -> Remeasure:
    """The default `remeasure`: re-run one point (its Lighthouse impl, the cuDNN baseline and the floor, same
    pass, the suite's run settings) with the sweep machinery into out/repeat-<i>, then its plain-PyTorch
    reference; returns all those rows."""
    from . import sweep

    counter = [0]

    def remeasure(rows: List[dict]) -> List[dict]:
        lh = next(r for r in rows if r.get("kind", "lighthouse") == "lighthouse")
        counter[0] += 1
        sub = Path(out) / f"repeat-{counter[0]}"
        import torch

        spec = points.resolve(suite, point_flags(lh), torch.cuda.is_available())
        sweep.run(spec, sub, plot=False, console=console, resumable=False)
        got = read_rows(sub / sweep.RESULTS, SWEEP)[0]
        return got + measure_references(spec, sub, got)

    return remeasure


def warm_up(spec, seconds: Optional[float] = None) -> None:
    """Untimed forward+backward calls of every Lighthouse point of the suite before anything is timed: compiles
    the kernels, raises the clocks and warms the host-side caches. Without it the first point of a fresh
    process measured 2.61 ms where its repeats measured 2.20 ms (reports/h200/check/final-check1, N=16K)."""
    import time

    import torch

    from .. import lighthouse_attention
    from ..harness.device import free_memory, resolve_device
    from .inputs import random_inputs

    seconds = WARM_SECONDS if seconds is None else seconds
    dev = resolve_device(spec.device)
    pts = [p for p in spec.points if p.shape.invalid_reason() is None]
    impls = spec.impls or ["auto"]
    for p in pts:
        s = p.shape
        for impl in impls:
            stop = time.perf_counter() + seconds / max(1, len(pts) * len(impls))
            try:
                x = random_inputs(s.batch, s.heads, s.kv_heads, s.n, s.head_dim, s.dtype, dev, spec.seed)
                while True:
                    for t in x.leaves:
                        t.grad = None
                    lighthouse_attention(x.q, x.k, x.v, levels=p.levels, pooling=p.pooling, topk=p.topk,
                                         scorer=p.scorer, impl=impl).backward(x.grad_out)
                    if dev.type == "cuda":
                        torch.cuda.synchronize(dev)
                    if time.perf_counter() >= stop:
                        break
            except Exception:  # noqa: BLE001 - a point that cannot run is the sweep's to record, not the warm-up's
                pass
            x = None
            free_memory(dev)


def measure_suite(spec, out: Path, console: Console, argv: Optional[Sequence[str]] = None, plot: bool = True) -> int:
    """One run of the suite into `out`: the sweep (results.csv, machine.json) and the plain-PyTorch references
    (reference.csv). Returns the sweep's exit code."""
    from . import sweep

    code = sweep.run(spec, out, plot=plot, console=console, argv=list(argv) if argv else None, resumable=False)
    if code == 0:
        measure_references(spec, out, read_rows(out / sweep.RESULTS, SWEEP)[0])
    return code


def check_writable(folder: Path) -> Optional[str]:
    """Why `folder` cannot take our files (None when it can): created if missing, then a file written and removed."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as err:
        return f"{folder} is not a writable folder ({type(err).__name__}: {err.strerror or err})"
    return None


def _one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())[:400]}"


# ------------------------------------------------------------------------------------------- the command
class _Unmeasured(Exception):
    """Could not measure or write: exit 2 with this one-line reason."""


def run_check(baseline: Path, results=None, tolerance: float = DEFAULT_TOLERANCE, record: bool = False,
              suite: str = "ci", out: Optional[Path] = None, console: Optional[Console] = None,
              remeasure: Optional[Remeasure] = None, runs: Optional[int] = None, parity: bool = True,
              plot: bool = True, warm: bool = True) -> int:
    """The regression gate; returns the exit code (0 holds, 1 regressed, 2 could not measure or write).

    baseline: a baseline CSV, or "auto" (reports/baselines/<slug of the GPU model>.csv: this machine's GPU when
    measuring, the results' machine.json otherwise). results None: measure `suite` into `out` (default
    out/check-<timestamp>) on CUDA, run the Triton/PyTorch parity gate (unless parity=False), repeat points that
    look regressed (remeasure, default `sweep_remeasure`). results given (a results.csv or its folder; for
    --record also a list of them, one per run): judge it as given; a point that looks regressed is repeated only
    when `remeasure` is passed. record: write `baseline` from the results instead of judging, from `runs` runs
    of the suite (default RECORD_RUNS when measuring). parity, plot, warm: run the parity gate, draw the charts,
    warm the device up before timing (scripts that call the check many times in one process turn them off). Every failure to measure or to write is exit 2 with a
    one-line reason, checked before anything is measured where it can be.
    """
    if not (isinstance(tolerance, (int, float)) and 0 < tolerance < 1):
        raise ValueError(f"tolerance must be in (0, 1), got {tolerance!r}")
    if runs is not None and (not isinstance(runs, int) or runs < 1):
        raise ValueError(f"runs must be a whole number >= 1, got {runs!r}")
    if runs is not None and not record:
        raise ValueError("runs: --runs sets how many runs --record takes the median of; it needs --record")
    if console is None:
        from ..harness.console import make_console

        console = make_console()

    def say(text: str, style: str = "") -> None:
        console.print(f"[{style}]{escape(text)}[/]" if style else text, soft_wrap=True, highlight=False, markup=bool(style))

    try:
        return _run_check(baseline, results, tolerance, record, suite, out, console, remeasure, runs, parity, plot, warm,
                          say)
    except _Unmeasured as err:
        say(f"check: COULD NOT MEASURE - {err}", "red")
    except KeyboardInterrupt:
        raise
    except Exception as err:  # noqa: BLE001 - any failure to measure or to write is exit 2, never a traceback
        say(f"check: COULD NOT MEASURE - {_one_line(err)}", "red")
    return EXIT_UNMEASURED


def _results_paths(results) -> List[Path]:
    paths = [results] if isinstance(results, (str, Path)) else list(results)
    out = []
    for p in paths:
        p = Path(p)
        out.append(p / "results.csv" if p.is_dir() else p)
    return out


def _resolve_baseline(baseline, measuring: bool, results: List[Path]) -> Path:
    """--baseline as given, or for `auto` the file of this GPU model (see auto_baseline)."""
    if str(baseline) != AUTO:
        return Path(baseline)
    if measuring:
        import torch

        gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
        where = "this machine has no CUDA device"
    else:
        gpu = machine_info(results[0]).get("gpu") if results else None
        where = f"{results[0].parent / 'machine.json'} names no GPU" if results else "no results"
    path = auto_baseline(gpu)
    if path is None:
        raise _Unmeasured(f"--baseline auto picks the baseline by GPU model, but {where}; give --baseline PATH")
    return path


def _read_baseline(baseline: Path, suite: str) -> List[Row]:
    if not baseline.is_file():
        raise _Unmeasured(f"baseline {baseline} cannot be read: there is no such file (no baseline for this GPU yet); "
                          f"record one on this GPU with: {record_command(baseline, suite)}")
    try:
        rows = read_rows(baseline, BASELINE)[0]
    except ResultsFormatError as err:
        raise _Unmeasured(f"baseline {baseline} has no usable points ({err})") from None
    except OSError as err:
        raise _Unmeasured(f"baseline {baseline} cannot be read ({_one_line(err)}); record one with --record") from None
    absent = [c for c in POINT_COLUMNS if rows and c not in rows[0]]
    if not rows or absent or not any(c in rows[0] for c in GATED):
        raise _Unmeasured(f"baseline {baseline} has no usable points" + (f" (columns missing: {', '.join(absent)})" if absent else ""))
    return rows


def _run_check(baseline, results, tolerance, record, suite, out, console, remeasure, runs, parity, plot, warm, say) -> int:
    measuring = results is None
    result_paths = [] if measuring else _results_paths(results)
    if not measuring and not record and len(result_paths) != 1:
        raise _Unmeasured(f"judging takes one --results, got {len(result_paths)}")
    if not measuring and runs is not None:
        raise _Unmeasured("--runs measures the suite that many times; with --results give one --results per run instead")
    baseline = _resolve_baseline(baseline, measuring, result_paths)
    base_rows = [] if record else _read_baseline(baseline, suite)

    # everything that will be written is checked before anything is measured
    if measuring and out is None:
        out = default_out_dir()
    for folder, what in ((out, "--out"), (baseline.parent if record else None, "--baseline")):
        why = check_writable(folder) if folder is not None else None
        if why:
            raise _Unmeasured(f"{what}: {why}")

    parity_out: Optional[List[dict]] = None
    if measuring:
        import torch

        from ..harness.loop import EXIT_INTERRUPTED

        cuda = torch.cuda.is_available()
        try:
            spec = points.resolve(suite, {}, cuda)
        except OptionError as err:
            if not cuda and "CUDA is not available" in str(err):
                raise _Unmeasured(f"no CUDA device: the {suite!r} suite runs on a GPU; give --results RESULTS.csv "
                                  f"to judge a finished sweep") from None
            raise
        runs = runs or (RECORD_RUNS if record else 1)
        if warm:
            warm_up(spec)
        for i in range(runs):
            run_out = Path(out) if runs == 1 else Path(out) / f"run-{i + 1}"
            argv = ["lighthouse-bench", "check", "--suite", suite, "--out", str(out)] + (["--record"] if record else [])
            try:
                code = measure_suite(spec, run_out, console, argv, plot=plot)
            except ValueError as err:  # the sweep refused to start (harness.loop.RunError, --out)
                raise _Unmeasured(str(err)) from None
            if code == EXIT_INTERRUPTED:
                return code
            if code != 0:
                raise _Unmeasured(f"the sweep stopped with exit code {code} (rows so far in {run_out})")
            result_paths.append(run_out / "results.csv")
        if not record and parity:
            say(f"parity: Triton vs PyTorch on {len(spec.points)} points (forward + backward, same inputs)")
            parity_out = parity_rows(spec.points, spec.device, seed=spec.seed)
            write_rows(Path(out) / "parity.csv", PARITY, parity_out)
        if remeasure is None:
            remeasure = sweep_remeasure(suite, out, console)

    all_rows = []
    for path in result_paths:
        torn: List[Row] = []
        try:
            all_rows.append(read_results(path, torn))
        except (OSError, ResultsFormatError) as err:
            raise _Unmeasured(f"results {path} cannot be read ({_one_line(err)})") from None
        if torn:
            say(f"check: {len(torn)} torn row(s) in {path} left out (a run cut short; they count as not measured)", "yellow")

    if record:
        return _record(baseline, all_rows, result_paths, say)
    parity_note = ("parity not asked for (parity=False)" if measuring else
                   "--results given: parity (Triton vs PyTorch) runs only when the check measures on CUDA")
    return _judge_and_report(baseline, base_rows, all_rows[0], result_paths[0], tolerance, remeasure, parity_out,
                             parity_note, out, console, say)


def _record(baseline: Path, all_rows: List[List[Row]], result_paths: List[Path], say) -> int:
    """--record: refuse results without any gated figure, else write the baseline (median and spread of the runs)."""
    recorded = baseline_from_runs(all_rows, machine_info(result_paths[0]))
    if not recorded:
        where = ", ".join(str(p) for p in result_paths)
        raise _Unmeasured(f"nothing to record - {where} has no ok Lighthouse row with a gated figure "
                          f"({', '.join(GATED)}; a CPU sweep has none: no cuDNN baseline, no floor, no reference); "
                          f"record on the GPU the baseline is for")
    try:
        write_rows(baseline, BASELINE, recorded)
    except OSError as err:
        raise _Unmeasured(f"cannot write the baseline {baseline} ({_one_line(err)})") from None
    say(f"check: recorded {len(recorded)} points from {len(result_paths)} run{'s' if len(result_paths) > 1 else ''} "
        f"into {baseline}", "green")
    for r in recorded:
        figures = " ".join(f"{f}={r[f] or '-'}" + (f" (spread {float(r[SPREAD[f]]) * 100:.3g}%)" if r[SPREAD[f]] else "")
                           for f in GATED)
        say(f"  {point_name(r)}: {figures} median_ms={r['median_ms'] or '-'}")
    return EXIT_OK


def _judge_and_report(baseline, base_rows, rows, results, tolerance, remeasure, parity_out, parity_note, out, console,
                      say) -> int:
    verdicts = judge(base_rows, rows, tolerance, remeasure)
    if parity_out is not None:
        verdicts += parity_verdicts(parity_out)
    else:
        verdicts.append(Verdict("all points", "parity", verdict=SKIPPED, note=parity_note))
    code = exit_code(verdicts)
    final = final_line(code, verdicts, tolerance)
    console.print(check_table(verdicts, f"lighthouse-bench check: {results} vs {baseline}"))
    for line in _problem_lines(verdicts):
        say(line, "red")
    if out is not None:
        try:
            csv_path, md_path = write_outputs(Path(out), verdicts, final)
        except OSError as err:
            raise _Unmeasured(f"cannot write the check table into {out} ({_one_line(err)})") from None
        say(f"check table: {csv_path}, {md_path}")
    say(final, {EXIT_OK: "bold green", EXIT_REGRESSED: "bold red"}.get(code, "bold yellow"))
    return code
