"""Orchestration: run a plan's tasks, write each row the moment it finishes, resume, show progress.

results.csv is the results.SWEEP table, written through results.append_row one finished row at a time.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from . import flops, machine, points, results, runner
from .outdir import OutputFolderError, writable_folder
from .points import SweepSpec, Task
from .results import BASELINES, FINAL, SWEEP

RESULTS, MACHINE = "results.csv", "machine.json"

#: Exit codes: interrupted (Ctrl-C) as a shell reports SIGINT; the CUDA context lost; rows failed and no
#: Lighthouse row ran; nothing could run at all (every row invalid or unsupported here: a usage error).
EXIT_INTERRUPTED, EXIT_DEVICE_LOST, EXIT_FAILED, EXIT_NOTHING_RAN = 130, 1, 1, 2


class SweepError(ValueError):
    """The sweep cannot start (output folder in the way, nothing to resume)."""


def make_console() -> Console:
    """Rich output; a log file (not a terminal) gets a wide page so the summary table is not cut."""
    console = Console()
    return console if console.is_terminal else Console(width=max(console.width, 180))


def default_out_dir() -> Path:
    return Path("out") / f"sweep-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def read_rows(path: Path) -> List[dict]:
    """The finished rows of a results.csv (torn rows left out); [] for a file that is missing or empty."""
    if not path.exists() or path.stat().st_size == 0:
        return []
    return results.read_rows(path, SWEEP)[0]


def keep_final_rows(path: Path) -> List[dict]:
    """For --resume: rewrite results.csv with only finished rows of a final status (the last one per key), so
    oom, error and torn rows are run again and replaced instead of duplicated. Returns the kept rows."""
    kept: Dict[Tuple[str, ...], dict] = {}
    for row in read_rows(path):
        if row.get("status") in FINAL:
            kept[results.row_key(row)] = row
    results.write_rows(path, SWEEP, kept.values())
    return list(kept.values())


class Medians:
    """Medians measured so far (this run or the resumed file), per clock: dense baselines per (shape, pass, impl),
    the floor per (point, pass). A dense point is measured once per sweep and serves every Lighthouse point."""

    def __init__(self):
        self.dense: Dict[Tuple, float] = {}
        self.floor: Dict[Tuple, float] = {}

    @staticmethod
    def _key(row: dict) -> Tuple[str, ...]:
        return results.row_key({**row, "impl": "", "levels": "", "pooling": "", "topk": "", "scorer": ""})

    def add(self, row: dict) -> None:
        if row.get("status") != "ok":
            return
        for clock in results.CLOCKS:
            ms = results.num(row.get(results.clock_column("median_ms", clock)))
            if ms is None:
                continue
            if row["kind"] == "dense":
                self.dense[(self._key(row), row["impl"], clock)] = ms
            elif row["kind"] == "floor":
                self.floor[(results.row_key({**row, "impl": ""}), clock)] = ms

    def baseline(self, row: dict, impl: str, clock: str = results.LAUNCHED) -> Optional[float]:
        return self.dense.get((self._key(row), impl, clock))

    def floor_of(self, row: dict, clock: str = results.LAUNCHED) -> Optional[float]:
        """The floor is timed eagerly (one SDPA launch), also beside graphed Lighthouse rows."""
        return self.floor.get((results.row_key({**row, "impl": "", "cuda_graph": "False"}), clock))


def make_row(task: Task, device: str, seed: int, result: runner.Result, medians: Medians) -> dict:
    """One CSV row: the task's parameters, the measurement and the numbers derived from it."""
    s, p = task.shape, task.point
    row = {
        "impl": task.impl, "kind": task.kind, "pass": task.pass_, "device": device, "dtype": s.dtype, "n": s.n,
        "batch": s.batch, "heads": s.heads, "kv_heads": s.kv_heads, "head_dim": s.head_dim,
        "levels": p.levels if p else None, "pooling": p.pooling if p else None, "topk": p.topk if p else None,
        "scorer": p.scorer if p else None, "s_sel": task.s_sel, "sdpa_backend": result.sdpa_backend or None,
        "cuda_graph": task.cuda_graph,
        "status": result.status, "reason": result.reason or None, "seed": seed,
    }
    t = result.timing
    if result.status == "ok" and t is not None:
        ms = t.median_ms
        row.update(median_ms=ms, p20_ms=t.p20_ms, p80_ms=t.p80_ms, reps=len(t.samples_ms), first_call_ms=t.first_call_ms,
                   peak_mem_gib=t.peak_bytes / 2**30 if t.peak_bytes is not None else None)
        ahead = dict(zip(results.HOST_AHEAD_TIMES, (t.host_ahead_median_ms, t.host_ahead_p20_ms, t.host_ahead_p80_ms)))
        row.update(ahead, **{results.HOST_MS: t.host_ms_per_call,
                             results.HOST_AHEAD_TIMEOUTS: t.host_ahead_timeouts if t.host_ahead_ms else None})
        row["dense_tflops"] = flops.dense_equivalent_tflops(s.n, s.batch, s.heads, s.head_dim, task.pass_, ms)
        s_eff = task.s_sel if task.kind != "dense" else s.n
        row["eff_tflops"] = flops.effective_tflops(s_eff, s.batch, s.heads, s.head_dim, task.pass_, ms)
        if task.kind == "lighthouse":
            key_row = {k: str(v) if v is not None else "" for k, v in row.items()}
            for clock in results.CLOCKS:  # Lighthouse against dense and the floor on the same clock only
                own = results.num(row.get(results.clock_column("median_ms", clock)))
                for impl in BASELINES.values():
                    row[results.clock_column(f"speedup_vs_{impl}", clock)] = flops.speedup(
                        medians.baseline(key_row, impl, clock), own)
                row[results.clock_column("floor_ratio", clock)] = flops.floor_ratio(own, medians.floor_of(key_row, clock))
    return row


