"""Charts of quality results (they never measure anything).

needle_recall_<scorer>.png: per scorer, a grid of depth x N heatmaps of the needle recall, one row per
    budget k and one column per (L, p) (and RoPE placement, when the file holds both): the training-free
    passkey picture; inputs other than `needle` (needle-rope) get needle_recall_<scorer>_<inputs>.png.
quality_<figure>.png: a figure (out_rel_err, coverage) against k per scorer, one line per (L, p, N) (and
    placement: post dashed).
checkpoint_layers_N<n>.png: on a trained model's captured q, k, v (`--inputs checkpoint:PATH`), per layer
    the median over the measured configurations of the per-token cosine and of out_rel_err, one line per
    model, one column per scorer.
pareto_<figure>_N<n>.png (`pareto_chart`): speedup over dense (sweep) against a quality figure (quality)
    for the same configurations, the frontier (no other point both faster and better) drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..harness.chart_text import fit
from ..harness.tables import QUALITY, QUALITY_BUCKETS, fmt_size, num, read_rows


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _ok_rows(path: Path) -> List[dict]:
    return [r for r in read_rows(path, QUALITY)[0] if r.get("status") == "ok"]


def _int(r, c) -> int:
    return int(num(r[c]))


def _rope(r) -> str:
    return r.get("rope") or "pre"


def _both_ropes(rows: List[dict]) -> bool:
    return len({_rope(r) for r in rows}) > 1


def needle_heatmaps(rows: List[dict], out_dir: Path) -> List[Path]:
    """One PNG per scorer: rows k, columns (L, p); each cell a depth-bucket x N heatmap of recall."""
    plt = _plt()
    rows = [r for r in rows if num(r.get("needle_recall")) is not None]
    paths = []
    ropes = _both_ropes(rows)
    for inputs, scorer in sorted({(r["inputs"], r["scorer"]) for r in rows}, key=lambda x: (x[0] != "needle", x)):
        rs = [r for r in rows if r["scorer"] == scorer and r["inputs"] == inputs]
        ks = sorted({_int(r, "topk") for r in rs})
        lps = sorted(
            {(_int(r, "levels"), _int(r, "pooling"), _rope(r)) for r in rs}, key=lambda c: (c[0], c[1], c[2] != "pre")
        )
        ns = sorted({_int(r, "n") for r in rs})
        fig, axes = plt.subplots(
            len(ks),
            len(lps),
            figsize=(1.2 + 2.2 * len(lps), 0.6 + 2.0 * len(ks)),
            squeeze=False,
            sharex=True,
            sharey=True,
        )
        image = None
        for a, k in enumerate(ks):
            for b, (lv, p, rope) in enumerate(lps):
                ax = axes[a][b]
                grid = [[None] * len(ns) for _ in QUALITY_BUCKETS]
                for r in rs:
                    if (_int(r, "topk"), _int(r, "levels"), _int(r, "pooling"), _rope(r)) == (k, lv, p, rope):
                        for d, col in enumerate(QUALITY_BUCKETS):
                            grid[d][ns.index(_int(r, "n"))] = num(r.get(col))
                data = [[float("nan") if v is None else v for v in row] for row in grid]
                image = ax.imshow(data, vmin=0, vmax=1, cmap="viridis", origin="lower", aspect="auto")
                ax.set_title(f"k={k} L={lv} p={p}" + (f" {rope}" if ropes else ""), fontsize=8)
                ax.set_xticks(range(len(ns)), [fmt_size(n) for n in ns], fontsize=7)
                ax.set_yticks(range(0, 10, 3), [f"{10 * d}%" for d in range(0, 10, 3)], fontsize=7)
        fig.supxlabel("N"), fig.supylabel("needle depth (i - j) / i")
        # wrapped to the figure's width: with one (L, p) column the figure is 3.4 inches wide (the title was cut)
        fig.suptitle(
            fit(f"needle recall, scorer {scorer}, {inputs} inputs (cosine >= 0.5 with v_j)", fig.get_figwidth(), 12)
        )
        if image is not None:
            fig.colorbar(image, ax=axes, shrink=0.6)
        path = out_dir / (
            f"needle_recall_{scorer}.png" if inputs == "needle" else f"needle_recall_{scorer}_{inputs}.png"
        )
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths


def figure_vs_k(rows: List[dict], figure: str, out_dir: Path, inputs: str = "random") -> Optional[Path]:
    plt = _plt()
    rows = [r for r in rows if r.get("inputs") == inputs and num(r.get(figure)) is not None]
    if not rows:
        return None
    scorers = sorted({r["scorer"] for r in rows})
    ropes = _both_ropes(rows)
    fig, axes = plt.subplots(1, len(scorers), figsize=(4.5 * len(scorers), 3.6), squeeze=False, sharey=True)
    for ax, scorer in zip(axes[0], scorers):
        lines: Dict = {}
        for r in rows:
            if r["scorer"] == scorer:
                lines.setdefault((_int(r, "n"), _int(r, "levels"), _int(r, "pooling"), _rope(r) != "pre"), []).append(
                    (_int(r, "topk"), num(r[figure]))
                )
        colours: Dict = {}
        for (n, lv, p, post), pts in sorted(lines.items()):
            pts.sort()
            label = f"N={fmt_size(n)} L{lv} p{p}" + ((" post" if post else " pre") if ropes else "")
            line = ax.plot(
                [k for k, _ in pts],
                [v for _, v in pts],
                "--" if post else "-",
                marker="o",
                label=label,
                color=colours.get((n, lv, p)),
            )[0]
            colours.setdefault((n, lv, p), line.get_color())  # pre and post of one configuration share a colour
        ax.set_xscale("log", base=2)
        ax.set_title(scorer), ax.set_xlabel("k")
        ax.legend(fontsize=6)
    axes[0][0].set_ylabel(f"{figure} ({inputs} inputs)")
    path = out_dir / f"quality_{figure}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def checkpoint_layer_charts(rows: List[dict], out_dir: Path) -> List[Path]:
    """One PNG per N with ok checkpoint rows: per layer, the median over configurations of cos_median (top) and
    out_rel_err (bottom), `summary.checkpoint_layer_medians`; one line per model, one column per scorer."""
    from .summary import checkpoint_layer_medians

    panels = {figure: checkpoint_layer_medians(rows, figure) for figure in ("cos_median", "out_rel_err")}
    plt = _plt()
    paths = []
    for n in sorted({n for _, n, _ in panels["out_rel_err"]}):
        keys = sorted(k for k in panels["out_rel_err"] if k[1] == n)
        scorers = sorted({s for _, _, s in keys})
        fig, axes = plt.subplots(2, len(scorers), figsize=(4.2 * len(scorers), 6.0), squeeze=False, sharex=True)
        for model, _, scorer in keys:
            col = scorers.index(scorer)
            for row, figure in enumerate(("cos_median", "out_rel_err")):
                by_layer = panels[figure].get((model, n, scorer), {})
                axes[row][col].plot(list(by_layer), list(by_layer.values()), marker="o", label=model)
        for col, scorer in enumerate(scorers):
            axes[0][col].set_title(scorer)
            axes[1][col].set_xlabel("layer")
        axes[0][0].set_ylabel("per-token cosine (median)")
        axes[1][0].set_ylabel("out_rel_err")
        axes[0][0].legend(fontsize=7)
        fig.suptitle(f"trained model's q, k, v, N={fmt_size(n)}: median over configurations per layer")
        fig.tight_layout()
        path = Path(out_dir) / f"checkpoint_layers_N{fmt_size(n)}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def quality_charts(csv_path: Path, out_dir: Optional[Path] = None) -> List[Path]:
    """Every chart of one quality.csv, beside it unless out_dir is given."""
    out_dir = Path(out_dir or Path(csv_path).parent)
    rows = _ok_rows(Path(csv_path))
    paths = needle_heatmaps(rows, out_dir) + checkpoint_layer_charts(rows, out_dir)
    for figure in ("out_rel_err", "coverage"):
        p = figure_vs_k(rows, figure, out_dir)
        if p:
            paths.append(p)
    return paths


def pareto_front(points: Sequence[tuple], higher_is_better: bool = True) -> List[tuple]:
    """(speedup, quality, ...) points no other point beats on both (faster and at least as good, or as
    fast and better), sorted by speedup."""

    def better(a, b):
        qa, qb = (a[1], b[1]) if higher_is_better else (-a[1], -b[1])
        return a[0] >= b[0] and qa >= qb and (a[0] > b[0] or qa > qb)

    return sorted((p for p in points if not any(better(o, p) for o in points)), key=lambda p: p[0])


#: Where a frontier label may sit relative to its point (points), tried in this order.
LABEL_OFFSETS = ((4, 4), (4, -10), (-4, 4), (-4, -10), (4, 14), (-4, 14), (4, -20), (-4, -20))


def place_labels(ax, labelled: Sequence[tuple], fontsize: float = 6) -> int:
    """Label each (x, y, text) at the first of LABEL_OFFSETS where it covers no label placed before it and stays
    inside the axes; a label with no such place is left out (a pile of overlapping labels names nothing).
    Returns how many were left out. Call it once the axes' limits and scales are final."""
    renderer = ax.figure.canvas.get_renderer()
    inside, placed, left_out = ax.get_window_extent(renderer), [], 0
    for x, y, text in labelled:
        for dx, dy in LABEL_OFFSETS:
            note = ax.annotate(
                text,
                (x, y),
                fontsize=fontsize,
                xytext=(dx, dy),
                textcoords="offset points",
                ha="left" if dx > 0 else "right",
            )
            box = note.get_window_extent(renderer)
            fits = inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1
            if fits and not any(box.overlaps(other) for other in placed):
                placed.append(box)
                break
            note.remove()
        else:
            left_out += 1
    return left_out


