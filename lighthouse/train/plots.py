"""Charts of a train folder: tokens/s against N (throughput) and the two-stage loss curves (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from ..harness.tables import TRAIN, TRAIN_CURVE, latest_rows, num, read_rows


def _save(fig, stem: Path) -> List[Path]:
    path = stem.with_suffix(".png")
    fig.savefig(path, dpi=130, bbox_inches="tight")
    return [path]


def throughput_chart(results: Path, out: Optional[Path] = None) -> List[Path]:
    """tokens/s against N, one line per (preset, attention); oom points marked with an x on the axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = Path(results)
    rows = latest_rows(read_rows(results, TRAIN)[0], TRAIN)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    series = {}
    for row in rows:
        label = f"{row['preset']} {row['attention']}" + (
            f" k={row['topk']}" if row["attention"] == "lighthouse" else ""
        )
        if row["attention"] == "lighthouse" and row.get("rope") not in (None, "", "pre"):
            label += f" rope={row['rope']}"  # one line per placement
        series.setdefault(label, []).append(row)
    for label, pts in sorted(series.items()):
        ok = sorted((int(r["n"]), num(r["tokens_per_s"])) for r in pts if r["status"] == "ok")
        line = ax.plot([n for n, _ in ok], [t for _, t in ok], marker="o", label=label)[0] if ok else None
        ooms = [int(r["n"]) for r in pts if r["status"] == "oom"]
        if ooms:
            ax.scatter(
                ooms,
                [0] * len(ooms),
                marker="x",
                color=line.get_color() if line else "red",
                label=f"{label}: out of memory",
            )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("sequence length N (tokens)")
    ax.set_ylabel("training tokens/s")
    ax.set_title("Training throughput (median step, after warm-up)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    paths = _save(fig, Path(out or results.parent) / "train_tokens_per_s")
    plt.close(fig)
    return paths


def loss_chart(curve: Path, switch_step: Optional[int], out: Optional[Path] = None) -> List[Path]:
    """Train (thin) and validation (markers) loss of each arm against the step; the dense switch marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = Path(curve)
    rows = read_rows(curve, TRAIN_CURVE)[0]
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for arm in sorted({r["arm"] for r in rows}):
        mine = sorted((r for r in rows if r["arm"] == arm), key=lambda r: int(r["step"]))
        line = ax.plot(
            [int(r["step"]) for r in mine],
            [num(r["train_loss"]) for r in mine],
            lw=0.8,
            alpha=0.5,
            label=f"{arm}: train",
        )[0]
        val = [(int(r["step"]), num(r["val_loss"])) for r in mine if num(r["val_loss"]) is not None]
        ax.plot(
            [s for s, _ in val],
            [v for _, v in val],
            marker="o",
            ms=3,
            color=line.get_color(),
            label=f"{arm}: validation",
        )
    if switch_step is not None:
        ax.axvline(switch_step, color="gray", ls="--", lw=1)
        ax.text(switch_step, ax.get_ylim()[1], " switch to dense", va="top", fontsize=8, color="gray")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats per byte)")
    ax.set_title("Two-stage recipe: Lighthouse then dense vs dense all the way")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    paths = _save(fig, Path(out or curve.parent) / "train_loss")
    plt.close(fig)
    return paths
