"""The throughput run: points in order, each row written as it finishes, --resume, machine.json, progress.

Same conventions as `sweep`: train.csv (the TRAIN table of lighthouse.harness.tables) gets one row per point the
moment it is measured; oom and error rows are retried by --resume, ok / invalid rows are not; machine.json
records the machine, the code and the options; one point never stops the run (only Ctrl-C or a lost CUDA
context do, and every finished row stays on disk).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..harness import machine
from ..harness.tables import FINAL, TRAIN, append_row, claim_results_file, num, read_rows
from ..harness.tables import row_key as _row_key
from .throughput import RunOptions, TrainPoint, measure_point, point_columns

RESULTS, MACHINE = "train.csv", "machine.json"
EXIT_INTERRUPTED, EXIT_DEVICE_LOST = 130, 1


class TrainRunError(ValueError):
    """The run cannot start (output folder in the way, nothing to resume)."""


def row_key(row: dict) -> Tuple[str, ...]:
    return _row_key(row, TRAIN)


def latest_rows(rows: Sequence[dict]) -> List[dict]:
    """One row per point: the last one written (a resumed run appends the retried points)."""
    last: Dict[Tuple[str, ...], dict] = {}
    for row in rows:
        last[row_key(row)] = row
    return list(last.values())


def dense_partner(row: dict) -> Tuple[str, ...]:
    """The key of the dense row at the same preset, shape, N and device (Lighthouse columns blank)."""
    blank = {c: None for c in ("levels", "pooling", "topk", "scorer", "dense_layers", "recompute")}
    return row_key({**row, **blank, "attention": "dense"})


def _device_lost(device) -> bool:
    if device.type != "cuda":
        return False
    import torch

    try:
        torch.cuda.synchronize(device)
        return False
    except Exception:  # noqa: BLE001 - a sticky CUDA error: nothing else can run in this process
        return True


def run_points(points: Sequence[TrainPoint], opts: RunOptions, out: Path, *, resume: bool = False,
               plot: bool = True, argv=None, options: Optional[dict] = None, console=None,
               skip: Optional[Callable[[TrainPoint, List[dict]], Optional[str]]] = None) -> int:
    """Measure every point into out/train.csv; returns the exit code (0, 130 Ctrl-C, 1 CUDA context lost).

    `skip(point, rows so far)` may return a reason to leave a point out (no row is written; scripts use it
    for a time budget); the reason is printed."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ..bench.sweep import make_console

    console = console or make_console()
    results = claim_results_file(out, RESULTS, resume, TrainRunError)
    Path(out).mkdir(parents=True, exist_ok=True)

    done, dense_tps, written = set(), {}, []
    if resume:
        good, _torn = read_rows(results, TRAIN)
        written = latest_rows(good)
        for row in written:
            if row.get("status") in FINAL:
                done.add(row_key(row))
            if row.get("status") == "ok" and row.get("attention") == "dense":
                dense_tps[row_key(row)] = num(row.get("tokens_per_s"))
    todo = [p for p in points if row_key(point_columns(p, opts)) not in done]

    machine_path = Path(out) / MACHINE
    previous = machine.read(machine_path) if resume else None
    info = machine.collect(argv, options or {})
    machine.write(machine_path, info, previous)
    console.print(f"[bold]lighthouse-bench train[/] device={opts.device} {info.get('gpu') or info.get('cpu')}: "
                  f"{len(points)} points" + (f", {len(points) - len(todo)} already done (--resume)" if resume else "")
                  + f" -> {out}")
    start, interrupted, lost = time.perf_counter(), False, False
    counts: Dict[str, int] = {}
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                        TimeElapsedColumn(), console=console)
    try:
        with progress:
            bar = progress.add_task("starting", total=len(todo) or 1)
            for point in todo:
                progress.update(bar, description=point.label())
                reason = skip(point, written) if skip else None
                if reason:
                    counts["skipped"] = counts.get("skipped", 0) + 1
                    console.print(f"  {point.label()}: skipped ({reason})", highlight=False)
                    progress.update(bar, advance=1)
                    continue
                row = measure_point(point, opts)
                if row.get("status") == "ok":
                    if point.attention == "dense":
                        dense_tps[row_key(row)] = row["tokens_per_s"]
                    else:
                        base = dense_tps.get(dense_partner(row))
                        row["speedup_vs_dense"] = row["tokens_per_s"] / base if base else None
                append_row(results, TRAIN, row)
                written.append({k: "" if v is None else str(v) for k, v in row.items()})
                counts[row["status"]] = counts.get(row["status"], 0) + 1
                progress.update(bar, advance=1)
                console.print(f"  {point.label()}: {row['status']}"
                              + (f" {row['tokens_per_s']:.0f} tokens/s, step {row['median_step_ms']:.0f} ms"
                                 if row["status"] == "ok" else f" ({row.get('reason', '')[:120]})"), highlight=False)
                if row["status"] == "error" and _device_lost(opts.device):
                    lost = True
                    break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        machine.write(machine_path, machine.finish(info, time.perf_counter() - start, interrupted), previous)

    from .report import summary_table

    console.print(summary_table(results))
    if lost:
        console.print(f"[red]The CUDA context is lost; every finished row is in {results}. Continue in a fresh "
                      f"process with --resume --out {out}.[/]")
        return EXIT_DEVICE_LOST
    if interrupted:
        console.print(f"[yellow]Interrupted.[/] Continue with --resume --out {out}.")
        return EXIT_INTERRUPTED
    if plot:
        from .plots import throughput_chart

        try:
            for path in throughput_chart(results):
                console.print(f"chart: {path}")
        except Exception as err:  # noqa: BLE001 - the rows are safe on disk
            console.print(f"[red]chart failed ({type(err).__name__}: {err})[/]")
    console.print(f"results: {results}  ({' '.join(f'{k}={v}' for k, v in sorted(counts.items())) or 'nothing new'})")
    return 0