def pareto_chart(
    sweep_rows: List[dict],
    quality_rows: List[dict],
    out_dir: Path,
    *,
    figure: str = "needle_recall",
    inputs: Optional[str] = None,
    pass_: str = "fwdbwd",
    baseline: str = "sdpa_cudnn",
    seqs: Optional[Sequence[int]] = None,
) -> List[Path]:
    """One PNG per N measured on both sides: speedup (x, log) against `figure` (y), frontier drawn.
    The join is recommend's (same configuration, least favourable value where several rows exist)."""
    from .recommend import Bar, quality_table, speed_table

    plt = _plt()
    inputs = inputs or ("needle" if figure == "needle_recall" else "random")
    bar = Bar(figure, 0.0, inputs)
    ns = seqs or sorted({int(num(r["n"])) for r in quality_rows if num(r.get("n")) is not None})
    paths = []
    for n in ns:
        speed, quality = speed_table(sweep_rows, n, pass_, baseline), quality_table(quality_rows, n, bar)
        pts = [(speed[c], quality[c][figure], c) for c in speed.keys() & quality.keys()]
        if not pts:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        ropes = len({c[4] for _, _, c in pts}) > 1
        for scorer, rope in sorted({(c[3], c[4]) for _, _, c in pts}):
            sel = [(s, q) for s, q, c in pts if (c[3], c[4]) == (scorer, rope)]
            ax.scatter(
                [s for s, _ in sel],
                [q for _, q in sel],
                label=f"{scorer} {rope}" if ropes else scorer,
                alpha=0.8,
                marker="^" if rope == "post" else "o",
            )
        front = pareto_front(pts, bar.higher_is_better)
        ax.plot([p[0] for p in front], [p[1] for p in front], "k-", lw=1, label="frontier")
        ax.set_xscale("log")
        ax.set_xlabel(f"speedup over {baseline} ({pass_})"), ax.set_ylabel(f"{figure} ({inputs} inputs)")
        ax.set_title(f"speed against quality, N={fmt_size(n)}")
        ax.legend(fontsize=7)
        fig.tight_layout()
        left_out = place_labels(
            ax, [(s, q, f"L{lv} p{p} k{k}" + (f" {rope}" if ropes else "")) for s, q, (lv, p, k, _, rope) in front]
        )
        if left_out:
            ax.text(
                0.99,
                0.01,
                f"{left_out} frontier label(s) left out where they would overlap",
                fontsize=6,
                ha="right",
                va="bottom",
                transform=ax.transAxes,
                color="gray",
            )
        path = Path(out_dir) / f"pareto_{figure}_N{fmt_size(n)}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
