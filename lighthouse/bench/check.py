"""`lighthouse-bench check`: the regression gate.

Compares a results.csv (measured now with the `ci` suite, or given with --results) against a recorded baseline
(reports/baselines/<gpu>.csv) and answers with an exit code:

    0  every gated figure holds
    1  a regression: a gated figure moved past the tolerance (after repeats), or Triton and PyTorch disagree
    2  could not measure: no CUDA where the suite must run, baseline missing or unreadable, a baseline point
       missing from the results, a row of a baseline point whose status is not ok

Gated figures, per Lighthouse point (POINT_COLUMNS) the baseline holds: `speedup_vs_sdpa_cudnn` (higher is
better) and `floor_ratio` (lower is better). Both are ratios measured within one run, so they carry across
machines and runs far better than absolute milliseconds, which are shown but never gated.

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

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import machine, points, results
from .parity import PARITY_TOL, parity_rows
from .results import BASELINE, CHECK, PARITY, PARITY_FIGURES, SWEEP, ResultsFormatError, read_rows, write_rows

#: What identifies a gated point in the baseline and the results (results.CHECK_POINT_COLUMNS: the sweep key
#: without the device) and the dense row it is compared with (same pass, N and shape).
POINT_COLUMNS, SHAPE_COLUMNS = results.CHECK_POINT_COLUMNS, results.DENSE_MATCH_COLUMNS
BASELINE_IMPL = results.BASELINES["cudnn"]
SPEEDUP, FLOOR_RATIO = results.CHECK_SPEEDUP, results.CHECK_FLOOR_RATIO
#: Gated figures: name -> True when higher is better.
GATED: Dict[str, bool] = {SPEEDUP: True, FLOOR_RATIO: False}
MACHINE_COLUMNS, BASELINE_COLUMNS = results.CHECK_MACHINE_COLUMNS, BASELINE.columns

EXIT_OK, EXIT_REGRESSED, EXIT_UNMEASURED = 0, 1, 2
#: How many times a point that looks regressed is measured again before it is judged.
REPEATS = 2

OK, REGRESSED, MISSING, NOT_MEASURED, NOT_GATED, SKIPPED = "ok", "REGRESSED", "missing", "not measured", "not gated", "skipped"

Row = Dict[str, str]
Remeasure = Callable[[List[dict]], List[dict]]


# ------------------------------------------------------------------------------------------- small helpers
_num, _norm = results.num, results.norm


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
    return results.fmt(x, spec=spec, missing="")


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


# ------------------------------------------------------------------------------------------- the baseline
def baseline_rows(rows: Sequence[Row], info: Optional[Dict[str, str]] = None) -> List[dict]:
    """--record: the baseline rows from results rows: per ok Lighthouse point its point columns, the gated
    figures, its median ms, the dense cuDNN median ms of its shape, S and the machine info."""
    info = dict(info or {})
    info.setdefault("recorded_at", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    out = []
    for r in _lighthouse_rows(rows).values():
        if r.get("status") != "ok":
            continue
        rec = {c: _norm(r.get(c)) for c in POINT_COLUMNS}
        rec.update({SPEEDUP: r.get(SPEEDUP, ""), FLOOR_RATIO: r.get(FLOOR_RATIO, ""), "median_ms": r.get("median_ms", ""),
                    "dense_median_ms": _fmt(_dense_ms(rows, r), ".6g"), "s_sel": _norm(r.get("s_sel"))})
        rec.update({c: info.get(c, "") for c in MACHINE_COLUMNS})
        out.append(rec)
    return out


def record_baseline(results: Path, baseline: Path) -> List[dict]:
    """Write the baseline file from a results.csv (parent folders created). Returns the rows written."""
    rows = baseline_rows(read_rows(results, SWEEP)[0], machine_info(results))
    write_rows(baseline, BASELINE, rows)
    return rows


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
            if base is not None and now is not None and _regressed(figure, base, now, tolerance):
                return True
        return False


def _ok_row_of(rows: Sequence[dict], key: Tuple[str, ...]) -> Optional[dict]:
    hits = [r for r in rows if r.get("kind", "lighthouse") == "lighthouse" and point_key(r) == key and r.get("status") == "ok"]
    return hits[-1] if hits else None


def judge(baseline: Sequence[Row], results: Sequence[Row], tolerance: float,
          remeasure: Optional[Remeasure] = None, repeats: int = REPEATS) -> List[Verdict]:
    """Every gated figure of every baseline point, with its verdict (plus the not-gated median ms)."""
    found = _lighthouse_rows(results)
    verdicts: List[Verdict] = []
    for base in baseline:
        key, name = point_key(base), point_name(base)
        figures = [f for f in GATED if _num(base.get(f)) is not None]
        row = found.get(key)
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
                    again = _ok_row_of(remeasure(_related_rows(results, row)), key)
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
            if now is None:
                verdicts.append(Verdict(name, figure, b, verdict=NOT_MEASURED, note=f"no {figure} in the results row"))
                continue
            verdict = REGRESSED if _regressed(figure, b, now, tolerance) else OK
            limit = f"limit {'-' if GATED[figure] else '+'}{tolerance * 100:g}%"
            verdicts.append(Verdict(name, figure, b, now, verdict, "; ".join([limit] + notes)))
        ms_now = min(v for v in (_num(m.get("median_ms")) for m in point.measurements) if v is not None) \
            if any(_num(m.get("median_ms")) is not None for m in point.measurements) else None
        verdicts.append(Verdict(name, "median_ms", _num(base.get("median_ms")), ms_now, NOT_GATED,
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
    if kinds & {MISSING, NOT_MEASURED}:
        return EXIT_UNMEASURED
    return EXIT_OK


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
def default_out_dir() -> Path:
    return Path("out") / f"check-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def point_flags(row: dict) -> Dict[str, str]:
    """The sweep flags that select exactly one results row's point, its Lighthouse impl, the cuDNN baseline
    and its pass (the floor comes with the CUDA defaults)."""
    impl = _norm(row.get("impl")).removeprefix("lighthouse_")
    return {"seq": _norm(row["n"]), "topk": _norm(row["topk"]), "levels": _norm(row["levels"]),
            "pooling": _norm(row["pooling"]), "scorer": _norm(row["scorer"]), "batch": _norm(row["batch"]),
            "heads": _norm(row["heads"]), "kv_heads": _norm(row["kv_heads"]), "head_dim": _norm(row["head_dim"]),
            "dtype": _norm(row["dtype"]), "pass": _norm(row["pass"]), "impl": impl, "baseline": "cudnn",
            "device": "cuda", "floor": True}


def sweep_remeasure(suite: Optional[str], out: Path, console: Optional[Console] = None) -> Remeasure:
    """The default `remeasure`: re-run one point (its Lighthouse impl, the cuDNN baseline and the floor, same
    pass, the suite's run settings) with the sweep machinery into out/repeat-<i>; returns its rows."""
    from . import sweep

    counter = [0]

    def remeasure(rows: List[dict]) -> List[dict]:
        lh = next(r for r in rows if r.get("kind", "lighthouse") == "lighthouse")
        counter[0] += 1
        sub = Path(out) / f"repeat-{counter[0]}"
        import torch

        spec = points.resolve(suite, point_flags(lh), torch.cuda.is_available())
        sweep.run(spec, sub, plot=False, console=console)
        return sweep.read_rows(sub / sweep.RESULTS)

    return remeasure


def _measure(suite: str, out: Path, console: Console):
    """Run the suite into `out`; returns (spec, exit code of the sweep)."""
    import torch

    from . import sweep

    spec = points.resolve(suite, {}, torch.cuda.is_available())
    code = sweep.run(spec, out, plot=True, console=console,
                     argv=["lighthouse-bench", "check", "--suite", suite, "--out", str(out)])
    return spec, code


# ------------------------------------------------------------------------------------------- the command
def run_check(baseline: Path, results: Optional[Path], tolerance: float = 0.10, record: bool = False,
              suite: str = "ci", out: Optional[Path] = None, console: Optional[Console] = None,
              remeasure: Optional[Remeasure] = None) -> int:
    """The regression gate; returns the exit code (0 holds, 1 regressed, 2 could not measure).

    results None: measure `suite` into `out` (default out/check-<timestamp>) on CUDA, run the Triton/PyTorch
    parity gate, repeat points that look regressed (remeasure, default `sweep_remeasure`). results given (a
    results.csv or its folder): judge it as given; a point that looks regressed is repeated only when
    `remeasure` is passed. record: write `baseline` from the results instead of judging (exit 0).
    """
    if not (isinstance(tolerance, (int, float)) and 0 < tolerance < 1):
        raise ValueError(f"tolerance must be in (0, 1), got {tolerance!r}")
    if console is None:
        from .sweep import make_console

        console = make_console()
    baseline = Path(baseline)

    def say(text: str, style: str = "") -> None:
        console.print(f"[{style}]{escape(text)}[/]" if style else text, soft_wrap=True, highlight=False, markup=bool(style))

    base_rows: List[Row] = []
    if not record:
        try:
            base_rows = read_rows(baseline, BASELINE)[0]
        except ResultsFormatError as err:
            say(f"check: COULD NOT MEASURE - baseline {baseline} has no usable points ({err})", "red")
            return EXIT_UNMEASURED
        except OSError as err:
            say(f"check: COULD NOT MEASURE - baseline {baseline} cannot be read ({type(err).__name__}: {err}); "
                f"record one with --record", "red")
            return EXIT_UNMEASURED
        absent = [c for c in POINT_COLUMNS if base_rows and c not in base_rows[0]]
        if not base_rows or absent or not any(c in base_rows[0] for c in GATED):
            say(f"check: COULD NOT MEASURE - baseline {baseline} has no usable points"
                + (f" (columns missing: {', '.join(absent)})" if absent else ""), "red")
            return EXIT_UNMEASURED

    measured = results is None
    parity: Optional[List[dict]] = None
    if measured:
        import torch

        if not torch.cuda.is_available():
            say(f"check: COULD NOT MEASURE - no CUDA device: the {suite!r} suite runs on a GPU; "
                f"give --results RESULTS.csv to judge a finished sweep", "red")
            return EXIT_UNMEASURED
        from .sweep import EXIT_INTERRUPTED, SweepError

        out = Path(out) if out is not None else default_out_dir()
        try:
            spec, code = _measure(suite, out, console)
        except SweepError as err:
            say(f"check: COULD NOT MEASURE - {err}", "red")
            return EXIT_UNMEASURED
        if code == EXIT_INTERRUPTED:
            return code
        if code != 0:
            say(f"check: COULD NOT MEASURE - the sweep stopped with exit code {code} (rows so far in {out})", "red")
            return EXIT_UNMEASURED
        results = out / "results.csv"
        if not record:
            say(f"parity: Triton vs PyTorch on {len(spec.points)} points (forward + backward, same inputs)")
            parity = parity_rows(spec.points, spec.device, seed=spec.seed)
            write_rows(out / "parity.csv", PARITY, parity)
        if remeasure is None:
            remeasure = sweep_remeasure(suite, out, console)
    else:
        results = Path(results)
        if results.is_dir():
            results = results / "results.csv"
    try:
        rows, torn = read_rows(results, SWEEP)
    except (OSError, ResultsFormatError) as err:
        say(f"check: COULD NOT MEASURE - results {results} cannot be read ({type(err).__name__}: {err})", "red")
        return EXIT_UNMEASURED
    if torn:
        say(f"check: {len(torn)} torn row(s) in {results} left out (a run cut short; they count as not measured)", "yellow")

    if record:
        recorded = baseline_rows(rows, machine_info(results))
        if not recorded:
            say(f"check: nothing to record - {results} has no ok Lighthouse rows", "red")
            return EXIT_UNMEASURED
        write_rows(baseline, BASELINE, recorded)
        say(f"check: recorded {len(recorded)} points from {results} into {baseline}", "green")
        for r in recorded:
            say(f"  {point_name(r)}: {SPEEDUP}={r[SPEEDUP] or '-'} {FLOOR_RATIO}={r[FLOOR_RATIO] or '-'} "
                f"median_ms={r['median_ms'] or '-'}")
        return EXIT_OK

    verdicts = judge(base_rows, rows, tolerance, remeasure)
    if parity is not None:
        verdicts += parity_verdicts(parity)
    else:
        why = "--results given: parity (Triton vs PyTorch) runs only when the check measures on CUDA"
        verdicts.append(Verdict("all points", "parity", verdict=SKIPPED, note=why))
    code = exit_code(verdicts)
    final = final_line(code, verdicts, tolerance)
    console.print(check_table(verdicts, f"lighthouse-bench check: {results} vs {baseline}"))
    for line in _problem_lines(verdicts):
        say(line, "red")
    say(final, {EXIT_OK: "bold green", EXIT_REGRESSED: "bold red"}.get(code, "bold yellow"))
    if out is not None:
        csv_path, md_path = write_outputs(Path(out), verdicts, final)
        say(f"check table: {csv_path}, {md_path}")
    return code