def _weight(task: Task) -> float:
    """Rough relative cost, so the ETA is not fooled by a hundred cheap rows before one slow one."""
    if task.invalid:
        return 1e-3
    s = task.shape
    n = task.s_sel if task.kind in ("floor", "lighthouse") else s.n
    cost = flops.causal_attention_flops(n, s.batch, s.heads, s.head_dim, task.pass_)
    if task.kind == "lighthouse":
        cost += 200.0 * s.batch * s.heads * s.n * s.head_dim  # linear work: scoring, gather, scatter
    return cost / 1e9 + 1.0


def resolve_impls(spec: SweepSpec, bench: runner.Bench) -> Tuple[List[str], List[str]]:
    impls = spec.impls or runner.default_impls(bench.device)
    dtypes = sorted({p.shape.dtype for p in spec.points})
    baselines = spec.baselines if spec.baselines is not None else runner.default_baselines(bench.device, dtypes)
    return impls, baselines


def prepare_out_dir(out: Path, resume: bool) -> Path:
    path = results.claim_results_file(out, RESULTS, resume, SweepError)
    writable_folder(out)
    return path


def run(spec: SweepSpec, out: Path, *, resume: bool = False, argv: Optional[Sequence[str]] = None,
        equivalent: Optional[Sequence[str]] = None, console: Optional[Console] = None, plot: bool = True,
        cp: int = 1) -> int:
    """Run the sweep into `out`; returns the exit code (0; 130 on Ctrl-C; 1 if the CUDA context died or no
    Lighthouse row ran ok; 2 if nothing could run here, every row invalid or unsupported). Raises SweepError
    before anything runs for a grid of invalid points, a --resume with other options, a bad --out.
    cp > 1: context parallelism over cp ranks (this is one of the torchrun processes; see bench/cp.py)."""
    ctx = None
    if cp > 1:
        from . import cp as cp_sweep

        try:
            ctx = cp_sweep.start(cp, spec.device)
        except ValueError as err:
            raise SweepError(str(err)) from None
    writer = ctx is None or ctx.writer  # only rank 0 writes files and prints
    console = (console or make_console()) if writer else Console(quiet=True)
    bench = runner.Bench(spec.device, spec.seed, spec.warmup, spec.rep, spec.min_rep, spec.max_seconds)
    bench.cp = ctx
    impls, baselines = resolve_impls(spec, bench)
    tasks = cp_sweep.plan(spec, impls, cp) if ctx else points.plan_tasks(spec, impls, baselines)
    if ctx:
        baselines = [cp_sweep.ring_impl(cp)]
    if tasks and all(t.invalid for t in tasks):
        raise SweepError(f"no row of this sweep can run: every point is invalid ({tasks[0].invalid})")
    options = {**spec.options, "impl": impls, "baseline": baselines, "out": str(out), "resume": resume, "cp": cp}
    machine_path, results_path = out / MACHINE, out / RESULTS
    previous, refusal, done_keys = None, None, []
    medians = Medians()
    if writer:  # rank 0 alone reads and rewrites --out; the other ranks learn the outcome from it
        try:
            previous = machine.read(machine_path) if resume else None
            if resume:
                check_same_sweep(previous, options, machine_path)
            prepare_out_dir(out, resume)
            for row in keep_final_rows(results_path) if resume else []:
                done_keys.append(results.row_key(row))
                medians.add(row)
        except (SweepError, OutputFolderError) as err:
            refusal = err
    if ctx is not None:  # every rank raises the same refusal or skips the same rows: none waits in a collective
        refusal, done_keys = cp_sweep.from_writer((refusal, done_keys), ctx)
    if refusal is not None:
        raise refusal
    done = set(done_keys)

    todo = [t for t in tasks if t.key(spec.device) not in done]
    skipped = len(tasks) - len(todo)

    info = machine.collect(argv, options, equivalent)
    if writer:
        machine.write(machine_path, info, previous)
    console.print(f"[bold]lighthouse-bench sweep[/] suite={spec.suite or 'default'} device={spec.device} "
                  f"{info.get('gpu') or info.get('cpu')}: {len(spec.points)} points, {len(tasks)} rows"
                  + (f", {skipped} already done (--resume)" if skipped else "") + f" -> {out}")

    start, interrupted, lost = time.perf_counter(), False, None
    counts: Dict[str, int] = {}
    floor_cache: Dict[Tuple, runner.Result] = {}
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[rows]}"),
                        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console)
    try:
        with progress:
            bar = progress.add_task("starting", total=sum(_weight(t) for t in todo) or 1.0, rows=f"0/{len(todo)} rows")
            for i, task in enumerate(todo):
                progress.update(bar, description=task.label())
                floor_key = (task.shape.batch, task.shape.heads, task.shape.head_dim, task.shape.dtype, task.s_sel, task.pass_)
                if task.kind == "floor" and floor_key in floor_cache:
                    result = floor_cache[floor_key]  # same S, same shape: the same measurement
                else:
                    try:
                        result = runner.execute(task, bench)
                    except runner.DeviceLost as err:
                        result, lost = err.result, err
                if task.kind == "floor":
                    floor_cache[floor_key] = result
                row = make_row(task, spec.device, spec.seed, result, medians)
                if writer:
                    results.append_row(results_path, SWEEP, row)
                medians.add({k: results.cell(v) for k, v in row.items()})
                counts[result.status] = counts.get(result.status, 0) + 1
                progress.update(bar, advance=_weight(task), rows=f"{i + 1}/{len(todo)} rows " + _counts(counts))
                if lost:
                    break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bench.release()
        if writer:
            machine.write(machine_path, machine.finish(info, time.perf_counter() - start, interrupted), previous)
    if not writer:
        return EXIT_DEVICE_LOST if lost else EXIT_INTERRUPTED if interrupted else 0

    from .summary import print_summary

    all_rows = read_rows(results_path)
    print_summary(all_rows, console)
    again = resume_command(equivalent, out)
    if lost:
        console.print(f"[red]Stopped: {lost}[/]\nEvery finished row is in {results_path}; continue in a fresh process "
                      "with the command below (leave the failing point out if it fails again):")
        console.print(again, soft_wrap=True, markup=False, highlight=False)
        return EXIT_DEVICE_LOST
    if interrupted:
        console.print(f"[yellow]Interrupted.[/] {sum(counts.values())} rows written to {results_path}; "
                      f"chart them with lighthouse-bench plot {results_path}; continue with:", soft_wrap=True)
        console.print(again, soft_wrap=True, markup=False, highlight=False)
        return EXIT_INTERRUPTED
    every = _status_counts(all_rows)
    new = f"{sum(counts.values())} new this run" if resume else ""
    if not any(r.get("kind") == "lighthouse" and r.get("status") == "ok" for r in all_rows):
        reasons = sorted({r.get("reason") or r.get("status") for r in all_rows if r.get("kind") == "lighthouse"})
        console.print(f"[red]no row ran: no Lighthouse row is ok ({_counts(every)}); {'; '.join(reasons[:3])}[/]",
                      soft_wrap=True)
        console.print(f"results: {results_path}  ({_counts(every)}{'; ' + new if new else ''})")
        usage = set(every) <= {"invalid", "unsupported"}  # nothing here can run it: the options, not a failure
        return EXIT_NOTHING_RAN if usage else EXIT_FAILED
    if plot:
        from .plots import make_charts

        try:
            for path in make_charts(results_path):
                console.print(f"chart: {path}")
        except Exception as err:  # noqa: BLE001 - the measurements are safe on disk; say so and carry on
            console.print(f"[red]charts failed ({type(err).__name__}: {err}); the results are complete, "
                          f"retry with lighthouse-bench plot {results_path}[/]")
    console.print(f"results: {results_path}  ({_counts(every) or 'no rows'}{'; ' + new if new else ''})")
    return 0


