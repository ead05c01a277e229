"""`lighthouse-bench sweep`: time Lighthouse against dense SDPA over a grid, one row per task.

The grid becomes tasks (harness.points), runner turns each task into a measurement and make_row into a row
of results.csv (tables.SWEEP); the harness's row loop writes the rows, resumes, survives Ctrl-C and draws
the charts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from rich.console import Console

from ..harness import flops, points, tables
from ..harness.console import make_console
from ..harness.loop import Item, RowLoop, RunError
from ..harness.points import SweepSpec, Task
from ..harness.tables import BASELINES, SWEEP
from . import runner
from .result import Result

RESULTS = "results.csv"


class Medians:
    """Medians measured so far (this run or the resumed file), per clock: dense baselines per (shape, pass, impl),
    the floor per (point, pass). A dense point is measured once per sweep and serves every Lighthouse point."""

    def __init__(self):
        self.dense: Dict[Tuple, float] = {}
        self.floor: Dict[Tuple, float] = {}

    @staticmethod
    def _key(row: dict) -> Tuple[str, ...]:
        return tables.row_key({**row, "impl": "", "levels": "", "pooling": "", "topk": "", "scorer": "", "rope": ""})

    def add(self, row: dict) -> None:
        if row.get("status") != "ok":
            return
        for clock in tables.CLOCKS:
            ms = tables.num(row.get(tables.clock_column("median_ms", clock)))
            if ms is None:
                continue
            if row["kind"] == "dense":
                self.dense[(self._key(row), row["impl"], clock)] = ms
            elif row["kind"] == "floor":
                self.floor[(tables.row_key({**row, "impl": ""}), clock)] = ms

    def baseline(self, row: dict, impl: str, clock: str = tables.LAUNCHED) -> Optional[float]:
        return self.dense.get((self._key(row), impl, clock))

    def floor_of(self, row: dict, clock: str = tables.LAUNCHED) -> Optional[float]:
        """The floor is timed eagerly (one SDPA launch), also beside graphed Lighthouse rows."""
        return self.floor.get((tables.row_key({**row, "impl": "", "cuda_graph": "False"}), clock))


def make_row(task: Task, device: str, seed: int, result: Result, medians: Medians) -> dict:
    """One CSV row: the task's parameters, the measurement and the numbers derived from it."""
    s, p = task.shape, task.point
    row = {
        "impl": task.impl,
        "kind": task.kind,
        "pass": task.pass_,
        "device": device,
        **s.cells(),
        **tables.config_cells(p),
        "s_sel": task.s_sel,
        "sdpa_backend": result.sdpa_backend or None,
        "cuda_graph": task.cuda_graph,
        "status": result.status,
        "reason": result.reason or None,
        "seed": seed,
    }
    t = result.timing
    if result.status == "ok" and t is not None:
        ms = t.median_ms
        row.update(
            median_ms=ms,
            p20_ms=t.p20_ms,
            p80_ms=t.p80_ms,
            reps=len(t.samples_ms),
            first_call_ms=t.first_call_ms,
            peak_mem_gib=t.peak_bytes / 2**30 if t.peak_bytes is not None else None,
        )
        ahead = dict(zip(tables.HOST_AHEAD_TIMES, (t.host_ahead_median_ms, t.host_ahead_p20_ms, t.host_ahead_p80_ms)))
        row.update(
            ahead,
            **{
                tables.HOST_MS: t.host_ms_per_call,
                tables.HOST_AHEAD_TIMEOUTS: t.host_ahead_timeouts if t.host_ahead_ms else None,
            },
        )
        row["dense_tflops"] = flops.dense_equivalent_tflops(s.n, s.batch, s.heads, s.head_dim, task.pass_, ms)
        s_eff = task.s_sel if task.kind != "dense" else s.n
        row["eff_tflops"] = flops.effective_tflops(s_eff, s.batch, s.heads, s.head_dim, task.pass_, ms)
        if task.kind == "lighthouse":
            key_row = {k: str(v) if v is not None else "" for k, v in row.items()}
            for clock in tables.CLOCKS:  # Lighthouse against dense and the floor on the same clock only
                own = tables.num(row.get(tables.clock_column("median_ms", clock)))
                for impl in BASELINES.values():
                    row[tables.clock_column(f"speedup_vs_{impl}", clock)] = flops.speedup(
                        medians.baseline(key_row, impl, clock), own
                    )
                row[tables.clock_column("floor_ratio", clock)] = flops.floor_ratio(
                    own, medians.floor_of(key_row, clock)
                )
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


def _nothing_can_run(tasks: Sequence[Task]) -> Optional[str]:
    """Why no Lighthouse row of the plan can run (every point invalid), or None. Checked before anything runs,
    so that `--topk 100` is a usage error, not a dense baseline timed for nothing."""
    lighthouse = [t for t in tasks if t.kind == "lighthouse"] or list(tasks)
    if lighthouse and all(t.invalid for t in lighthouse):
        return f"no row of this sweep can run: every Lighthouse point is invalid ({lighthouse[0].invalid})"
    return None


def _lighthouse_ok(rows: Sequence[dict]) -> bool:
    return any(r.get("kind") == "lighthouse" and r.get("status") == "ok" for r in rows)


