"""Issue 21's answer at 500 steps, pooled over every seed the H200 has trained: E2 at run length 500.

    python reports/h200/study/tools/pooled.py            # writes reports/h200/study/pooled/

The same experiment (mid, N=8192, B=2, k=256, constant rate, mixed precision, clipping 1.0, 500 steps, the switch
after 100, 250, 300 or 400 steps) was trained in three sessions, each a study folder of its own:
seeds 0-2 in `e1-e2/` (experiment E2, length 500), seeds 3-5 in `seeds345/` and seeds 6-14 planned in
`seeds6-14/` (experiment E2-500; a folder that is not there is skipped, an arm without a final loss is left out).
Each seed's gap is paired with the dense arm of its own folder and seed, as `study` pairs it; the interval is the
95% t interval over the per-seed gaps. The wall-clock
ratio is each arm's time over its dense arm's, both from the solo step times of the arm's own folder
(`clock.csv`, measured before that folder's jobs), so it says what the recipe costs at this size, not how fast the
kernels are.

Writes `gaps.csv` (one row per arm and seed), `summary.csv` (one row per dense-step count), `summary.md` (the
verdict in the issue's terms, every figure from those rows) and `recovery.png` (gap against dense steps, the 95%
band and each seed). E2 at run length 1000 (seeds 0-2, `e1-e2/` only) is summarised beside it for the question of
how the gaps move with run length.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lighthouse.train.stats import mean_interval, t_quantile  # noqa: E402
from lighthouse.train.study_report import CLAIM_PCT, PRECISE_PCT, claim_verdict  # noqa: E402

HERE = Path(__file__).resolve().parents[1]
#: (folder, the name E2 at run length 500 has in that folder's plan)
SOURCES = (("e1-e2", "E2"), ("seeds345", "E2-500"), ("seeds6-14", "E2-500"))
GAP_COLUMNS = ("folder", "seed", "length", "dense_steps", "val_loss", "dense_val_loss", "gap_pct", "wall_ratio")
SUMMARY_COLUMNS = (
    "length",
    "dense_steps",
    "seeds",
    "seed_list",
    "gap_pct_mean",
    "gap_pct_hw",
    "gap_pct_min",
    "gap_pct_max",
    "wall_ratio_mean",
    "seeds_for_2pt",
    "verdict",
)


def _rows(path: Path):
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def gaps(length: int = 500, sources=SOURCES, root: Path = HERE):
    """One row per Lighthouse-then-dense arm and seed of E2 at `length` steps, from every folder present."""
    out = []
    for folder, experiment in sources:
        path = root / folder / "arms.csv"
        if not path.is_file():
            continue
        for r in _rows(path):
            if r["experiment"] != experiment or r["label"] != "lighthouse-then-dense" or int(r["length"]) != length:
                continue
            if not r["gap_pct"]:
                continue
            out.append(
                {
                    "folder": folder,
                    "seed": int(r["seed"]),
                    "length": length,
                    "dense_steps": int(r["dense_steps"]),
                    "val_loss": float(r["val_loss"]),
                    "dense_val_loss": float(r["dense_val_loss"]),
                    "gap_pct": float(r["gap_pct"]),
                    "wall_ratio": float(r["wall_s"]) / float(r["dense_wall_s"]),
                }
            )
    seen = {}
    for r in out:
        key = (r["dense_steps"], r["seed"])
        if key in seen:
            raise SystemExit(f"seed {r['seed']} at {r['dense_steps']} dense steps is in {seen[key]} and {r['folder']}")
        seen[key] = r["folder"]
    return sorted(out, key=lambda r: (r["dense_steps"], r["seed"]))


def seeds_for(values, half_width: float):
    """The fewest seeds whose 95% t interval would be at most half_width wide, at the sample spread of values
    (None from one value: no spread)."""
    import statistics

    if len(values) < 2:
        return None
    sd = statistics.stdev(values)
    n = 2
    while t_quantile(0.975, n - 1) * sd / n**0.5 > half_width:
        n += 1
    return n


def summarize(rows):
    out = []
    for length, d in sorted({(r["length"], r["dense_steps"]) for r in rows}):
        group = [r for r in rows if r["length"] == length and r["dense_steps"] == d]
        values = [r["gap_pct"] for r in group]
        iv = mean_interval(values)
        out.append(
            {
                "length": length,
                "dense_steps": d,
                "seeds": len(values),
                "seed_list": _seed_list(group),
                "gap_pct_mean": iv.mean,
                "gap_pct_hw": iv.half_width,
                "gap_pct_min": min(values),
                "gap_pct_max": max(values),
                "wall_ratio_mean": sum(r["wall_ratio"] for r in group) / len(group),
                "seeds_for_2pt": seeds_for(values, PRECISE_PCT),
                "verdict": claim_verdict(iv),
            }
        )
    return out


def _hw(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def _seed_counts(summary) -> str:
    counts = sorted({s["seeds"] for s in summary})
    return f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"


def _write(path: Path, columns, rows) -> None:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({c: (f"{r[c]:.6g}" if isinstance(r[c], float) else r[c]) for c in columns})


def _seed_list(rows) -> str:
    seeds = sorted({r["seed"] for r in rows})
    runs, start = [], seeds[0]
    for a, b in zip(seeds, seeds[1:] + [None]):
        if b != a + 1:
            runs.append(f"{start}" if start == a else f"{start}-{a}")
            start = b
    return ", ".join(runs)


def markdown(rows500, summary500, summary1000, root: Path = HERE, rows1000=()) -> str:
    folders = sorted({r["folder"] for r in rows500}, key=[f for f, _ in SOURCES].index)
    lines = [
        "# Issue 21 at 500 steps, pooled over seeds (written by `reports/h200/study/tools/pooled.py`)",
        "",
        f"E2 at run length 500 (mid, N=8192, B=2, k=256, constant rate, mixed precision, clipping 1.0), seeds "
        f"{_seed_list(rows500)} from {', '.join(f'`{f}/`' for f in folders)}. Gap: the Lighthouse-then-dense arm's "
        "final validation loss over its own seed's dense arm, in percent; the interval is 95% t over the per-seed "
        "gaps. Wall ratio: the arm's time over dense's, from each folder's solo step times.",
        "",
        "| run length | dense steps | seeds | gap | 95% half-width | range over seeds | wall ratio "
        "| seeds for a 2-point half-width | reaches the paper's claim |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in summary500 + summary1000:
        lines.append(
            f"| {s['length']} | {s['dense_steps']} | {s['seeds']} ({s['seed_list']}) | {s['gap_pct_mean']:+.2f}% | "
            f"{_hw(s['gap_pct_hw'])} | {s['gap_pct_min']:+.2f}% .. {s['gap_pct_max']:+.2f}% | "
            f"{s['wall_ratio_mean']:.3f} | {s['seeds_for_2pt'] or '-'} | {s['verdict']} |"
        )
    met = [s for s in summary500 if s["verdict"] == "yes"]
    precise = [s for s in summary500 if s["gap_pct_hw"] is not None and s["gap_pct_hw"] <= PRECISE_PCT]
    lines += ["", "## The verdict", ""]
    if met:
        best = min(met, key=lambda s: s["dense_steps"])
        lines.append(
            f"- At 500 steps the paper's claim (gap at most {CLAIM_PCT:g}%, or an interval that contains 0) is met "
            f"with {best['dense_steps']} dense steps: {best['gap_pct_mean']:+.2f}% ± {_hw(best['gap_pct_hw'])}, at a "
            f"wall-clock ratio of {best['wall_ratio_mean']:.3f} against dense."
        )
    else:
        closest = min(summary500, key=lambda s: s["gap_pct_mean"])
        open_ = [s for s in summary500 if s["verdict"] == "inconclusive"]
        lines.append(
            f"- At 500 steps no switch point is shown to reach the paper's claim (gap at most {CLAIM_PCT:g}%, or an "
            f"interval that contains 0, with a half-width of at most {PRECISE_PCT:g}); "
            f"{len(summary500) - len(open_)} of {len(summary500)} are shown not to"
            + (f", {len(open_)} are inconclusive. " if open_ else ". ")
            + f"The closest is {closest['dense_steps']} dense steps "
            f"({100 * closest['dense_steps'] / closest['length']:.0f}% of the run): {closest['gap_pct_mean']:+.2f}% "
            f"± {_hw(closest['gap_pct_hw'])} over {closest['seeds']} seeds."
        )
    bounded = [s for s in summary500 if s["gap_pct_hw"] is not None]
    if bounded:
        low = min(bounded, key=lambda s: s["gap_pct_mean"] - s["gap_pct_hw"])
        lines.append(
            f"- The lowest lower bound of any interval is {low['gap_pct_mean'] - low['gap_pct_hw']:+.2f}% "
            f"({low['dense_steps']} dense steps)."
        )
    order = sorted(summary500, key=lambda s: s["dense_steps"])
    falls = all(a["gap_pct_mean"] > b["gap_pct_mean"] for a, b in zip(order, order[1:]))
    by_seed = {}
    for r in sorted(rows500, key=lambda r: r["dense_steps"]):
        by_seed.setdefault((r["folder"], r["seed"]), []).append(r["gap_pct"])
    rises = sum(any(x <= y for x, y in zip(g, g[1:])) for g in by_seed.values())
    lines.append(
        (
            f"- The mean gap falls as the dense phase grows ({rises} of {len(by_seed)} seeds' gaps do not fall at "
            "every step): "
            if falls
            else "- The mean gap: "
        )
        + ", ".join(f"{s['dense_steps']} dense steps {s['gap_pct_mean']:+.2f}%" for s in order)
        + "."
    )
    if summary1000:
        pairs = {s["dense_steps"]: s for s in summary1000}
        same = [(s, pairs[s["dense_steps"]]) for s in order if s["dense_steps"] in pairs]
        larger = all(b["gap_pct_mean"] > a["gap_pct_mean"] for a, b in same)
        lines.append(
            f"- At run length 1000 ({_seed_counts(summary1000)} seeds, {_seed_list(rows1000)}) the same dense-step "
            + ("counts leave larger mean gaps: " if larger else "counts: ")
            + ", ".join(
                f"{a['dense_steps']} dense steps {b['gap_pct_mean']:+.2f}% (500: {a['gap_pct_mean']:+.2f}%)"
                for a, b in same
            )
            + (
                ". The recovery needs more dense steps after a longer Lighthouse phase, not a fixed count."
                if larger
                else "."
            )
        )
    walls = [r["wall_ratio"] for r in rows500]
    means = ", ".join(f"{s['dense_steps']} dense steps {s['wall_ratio_mean']:.3f}" for s in order)
    line = (
        f"- Wall clock: each arm took {min(walls):.3f}-{max(walls):.3f} of its dense arm's time (the mean by "
        f"switch point: {means}; each folder's own solo clock)."
    )
    newest = [f for f, _ in SOURCES if f in folders][-1]
    if (root / newest / "clock.csv").is_file():
        clock = {r["attention"]: float(r["median_step_ms"]) for r in _rows(root / newest / "clock.csv")}
        solo = f"(`{newest}/clock.csv`, solo: dense {clock['dense']:.1f} ms, Lighthouse {clock['lighthouse']:.1f} ms)"
        if clock["lighthouse"] > clock["dense"]:
            line += (
                f" At N=8192 the Lighthouse step of this model is slower than the dense one {solo}, so this scale "
                "buys no saving; the paper's saving needs long N (the speed results in `reports/h200/`)."
            )
        else:
            line += f" Per step {solo}."
    lines.append(line)
    lines.append(
        f"- Precision: {len(precise)} of {len(summary500)} switch points reach a half-width of at most "
        f"{PRECISE_PCT:g} points (issue 21's target); the column `seeds for a 2-point half-width` is what the measured "
        "spread asks."
    )
    return "\n".join(lines) + "\n"


def chart(rows, summary, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    xs = [s["dense_steps"] for s in summary]
    means = [s["gap_pct_mean"] for s in summary]
    if all(s["gap_pct_hw"] is not None for s in summary):
        ax.fill_between(
            xs,
            [s["gap_pct_mean"] - s["gap_pct_hw"] for s in summary],
            [s["gap_pct_mean"] + s["gap_pct_hw"] for s in summary],
            alpha=0.25,
            label="95% interval",
        )
    ax.plot(xs, means, marker="o", label=f"mean over {_seed_counts(summary)} seeds")
    ax.scatter([r["dense_steps"] for r in rows], [r["gap_pct"] for r in rows], s=8, color="k", alpha=0.4, label="seeds")
    ax.axhline(0, color="grey", lw=0.8)
    ax.axhline(CLAIM_PCT, color="green", lw=0.8, ls="--", label=f"paper's claim ({CLAIM_PCT:g}%)")
    ax.set_xlabel("dense steps after the switch (of 500)")
    ax.set_ylabel("final validation loss over dense (%)")
    ax.set_title("E2 at 500 steps: recovery against dense steps")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=HERE, help="the folder holding the study folders")
    ap.add_argument("--out", type=Path, default=None, help="default: <root>/pooled")
    ap.add_argument("--no-plot", action="store_true")
    args = ap.parse_args(argv)
    out = args.out or args.root / "pooled"
    rows500 = gaps(500, root=args.root)
    rows1000 = gaps(1000, sources=SOURCES[:1], root=args.root)
    if not rows500:
        folders = ", ".join(f"{args.root / f}" for f, _ in SOURCES)
        print(f"Error: no finished E2 arm at 500 steps in any of {folders}", file=sys.stderr)
        return 2
    summary500, summary1000 = summarize(rows500), summarize(rows1000)
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "gaps.csv", GAP_COLUMNS, rows500 + rows1000)
    _write(out / "summary.csv", SUMMARY_COLUMNS, summary500 + summary1000)
    text = markdown(rows500, summary500, summary1000, root=args.root, rows1000=rows1000)
    (out / "summary.md").write_text(text)
    if not args.no_plot:
        chart(rows500, summary500, out / "recovery.png")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
