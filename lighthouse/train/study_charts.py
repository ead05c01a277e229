"""Charts of a study folder: loss curves with 95% bands over seeds, the recovery curve, stage 1 by sparsity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from .stats import mean_interval
from .study_curves import load_curves, val_curve


def _arm_curve(curves, arm: dict, column: str) -> List[Tuple[int, float]]:
    """An arm's validation points: the trunk's up to the switch, then the branch's (or the job's own)."""
    own = val_curve(curves.get(arm["job_id"], []), column, upto=arm["length"])
    if arm.get("trunk_id") and arm.get("switch_step") is not None:
        trunk = val_curve(curves.get(arm["trunk_id"], []), column, upto=arm["switch_step"])
        own = trunk + [p for p in own if p[0] > arm["switch_step"]]
    return own


def _band(ax, series: Sequence[List[Tuple[int, float]]], label: str, **kw) -> None:
    steps = sorted(set.intersection(*[{s for s, _ in c} for c in series])) if series else []
    if not steps:
        return
    means, lows, highs = [], [], []
    for s in steps:
        iv = mean_interval([dict(c)[s] for c in series])
        means.append(iv.mean)
        lows.append(iv.low if iv.low is not None else iv.mean)
        highs.append(iv.high if iv.high is not None else iv.mean)
    line = ax.plot(steps, means, label=f"{label} ({len(series)} seeds)", **kw)[0]
    ax.fill_between(steps, lows, highs, color=line.get_color(), alpha=0.2, lw=0)


def _finish(fig, ax, path: Path, xlabel: str, ylabel: str, title: str) -> Path:
    """Labels, grid and legend of a study chart; saved as PNG and closed."""
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def draw(out: Path, results, summaries) -> List[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    manifest = json.loads((out / "study.json").read_text())
    curves = load_curves(out)
    paths = []
    by_exp: Dict[str, List[dict]] = {}
    for a in manifest["arms"]:
        by_exp.setdefault(a["experiment"], []).append(a)
    for e in manifest["experiments"]:
        arms = by_exp.get(e["name"], [])
        if e["kind"] not in ("two-stage", "recovery"):
            continue
        for length in sorted({a["length"] for a in arms}):
            fig, ax = plt.subplots(figsize=(8, 4.6))
            groups: Dict[Tuple[str, object], List[dict]] = {}
            for a in arms:
                if a["length"] == length:
                    groups.setdefault((a["label"], a.get("switch_step")), []).append(a)
            for (label, switch), group in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
                name = label if switch is None else f"switch at {switch}"
                _band(
                    ax,
                    [_arm_curve(curves, a, "val_loss") for a in group],
                    name,
                    color="black" if label == "dense" else None,
                    lw=1.4 if label == "dense" else 1.0,
                )
                if switch is not None:
                    ax.axvline(switch, color="gray", lw=0.5, ls=":")
            ax.set_xlabel("optimizer step")
            ax.set_ylabel("validation loss (nats per byte)")
            ax.set_title(
                f"{e['name']}: {e['preset']}, {e['schedule']} lr, {length} steps (bands: 95% over seeds)", fontsize=10
            )
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7, loc="upper right")
            lows = [s.loss.mean for s in summaries if s.experiment == e["name"] and s.loss and s.length == length]
            if lows:
                ax.set_ylim(min(lows) * 0.95, max(lows) * 1.6)
            path = out / f"loss_{e['name']}_{length}.png"
            fig.savefig(path, dpi=120, bbox_inches="tight")
            plt.close(fig)
            paths.append(path)
    rec = [s for s in summaries if s.label == "lighthouse-then-dense" and s.gap is not None]
    if rec:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for e, length in sorted({(s.experiment, s.length) for s in rec}):
            pts = sorted((s.dense_steps, s.gap) for s in rec if s.experiment == e and s.length == length)
            ax.errorbar(
                [d for d, _ in pts],
                [g.mean for _, g in pts],
                yerr=[g.half_width or 0 for _, g in pts],
                marker="o",
                capsize=3,
                label=f"{e}, {length} steps",
            )
        ax.axhline(1.0, color="gray", ls="--", lw=0.8)
        ax.axhline(0.0, color="black", lw=0.6)
        ax.set_xscale("log")
        paths.append(
            _finish(
                fig,
                ax,
                out / "recovery.png",
                "dense steps after the switch",
                "final gap to dense (% of dense loss)",
                "Recovery: gap against dense steps (95% intervals over seeds; dashed: 1%)",
            )
        )
    st = [s for s in summaries if s.label.startswith("lighthouse k=") and s.loss is not None]
    if st:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for e in sorted({s.experiment for s in st}):
            pts = sorted((s.s_over_n, s) for s in st if s.experiment == e and s.s_over_n is not None)
            ax.plot([x for x, _ in pts], [s.loss.mean for _, s in pts], marker="o", label=f"{e}: Lighthouse mode")
            ax.plot(
                [x for x, _ in pts],
                [s.stage1_dense_mode.mean if s.stage1_dense_mode else float("nan") for _, s in pts],
                marker="s",
                label=f"{e}: same weights, dense mode",
            )
            dense = [s.loss.mean for s in summaries if s.experiment == e and s.label == "dense" and s.loss]
            if dense:
                ax.axhline(dense[0], color="black", lw=1, label=f"{e}: dense arm")
        paths.append(
            _finish(
                fig,
                ax,
                out / "stage1.png",
                "S / N (share of the sequence the sub-sequence holds)",
                "validation loss at the end of stage 1",
                "Stage 1 only: both modes by sparsity",
            )
        )
    return paths
