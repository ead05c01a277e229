"""The throughput run of `lighthouse-bench train`: one row per point, through the harness's row loop.

train.csv (tables.TRAIN) gets one row per point the moment it is measured; the loop owns --out, --resume
(oom and error rows retried, ok / invalid kept), Ctrl-C, a lost CUDA context, machine.json and the chart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..harness.loop import Item, RowLoop
from ..harness.tables import TRAIN, num, row_key
from .throughput import RunOptions, TrainPoint, measure_point, point_columns

RESULTS = "train.csv"


def dense_partner(row: dict) -> Tuple[str, ...]:
    """The key of the dense row at the same preset, shape, N and device (Lighthouse columns blank)."""
    blank = {c: None for c in ("levels", "pooling", "topk", "scorer", "rope", "dense_layers", "recompute")}
    return row_key({**row, **blank, "attention": "dense"}, TRAIN)


def _row_line(row: dict) -> str:
    if row.get("status") == "skipped":
        return ""
    label = f"  {row.get('preset')} {row.get('attention')} N={row.get('n')}: {row['status']}"
    if row["status"] == "ok":
        return label + f" {row['tokens_per_s']:.0f} tokens/s, step {row['median_step_ms']:.0f} ms"
    return label + f" ({str(row.get('reason') or '')[:120]})"


def run_points(
    points: Sequence[TrainPoint],
    opts: RunOptions,
    out: Path,
    *,
    resume: bool = False,
    plot: bool = True,
    argv=None,
    options: Optional[dict] = None,
    console=None,
    skip: Optional[Callable[[TrainPoint, List[dict]], Optional[str]]] = None,
) -> int:
    """Measure every point into out/train.csv; returns the exit code (0; 130 Ctrl-C; 1 CUDA context lost or
    nothing ok; 2 every point invalid). Raises RunError (a ValueError naming --out) before any work.

    `skip(point, rows so far)` may return a reason to leave a point out (no row is written; scripts use it
    for a time budget); the reason is printed."""
    loop = RowLoop(
        "train", out, TRAIN, RESULTS, resume=resume, options=options, argv=argv, console=console, show=_row_line
    )
    kept = loop.prepare()
    written = [dict(r) for r in kept.values()]
    dense_tps: Dict[Tuple[str, ...], Optional[float]] = {
        key: num(r.get("tokens_per_s"))
        for key, r in kept.items()
        if r.get("status") == "ok" and r.get("attention") == "dense"
    }
    todo = [p for p in points if loop.key(point_columns(p, opts)) not in kept]
    info = loop.begin()
    loop.console.print(
        f"[bold]lighthouse-bench train[/] device={opts.device} {info.get('gpu') or info.get('cpu')}: "
        f"{len(points)} points"
        + (f", {len(points) - len(todo)} already done (--resume)" if resume else "")
        + f" -> {out}"
    )

    def rows_of(point: TrainPoint):
        reason = skip(point, written) if skip else None
        if reason:
            loop.console.print(f"  {point.label()}: skipped ({reason})", highlight=False)
            return
        row = measure_point(point, opts)
        if row.get("status") == "ok":
            if point.attention == "dense":
                dense_tps[row_key(row, TRAIN)] = row["tokens_per_s"]
            else:
                base = dense_tps.get(dense_partner(row))
                row["speedup_vs_dense"] = row["tokens_per_s"] / base if base else None
        written.append({k: "" if v is None else str(v) for k, v in row.items()})
        yield row

    items = [Item(p.label(), lambda p=p: rows_of(p), cells=point_columns(p, opts)) for p in todo]
    outcome = loop.run(items, total=len(items), device=opts.device)

    def summary(rows):
        from .report import summary_table

        loop.console.print(summary_table(loop.path))

    def charts(path: Path):
        from .plots import throughput_chart

        return throughput_chart(path) if plot else []

    return loop.finish(outcome, summary=summary, charts=charts)