def _status_counts(rows: Sequence[dict]) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for r in rows:
        counts[r.get("status") or "?"] = counts.get(r.get("status") or "?", 0) + 1
    return counts


def resume_command(equivalent: Optional[Sequence[str]], out: Path) -> str:
    """The exact command that continues this sweep: the options as given, with --out and --resume."""
    import shlex

    args = list(equivalent or ["lighthouse-bench", "sweep"])
    kept, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == "--out":
            skip = True
        elif a != "--resume":
            kept.append(a)
    return shlex.join(kept + ["--out", str(out), "--resume"])


#: Option values --resume must find unchanged in machine.json (everything but where the output goes).
RESUME_IGNORES = ("out", "resume")


def check_same_sweep(previous: Optional[dict], options: dict, machine_path: Path) -> None:
    """--resume continues the sweep recorded in machine.json: refuse options that would plan another one (its
    rows would be appended to the same results.csv)."""
    recorded = (previous or {}).get("options") or {}
    if not recorded:
        return  # an older or missing machine.json: nothing to compare with (prepare_out_dir checks the CSV)
    differ = [f"{k} {_show(options.get(k))} (recorded: {_show(recorded.get(k))})" for k in sorted(set(options) | set(recorded))
              if k not in RESUME_IGNORES and k in recorded and _show(options.get(k)) != _show(recorded.get(k))]
    if differ:
        command = (previous or {}).get("equivalent_command") or (previous or {}).get("command") or "?"
        raise SweepError(f"--resume: the options differ from the sweep recorded in {machine_path}: "
                         f"{'; '.join(differ)}. Resume with the recorded options ({command}) or use another --out")


