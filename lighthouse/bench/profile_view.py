"""What `lighthouse-bench profile` shows: a rich table per point and a stacked-bar chart of the stages."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from rich.console import Console
from rich.table import Table

from ..harness.tables import (
    HOST_MS,
    PROFILE_HOST_AHEAD_MS as AHEAD,
    PROFILE_HOST_AHEAD_RATIO as AHEAD_RATIO,
    PROFILE_MEASURED as MEASURED,
    PROFILE_SUMMARY as SUMMARY_STAGES,
    fmt,
    num,
)


def _f(x, spec):
    return fmt(num(x), spec=spec)


def print_tables(rows: List[dict], console: Console) -> None:
    """One table per point: stage, ms on both clocks (host ahead: the kernels alone; as launched: with the GPU's
    waits for the host) and the host's time to issue it, share, GB moved, GFLOP, floor, distance to the floor on
    both clocks. A file written before the second clock shows '-' there."""
    points = {}
    for r in rows:
        points.setdefault(
            (r["impl"], r["n"], r["topk"], r["levels"], r["pooling"], r["scorer"], r.get("rope") or "pre", r["dtype"]),
            [],
        ).append(r)
    for (impl, n, topk, lv, p, scorer, rope, dtype), rs in points.items():
        rope = "" if rope == "pre" else f" rope={rope}"
        t = Table(title=f"{impl}: N={n} k={topk} L{lv} p{p} {scorer}{rope} {dtype}, S={rs[0]['s_sel']}")
        columns = ("pass", "stage", "ms host ahead", "ms as launched", "host ms", "share", "GB moved", "GFLOP")
        for col in (*columns, "floor ms", "floor", "ahead / floor", "launched / floor"):
            t.add_column(col, justify="left" if col in ("pass", "stage", "floor") else "right")
        for r in rs:
            style = "bold" if r["stage"] in SUMMARY_STAGES else None
            share = "-" if r["share"] in (None, "") else f"{100 * float(r['share']):.1f}%"
            t.add_row(
                r["pass"],
                r["stage"],
                _f(r.get(AHEAD), ".4g"),
                _f(r["ms"], ".4g"),
                _f(r.get(HOST_MS), ".3g"),
                share,
                _f(float(r["bytes"]) / 1e9, ".3f"),
                _f(float(r["flops"]) / 1e9, ".1f"),
                _f(r["floor_ms"], ".4g"),
                r["floor_kind"],
                _f(r.get(AHEAD_RATIO), ".3g"),
                _f(r["floor_ratio"], ".3g"),
                style=style,
            )
        console.print(t)


def chart_title(rows: List[dict], device_name: Optional[str] = None) -> str:
    """What the chart measured and where: the device (its model when known) and the dtypes."""
    devices = sorted({str(r.get("device") or "") for r in rows} - {""})
    dtypes = sorted({str(r.get("dtype") or "") for r in rows} - {""})
    where = device_name or ", ".join(devices) or "unknown device"
    return f"Lighthouse: time per stage ({where}, {', '.join(dtypes) or 'unknown dtype'})"


def stacked_chart(
    rows: List[dict], out_dir: Path, name: str = "profile", device_name: Optional[str] = None
) -> List[Path]:
    """Stacked bars of stage ms per (point, pass), the whole pass measured end to end as a black tick; on the
    host-ahead clock (the kernels alone) where every row has it, else as launched (files before that clock)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = {}
    for r in rows:
        rope = "" if (r.get("rope") or "pre") == "pre" else f" rope={r['rope']}"  # one bar per placement
        key = f"N={r['n']} k={r['topk']}{rope}\n{r['impl']} {r['pass']}"
        bars.setdefault(key, []).append(r)
    stages = []
    for rs in bars.values():
        for r in rs:
            if r["stage"] not in SUMMARY_STAGES and r["stage"] not in stages:
                stages.append(r["stage"])
    timed = [r for r in rows if r["stage"] not in SUMMARY_STAGES or r["stage"] == MEASURED]
    column = AHEAD if timed and all(num(r.get(AHEAD)) is not None for r in timed) else "ms"
    cmap = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(bars)), 4.8))
    for x, (label, rs) in enumerate(bars.items()):
        bottom = 0.0
        by_stage = {r["stage"]: num(r.get(column)) for r in rs}
        for i, st in enumerate(stages):
            ms = by_stage.get(st)
            if ms is None:
                continue
            ax.bar(
                x,
                ms,
                bottom=bottom,
                color=cmap(i % 10),
                label=st if x == 0 or st not in ax.get_legend_handles_labels()[1] else None,
            )
            bottom += ms
        if MEASURED in by_stage:
            ax.plot(
                [x - 0.4, x + 0.4],
                [by_stage[MEASURED]] * 2,
                color="black",
                lw=2,
                label="whole pass, measured" if x == 0 else None,
            )
    ax.set_xticks(range(len(bars)), list(bars), fontsize=8)
    clock = "host ahead: the kernels alone" if column == AHEAD else "as launched"
    ax.set_ylabel(f"ms ({clock}; median, each stage timed alone)", fontsize=8)
    ax.set_title(chart_title(rows, device_name), fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    ax.legend(uniq.values(), uniq.keys(), fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]
