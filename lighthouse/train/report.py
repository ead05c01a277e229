"""Tables of a train folder: the console summaries and the Markdown section `lighthouse-bench report` embeds.

`train_section(folder)` reads train.csv (throughput points) and curve.csv (two-stage recipe) if present and
returns Markdown plus the chart files beside them; everything is derived from those two files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence

from ..harness.tables import TRAIN, TRAIN_CURVE, fmt, latest_rows, num, read_rows


def _gib(x) -> str:
    return "" if x is None else f"{x:.1f}"


def _pct(x) -> str:
    return "" if x is None else f"{100 * x:.0f}%"


def _kilo(x) -> str:
    return "" if x is None else f"{x / 1e3:.1f}k"


THROUGHPUT_HEADER = (
    "preset",
    "N",
    "attention",
    "tokens/s",
    "speedup vs dense",
    "step (ms)",
    "attention share",
    "peak memory (GiB)",
    "MFU",
    "first step (s)",
    "status",
)


def throughput_rows(results: Path) -> List[List[str]]:
    rows = latest_rows(read_rows(results, TRAIN)[0], TRAIN)
    rows.sort(
        key=lambda r: (
            r["preset"],
            int(r["n"]),
            r["attention"] != "dense",
            r.get("topk") or "",
            r.get("rope") == "post",
            r.get("recompute") != "1",
        )
    )
    table = []
    for r in rows:
        attention = r["attention"] + (
            f" k={r['topk']} L={r['levels']} p={r['pooling']} {r['scorer']}" if r["attention"] == "lighthouse" else ""
        )
        if r["attention"] == "lighthouse" and r.get("rope") not in (None, "", "pre"):
            attention += f" rope={r['rope']}"
        if r["attention"] == "lighthouse" and r.get("recompute") == "0":
            attention += " (no recompute)"
        ok = r["status"] == "ok"
        speed = num(r.get("speedup_vs_dense"))
        table.append(
            [
                r["preset"],
                r["n"],
                attention,
                _kilo(num(r["tokens_per_s"])) if ok else "",
                f"{speed:.2f}x" if speed else "",
                fmt(num(r["median_step_ms"]), 4) if ok else "",
                _pct(num(r["attention_share"])),
                _gib(num(r["peak_mem_gib"])),
                _pct(num(r["mfu"])),
                fmt(num(r["first_step_s"])),
                r["status"] + (f": {r['reason'][:60]}" if not ok and r.get("reason") else ""),
            ]
        )
    return table


def recipe_summary(curve: Path) -> List[dict]:
    """Per arm: steps, tokens, final validation loss (the last evaluated step) and training wall time."""
    rows = read_rows(curve, TRAIN_CURVE)[0]
    arms: Dict[str, dict] = {}
    for r in sorted(rows, key=lambda r: int(r["step"])):
        a = arms.setdefault(r["arm"], {"arm": r["arm"], "switch_step": None})
        a.update(steps=int(r["step"]), tokens=int(r["tokens"]), wall_s=num(r["elapsed_s"]))
        if num(r["val_loss"]) is not None:
            a["final_val_loss"] = num(r["val_loss"])
        if r["attention"] == "lighthouse":
            a["switch_step"] = int(r["step"])
    return list(arms.values())


RECIPE_HEADER = (
    "arm",
    "final validation loss",
    "vs dense",
    "training wall time (s)",
    "steps",
    "tokens",
    "switch to dense after step",
)


def recipe_rows(summaries: Sequence[dict]) -> List[List[str]]:
    dense = next((s.get("final_val_loss") for s in summaries if s["arm"] == "dense"), None)
    table = []
    for s in summaries:
        loss = s.get("final_val_loss")
        gap = f"{100 * (loss - dense) / dense:+.2f}%" if loss is not None and dense and s["arm"] != "dense" else ""
        table.append(
            [
                s["arm"],
                fmt(loss, 4),
                gap,
                fmt(s.get("wall_s"), 4),
                str(s.get("steps", "")),
                str(s.get("tokens", "")),
                str(s.get("switch_step") or ""),
            ]
        )
    return table


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass
class TrainSection:
    markdown: str
    charts: List[Path] = field(default_factory=list)


def train_section(folder: Path, heading: str = "## Training") -> TrainSection:
    """Markdown tables (throughput, two-stage recipe) and the chart paths of a train output folder."""
    folder = Path(folder)
    parts, charts = [heading], []
    results, curve = folder / "train.csv", folder / "curve.csv"
    if not results.exists() and not curve.exists():
        raise ValueError(f"{folder} holds neither train.csv nor curve.csv (not a lighthouse-bench train folder)")
    if results.exists():
        parts += [
            "",
            "### Throughput",
            "",
            _markdown(THROUGHPUT_HEADER, throughput_rows(results)),
            "",
            "tokens/s: median optimizer step after warm-up; attention share: time inside the attention calls "
            "(forward, recomputation and backward) over the step; MFU: model FLOPs (6 x non-embedding "
            "parameters x tokens + causal attention over N, or over S for Lighthouse layers) over the bf16 peak.",
        ]
        charts += [p for p in (folder / "train_tokens_per_s.png",) if p.exists()]
    if curve.exists():
        parts += ["", "### Two-stage recipe", "", _markdown(RECIPE_HEADER, recipe_rows(recipe_summary(curve)))]
        charts += [p for p in (folder / "train_loss.png",) if p.exists()]
    for chart in charts:
        if chart.suffix == ".png":
            parts += ["", f"![{chart.stem}]({chart.name})"]
    return TrainSection("\n".join(parts) + "\n", charts)


def _rich(header: Sequence[str], rows: Sequence[Sequence[str]], title: str):
    from rich.table import Table

    table = Table(title=title)
    for h in header:
        table.add_column(h)
    for row in rows:
        table.add_row(*[str(c) for c in row])
    return table


def summary_table(results: Path):
    return _rich(THROUGHPUT_HEADER, throughput_rows(results), "lighthouse-bench train: throughput")


def recipe_table(summaries: Sequence[dict]):
    return _rich(RECIPE_HEADER, recipe_rows(summaries), "lighthouse-bench train: two-stage recipe")