def _show(value) -> str:
    import json

    return json.dumps(value, sort_keys=True, default=str)


def _counts(counts: Dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(counts.items()))


def describe(spec: SweepSpec, console: Optional[Console] = None) -> List[Task]:
    """--dry-run: the plan without running it (impls and baselines as they would be chosen here)."""
    console = console or make_console()
    bench = runner.Bench(spec.device, spec.seed, spec.warmup, spec.rep, spec.min_rep, spec.max_seconds)
    impls, baselines = resolve_impls(spec, bench)
    tasks = points.plan_tasks(spec, impls, baselines)
    invalid = [t for t in tasks if t.invalid]
    console.print(f"suite={spec.suite or 'default'} device={spec.device} impl={','.join(impls)} "
                  f"baseline={','.join(baselines)} pass={','.join(spec.passes)} floor={spec.floor} "
                  f"cuda_graph={spec.cuda_graph} "
                  f"warmup={spec.warmup} rep={spec.rep} min_rep={spec.min_rep} max_seconds={spec.max_seconds}")
    for p in spec.points:
        try:
            note = f"S={p.plan().selected_len}"
        except ValueError as err:
            note = f"invalid: {err}"
        console.print(f"  {p.shape.label()}  L{p.levels} p{p.pooling} k{p.topk} {p.scorer}  {note}", highlight=False)
    console.print(f"{len(spec.points)} points, {len(tasks)} rows ({len(invalid)} invalid)")
    return tasks
