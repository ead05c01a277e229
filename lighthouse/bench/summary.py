"""The table printed at the end of a sweep, read back from results.csv (what is on disk is what is shown)."""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from rich.console import Console
from rich.table import Table

from ..harness.baselines import short as baseline_name
from ..harness.failures import one_line
from ..harness.tables import BASELINES, PASSES, SWEEP, fmt, fmt_size, num as _num

#: One table line per Lighthouse point and implementation (the passes go side by side).
POINT_COLUMNS = tuple(c for c in SWEEP.key if c not in ("pass", "device", "cuda_graph")) + ("cuda_graph",)


def _cell(values: List[Optional[float]], spec: str) -> str:
    return "/".join(fmt(v, spec=spec) for v in values)


def summary_table(rows: List[dict]) -> Optional[Table]:
    """Per Lighthouse point and implementation: median ms per pass, speedup vs each baseline (per pass,
    slash-separated), the floor ratio and the status. None when the file has no Lighthouse rows."""
    lh = [r for r in rows if r.get("kind") == "lighthouse"]
    if not lh:
        return None
    passes = [p for p in PASSES if any(r["pass"] == p for r in lh)]
    points: Dict[Tuple, Dict[str, dict]] = {}
    for r in lh:
        points.setdefault(tuple(r[c] if c in r else SWEEP.default_of(c, r) for c in POINT_COLUMNS), {})[r["pass"]] = r
    baselines = [b for b in BASELINES.values() if any(_num(r.get(f"speedup_vs_{b}")) is not None for r in lh)]
    shapes = {(r["dtype"], r["batch"], r["heads"], r["kv_heads"], r["head_dim"]) for r in lh}
    ropes = {r.get("rope") or "pre" for r in lh}  # the column only when the file holds both placements

    per = "/".join(passes)
    ahead = [b for b in baselines if any(_num(r.get(f"host_ahead_speedup_vs_{b}")) is not None for r in lh)]
    table = Table(
        title=f"Lighthouse vs dense SDPA (speedups = baseline ms / Lighthouse ms, per pass {per}; as launched, "
        f"and host ahead where marked: the kernels alone, both sides on the same clock)"
    )
    for name in (
        ["N"]
        + (["shape"] if len(shapes) > 1 else [])
        + ["L", "p", "k", "scorer"]
        + (["rope"] if len(ropes) > 1 else [])
        + ["impl", "S"]
    ):
        table.add_column(name, justify="right" if name in ("N", "L", "p", "k", "S") else "left", overflow="fold")
    for p in passes:
        table.add_column(f"{p} ms", justify="right", overflow="fold")
    for b in baselines:
        table.add_column(f"vs {baseline_name(b)}", justify="right", overflow="fold")
    for b in ahead:
        table.add_column(f"vs {baseline_name(b)} host ahead", justify="right", overflow="fold")
    table.add_column("floor ratio", justify="right", overflow="fold")
    table.add_column("status", overflow="fold")

    def order(item):
        k = item[0]
        return (
            k[1],
            int(k[3]),
            int(k[4]),
            int(k[5]),
            int(k[6]),
            int(k[2]),
            int(k[7]),
            int(k[8]),
            int(k[9]),
            k[10],
            k[0],
            k[12],
            k[11] != "pre",
        )

    for key, by_pass in sorted(points.items(), key=order):
        impl, dtype, n, b, h, hkv, d, L, p, k, scorer, rope, graphed = key
        any_row = next(iter(by_pass.values()))
        rows_ = [by_pass.get(ps) for ps in passes]
        cells = [fmt_size(int(n))] + ([f"{dtype} B{b} H{h}/{hkv} D{d}"] if len(shapes) > 1 else [])
        cells += [L, p, k, scorer] + ([rope] if len(ropes) > 1 else [])
        cells += [
            impl.removeprefix("lighthouse_") + (" graph" if graphed == "True" else ""),
            any_row.get("s_sel") or "-",
        ]
        cells += [_cell([_num(r.get("median_ms")) if r else None], ".3f") for r in rows_]
        cells += [_cell([_num(r.get(f"speedup_vs_{bl}")) if r else None for r in rows_], ".2f") for bl in baselines]
        cells += [
            _cell([_num(r.get(f"host_ahead_speedup_vs_{bl}")) if r else None for r in rows_], ".2f") for bl in ahead
        ]
        cells.append(_cell([_num(r.get("floor_ratio")) if r else None for r in rows_], ".2f"))
        bad = [(ps, r) for ps, r in zip(passes, rows_) if r and r["status"] != "ok"]
        if not bad:
            status = "ok"
        elif len({r["status"] for _, r in bad}) == 1 and len(bad) == len([r for r in rows_ if r]):
            r = bad[0][1]
            status = f"{r['status']}: {one_line(r.get('reason') or '', 60)}"
        else:
            status = ", ".join(f"{r['status']} ({ps})" for ps, r in bad)
        style = None if status == "ok" else ("yellow" if status.startswith(("invalid", "unsupported")) else "red")
        table.add_row(*[str(c) for c in cells], status, style=style)
    return table


def print_summary(rows: List[dict], console: Console) -> None:
    table = summary_table(rows)
    if table is None:
        console.print("no Lighthouse rows to summarise")
        return
    console.print(table)
    dense = [r for r in rows if r.get("kind") == "dense"]
    bad = [r for r in dense if r["status"] != "ok"]
    if dense:
        note = f"dense baseline rows: {len(dense) - len(bad)} ok"
        if bad:
            note += ", " + ", ".join(
                f"{r['impl']} N={fmt_size(int(r['n']))} {r['pass']}: {r['status']}" for r in bad[:8]
            )
            note += " ..." if len(bad) > 8 else ""
        console.print(note, highlight=False)