def run(
    spec: SweepSpec,
    out: Path,
    *,
    resume: bool = False,
    argv: Optional[Sequence[str]] = None,
    command_line: Optional[Sequence[str]] = None,
    console: Optional[Console] = None,
    plot: bool = True,
    cp: int = 1,
    resumable: bool = True,
) -> int:
    """Run the sweep into `out` through the harness's row loop; returns the exit code (0; 130 on Ctrl-C; 1 if
    the CUDA context died or no Lighthouse row ran ok; 2 if nothing could run here, every row invalid or
    unsupported). Raises RunError (a ValueError naming the option) before anything runs for a grid of invalid
    points, a --resume with other options, a bad --out. command_line: the command as given, for the resume
    hint (default: as given on the command line); resumable=False when another command (check) runs the
    sweep: it has no --resume to suggest. cp > 1: context parallelism over cp ranks (this is one
    of the torchrun processes; see bench/cp.py)."""
    ctx = None
    if cp > 1:
        from . import cp as cp_sweep

        try:
            ctx = cp_sweep.start(cp, spec.device)
        except ValueError as err:
            raise RunError(str(err)) from None
    writer = ctx is None or ctx.writer  # only rank 0 writes files and prints
    bench = runner.Bench(spec.device, spec.seed, spec.warmup, spec.rep, spec.min_rep, spec.max_seconds)
    bench.cp = ctx
    impls, baselines = resolve_impls(spec, bench)
    tasks = cp_sweep.plan(spec, impls, cp) if ctx else points.plan_tasks(spec, impls, baselines)
    if ctx:
        baselines = [cp_sweep.ring_impl(cp)]
    why = _nothing_can_run(tasks)
    if why:
        raise RunError(why)
    options = {**spec.options, "impl": impls, "baseline": baselines, "cp": cp}
    loop = RowLoop(
        "sweep",
        out,
        SWEEP,
        RESULTS,
        resume=resume,
        options=options,
        argv=argv,
        command_line=command_line,
        resumable=resumable,
        console=console,
        writer=writer,
    )
    medians = Medians()
    refusal, done_keys = None, []
    try:  # rank 0 alone reads and rewrites --out; the other ranks learn the outcome from it
        for key, row in loop.prepare().items():
            done_keys.append(key)
            medians.add(row)
    except ValueError as err:
        refusal = err
    if ctx is not None:  # every rank raises the same refusal or skips the same rows: none waits in a collective
        refusal, done_keys = cp_sweep.from_writer((refusal, done_keys), ctx)
    if refusal is not None:
        raise refusal
    done = set(done_keys)
    todo = [t for t in tasks if t.key(spec.device) not in done]
    info = loop.begin()
    skipped = len(tasks) - len(todo)
    loop.console.print(
        f"[bold]lighthouse-bench sweep[/] suite={spec.suite or 'default'} device={spec.device} "
        f"{info.get('gpu') or info.get('cpu')}: {len(spec.points)} points, {len(tasks)} rows"
        + (f", {skipped} already done (--resume)" if skipped else "")
        + f" -> {out}"
    )
    floor_cache: Dict[Tuple, Result] = {}

    def rows_of(task: Task):
        floor_key = (task.shape.batch, task.shape.heads, task.shape.head_dim, task.shape.dtype, task.s_sel, task.pass_)
        if task.kind == "floor" and floor_key in floor_cache:
            result = floor_cache[floor_key]  # same S, same shape: the same measurement
        else:
            result = runner.execute(task, bench)
        if task.kind == "floor":
            floor_cache[floor_key] = result
        row = make_row(task, spec.device, spec.seed, result, medians)
        medians.add({k: tables.cell(v) for k, v in row.items()})
        yield row

    items = (Item(t.label(), lambda t=t: rows_of(t), weight=_weight(t)) for t in todo)
    try:
        outcome = loop.run(items, total=sum(_weight(t) for t in todo), device=bench.device, eta=True)
    finally:
        bench.release()

    from .summary import print_summary

    def charts(path: Path):
        from .plots import make_charts

        return make_charts(path) if plot else []

    return loop.finish(
        outcome, summary=lambda rows: print_summary(rows, loop.console), charts=charts, ran=_lighthouse_ok
    )


def describe(spec: SweepSpec, console: Optional[Console] = None) -> List[Task]:
    """--dry-run: the plan without running it (impls and baselines as they would be chosen here)."""
    console = console or make_console()
    bench = runner.Bench(spec.device, spec.seed, spec.warmup, spec.rep, spec.min_rep, spec.max_seconds)
    impls, baselines = resolve_impls(spec, bench)
    tasks = points.plan_tasks(spec, impls, baselines)
    invalid = [t for t in tasks if t.invalid]
    console.print(
        f"suite={spec.suite or 'default'} device={spec.device} impl={','.join(impls)} "
        f"baseline={','.join(baselines)} pass={','.join(spec.passes)} floor={spec.floor} "
        f"cuda_graph={spec.cuda_graph} "
        f"warmup={spec.warmup} rep={spec.rep} min_rep={spec.min_rep} max_seconds={spec.max_seconds}"
    )
    for p in spec.points:
        try:
            note = f"S={p.plan().selected_len}"
        except ValueError as err:
            note = f"invalid: {err}"
        rope = "" if p.rope == "pre" else f" rope={p.rope}"
        console.print(
            f"  {p.shape.label()}  L{p.levels} p{p.pooling} k{p.topk} {p.scorer}{rope}  {note}", highlight=False
        )
    console.print(f"{len(spec.points)} points, {len(tasks)} rows ({len(invalid)} invalid)")
    return tasks
