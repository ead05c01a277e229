"""The command: `run_check` resolves the baseline, checks every output folder before anything is measured,
measures (record.py) or reads the results, then records the baseline or judges (judge.py) and reports
(render.py). Every failure to measure or to write is exit 2 with one line, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from rich.console import Console
from rich.markup import escape

from ...harness import points
from ...harness.options import OptionError
from ...harness.outdir import OutputFolderError, default_out, writable_folder
from ...harness.tables import BASELINE, PARITY, ResultsFormatError, read_rows, write_rows
from ..parity import parity_rows
from .figures import (
    AUTO,
    DEFAULT_TOLERANCE,
    GATED,
    POINT_COLUMNS,
    RECORD_RUNS,
    Remeasure,
    Row,
    machine_info,
    read_results,
)
from .judge import EXIT_OK, EXIT_REGRESSED, EXIT_UNMEASURED, SKIPPED, Verdict, exit_code, judge, parity_verdicts
from .record import auto_baseline, baseline_from_runs, measure_suite, record_command, sweep_remeasure, warm_up
from .render import check_table, final_line, problem_lines, recorded_lines, write_outputs


def _one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())[:400]}"


class _Unmeasured(Exception):
    """Could not measure or write: exit 2 with this one-line reason."""


def run_check(
    baseline: Path,
    results=None,
    tolerance: float = DEFAULT_TOLERANCE,
    record: bool = False,
    suite: str = "ci",
    out: Optional[Path] = None,
    console: Optional[Console] = None,
    remeasure: Optional[Remeasure] = None,
    runs: Optional[int] = None,
    parity: bool = True,
    plot: bool = True,
    warm: bool = True,
) -> int:
    """The regression gate; returns the exit code (0 holds, 1 regressed, 2 could not measure or write).

    baseline: a baseline CSV, or "auto" (reports/baselines/<slug of the GPU model>.csv: this machine's GPU when
    measuring, the results' machine.json otherwise). results None: measure `suite` into `out` (default
    out/check-<timestamp>) on CUDA, run the Triton/PyTorch parity gate (unless parity=False), repeat points that
    look regressed (remeasure, default `sweep_remeasure`). results given (a results.csv or its folder; for
    --record also a list of them, one per run): judge it as given; a point that looks regressed is repeated only
    when `remeasure` is passed. record: write `baseline` from the results instead of judging, from `runs` runs
    of the suite (default RECORD_RUNS when measuring). parity, plot, warm: run the parity gate, draw the charts,
    warm the device up before timing (scripts that call the check many times in one process turn them off).
    Every failure to measure or to write is exit 2 with a
    one-line reason, checked before anything is measured where it can be.
    """
    if not (isinstance(tolerance, (int, float)) and 0 < tolerance < 1):
        raise ValueError(f"tolerance must be in (0, 1), got {tolerance!r}")
    if runs is not None and (not isinstance(runs, int) or runs < 1):
        raise ValueError(f"runs must be a whole number >= 1, got {runs!r}")
    if runs is not None and not record:
        raise ValueError("runs: --runs sets how many runs --record takes the median of; it needs --record")
    if console is None:
        from ...harness.console import make_console

        console = make_console()

    def say(text: str, style: str = "") -> None:
        console.print(
            f"[{style}]{escape(text)}[/]" if style else text, soft_wrap=True, highlight=False, markup=bool(style)
        )

    try:
        return _run_check(
            baseline, results, tolerance, record, suite, out, console, remeasure, runs, parity, plot, warm, say
        )
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
        raise _Unmeasured(
            f"baseline {baseline} cannot be read: there is no such file (no baseline for this GPU yet); "
            f"record one on this GPU with: {record_command(baseline, suite)}"
        )
    try:
        rows = read_rows(baseline, BASELINE)[0]
    except ResultsFormatError as err:
        raise _Unmeasured(f"baseline {baseline} has no usable points ({err})") from None
    except OSError as err:
        raise _Unmeasured(f"baseline {baseline} cannot be read ({_one_line(err)}); record one with --record") from None
    absent = [c for c in POINT_COLUMNS if rows and c not in rows[0]]
    if not rows or absent or not any(c in rows[0] for c in GATED):
        raise _Unmeasured(
            f"baseline {baseline} has no usable points" + (f" (columns missing: {', '.join(absent)})" if absent else "")
        )
    return rows


def _run_check(
    baseline, results, tolerance, record, suite, out, console, remeasure, runs, parity, plot, warm, say
) -> int:
    measuring = results is None
    result_paths = [] if measuring else _results_paths(results)
    if not measuring and not record and len(result_paths) != 1:
        raise _Unmeasured(f"judging takes one --results, got {len(result_paths)}")
    if not measuring and runs is not None:
        raise _Unmeasured(
            "--runs measures the suite that many times; with --results give one --results per run instead"
        )
    baseline = _resolve_baseline(baseline, measuring, result_paths)
    base_rows = [] if record else _read_baseline(baseline, suite)

    # everything that will be written is checked before anything is measured
    if measuring and out is None:
        out = default_out("check")
    for folder, option in ((out, "--out"), (baseline.parent if record else None, "--baseline")):
        if folder is not None:
            try:
                writable_folder(folder, option)
            except OutputFolderError as err:
                raise _Unmeasured(str(err)) from None

    parity_out: Optional[List[dict]] = None
    if measuring:
        import torch

        from ...harness.loop import EXIT_INTERRUPTED

        cuda = torch.cuda.is_available()
        try:
            spec = points.resolve(suite, {}, cuda)
        except OptionError as err:
            if not cuda and "CUDA is not available" in str(err):
                raise _Unmeasured(
                    f"no CUDA device: the {suite!r} suite runs on a GPU; give --results RESULTS.csv "
                    f"to judge a finished sweep"
                ) from None
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
            say(
                f"check: {len(torn)} torn row(s) in {path} left out (a run cut short; they count as not measured)",
                "yellow",
            )

    if record:
        return _record(baseline, all_rows, result_paths, say)
    parity_note = (
        "parity not asked for (parity=False)"
        if measuring
        else "--results given: parity (Triton vs PyTorch) runs only when the check measures on CUDA"
    )
    return _judge_and_report(
        baseline,
        base_rows,
        all_rows[0],
        result_paths[0],
        tolerance,
        remeasure,
        parity_out,
        parity_note,
        out,
        console,
        say,
    )


def _record(baseline: Path, all_rows: List[List[Row]], result_paths: List[Path], say) -> int:
    """--record: refuse results without any gated figure, else write the baseline (median and spread of the runs)."""
    recorded = baseline_from_runs(all_rows, machine_info(result_paths[0]))
    if not recorded:
        where = ", ".join(str(p) for p in result_paths)
        raise _Unmeasured(
            f"nothing to record - {where} has no ok Lighthouse row with a gated figure "
            f"({', '.join(GATED)}; a CPU sweep has none: no cuDNN baseline, no floor, no reference); "
            f"record on the GPU the baseline is for"
        )
    try:
        write_rows(baseline, BASELINE, recorded)
    except OSError as err:
        raise _Unmeasured(f"cannot write the baseline {baseline} ({_one_line(err)})") from None
    say(
        f"check: recorded {len(recorded)} points from {len(result_paths)} run{'s' if len(result_paths) > 1 else ''} "
        f"into {baseline}",
        "green",
    )
    for line in recorded_lines(recorded):
        say(line)
    return EXIT_OK


def _judge_and_report(
    baseline, base_rows, rows, results, tolerance, remeasure, parity_out, parity_note, out, console, say
) -> int:
    verdicts = judge(base_rows, rows, tolerance, remeasure)
    if parity_out is not None:
        verdicts += parity_verdicts(parity_out)
    else:
        verdicts.append(Verdict("all points", "parity", verdict=SKIPPED, note=parity_note))
    code = exit_code(verdicts)
    final = final_line(code, verdicts, tolerance)
    console.print(check_table(verdicts, f"lighthouse-bench check: {results} vs {baseline}"))
    for line in problem_lines(verdicts):
        say(line, "red")
    if out is not None:
        try:
            csv_path, md_path = write_outputs(Path(out), verdicts, final)
        except OSError as err:
            raise _Unmeasured(f"cannot write the check table into {out} ({_one_line(err)})") from None
        say(f"check table: {csv_path}, {md_path}")
    say(final, {EXIT_OK: "bold green", EXIT_REGRESSED: "bold red"}.get(code, "bold yellow"))
    return code
