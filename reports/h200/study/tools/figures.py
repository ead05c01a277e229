"""Every figure the docs and notes quote from reports/h200/study, recomputed from its CSVs.

python reports/h200/study/tools/figures.py
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE.parents[2]))


def rows(path: Path):
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def main() -> int:
    from lighthouse.train.study_report import arm_results, summarize

    study = HERE / "e1-e2"
    summaries = summarize(arm_results(study))
    clock = {(r["experiment"], r["attention"]): float(r["median_step_ms"]) for r in rows(study / "clock.csv")}
    print(f"e1-e2 solo step: dense {clock[('E2', 'dense')]:.1f} ms, Lighthouse {clock[('E2', 'lighthouse')]:.1f} ms")
    for s in summaries:
        if s.gap is None:
            continue
        print(
            f"{s.experiment} {s.length} steps, {s.dense_steps} dense: gap {s.gap.mean:+.2f}% "
            f"± {s.gap.half_width:.2f}% ({s.seeds} seeds), wall ratio {s.wall_ratio:.3f}, verdict {s.verdict()}"
        )
    dense = [s for s in summaries if s.label == "dense" and s.experiment == "E2"]
    for s in dense:
        print(f"E2 dense at {s.length} steps: {s.loss.mean:.4f} ± {s.loss.half_width:.4f}")
    import json

    from lighthouse.train.stats import mean_interval
    from lighthouse.train.study_curves import at_step, load_curves

    manifest = json.loads((study / "study.json").read_text())
    curves = load_curves(study)
    for step in (500, 900):
        gaps_lh, cost = [], []
        for seed in (0, 1, 2):
            trunk = next(
                j
                for j, job in manifest["jobs"].items()
                if job["plan"]["arm"] == "lighthouse" and job["plan"]["seed"] == seed
            )
            dense = next(
                j
                for j, job in manifest["jobs"].items()
                if job["plan"]["arm"] == "dense" and job["plan"]["seed"] == seed
            )
            a = at_step(curves[trunk], step, "val_loss_lighthouse")
            b = at_step(curves[trunk], step, "val_loss_dense")
            d = at_step(curves[dense], step, "val_loss")
            gaps_lh.append(100 * (a - d) / d)
            cost.append(100 * (b - a) / a)
        g, c = mean_interval(gaps_lh), mean_interval(cost)
        print(
            f"E2 trunk at step {step}: Lighthouse mode {g.mean:+.2f}% ± {g.half_width:.2f}% from dense; the same "
            f"weights in dense mode {c.mean:+.2f}% ± {c.half_width:.2f}% above their Lighthouse mode"
        )
    gaps = [s.gap.mean for s in summaries if s.gap is not None]
    print(f"gaps range {min(gaps):+.2f}% .. {max(gaps):+.2f}%")
    partial = HERE / "e1-16k-partial"
    clock16 = {r["attention"]: float(r["median_step_ms"]) for r in rows(partial / "clock.csv")}
    print(
        f"16K b4 solo step: dense {clock16['dense']:.1f} ms, Lighthouse {clock16['lighthouse']:.1f} ms; one seed of "
        f"E1-16k = {(750 * clock16['lighthouse'] + 1250 * clock16['dense']) / 1e3:.0f} s solo"
    )
    partial_curves = load_curves(partial)
    steps = {job: int(r[-1]["step"]) for job, r in partial_curves.items()}
    done_s = sum(n * clock16["lighthouse" if k.startswith("lighthouse") else "dense"] for k, n in steps.items()) / 1e3
    last = max(float(r[-1]["elapsed_s"]) for r in partial_curves.values())
    print(
        f"16K side by side: {done_s:.0f} s of solo work in {last:.0f} s of training wall time "
        f"({done_s / last:.2f}x one arm alone)"
    )
    conc = rows(partial / "concurrency.csv")
    for fig in ("train_loss", "val_loss"):
        d = [abs(float(r["diff"])) for r in conc if r["figure"] == fig]
        print(f"concurrency check {fig}: {len(d)} steps, max |shared - solo| {max(d):.3g}, last {d[-1]:.3g}")
    e4_e5()
    six_seeds()
    e3()
    return 0


def _by_seed(path: Path, experiment: str, label: str, column: str, **match) -> dict:
    out = {}
    for r in rows(path):
        if r["experiment"] == experiment and r["label"] == label and all(r[k] == str(v) for k, v in match.items()):
            out[int(r["seed"])] = float(r[column])
    return out


def e4_e5() -> None:
    """E4 (wsd) and E5-post (RoPE after selection) against E2's constant, pre-pooling arm at the same switch
    (500 steps, 100 dense): each gap is paired by seed inside its own folder, and the two gaps by seed across
    the folders (same seeds, data order and model; separate runs)."""
    from lighthouse.train.stats import mean_interval
    from lighthouse.train.study_report import arm_results, summarize

    new = HERE / "e4-e5"
    old = HERE / "e1-e2" / "arms.csv"
    clock = {(r["experiment"], r["attention"]): float(r["median_step_ms"]) for r in rows(new / "clock.csv")}
    for e in ("E4", "E5-post"):
        print(f"e4-e5 solo step {e}: dense {clock[(e, 'dense')]:.1f} ms, Lighthouse {clock[(e, 'lighthouse')]:.1f} ms")
    for s in summarize(arm_results(new)):
        if s.gap is not None:
            print(
                f"{s.experiment} {s.length} steps, {s.dense_steps} dense: gap {s.gap.mean:+.2f}% "
                f"± {s.gap.half_width:.2f}% ({s.seeds} seeds), wall ratio {s.wall_ratio:.3f}, verdict {s.verdict()}"
            )
    pre = _by_seed(old, "E2", "lighthouse-then-dense", "gap_pct", length=500, dense_steps=100)
    for e, name in (("E5-post", "post - pre"), ("E4", "wsd - constant")):
        gap = _by_seed(new / "arms.csv", e, "lighthouse-then-dense", "gap_pct")
        d = mean_interval([gap[i] - pre[i] for i in sorted(gap)])
        print(f"{e} gap minus E2's (500 steps, 100 dense), by seed ({name}): {d.mean:+.2f} ± {d.half_width:.2f} points")
    # the same dense arm (constant rate, same seed) trained in two runs: GPU non-determinism between runs
    dense_old = _by_seed(old, "E2", "dense", "val_loss", length=500)
    dense_new = _by_seed(new / "arms.csv", "E5-post", "dense", "val_loss")
    diffs = [100 * (dense_new[i] - dense_old[i]) / dense_old[i] for i in sorted(dense_new)]
    print(
        "E5-post's dense arm against E2's (same seed, schedule and data, another run) at step 500: "
        + ", ".join(f"{d:+.2f}%" for d in diffs)
    )
    wsd = _by_seed(new / "arms.csv", "E4", "dense", "val_loss")
    d = mean_interval([100 * (wsd[i] - dense_new[i]) / dense_new[i] for i in sorted(wsd)])
    print(f"dense wsd against dense constant at step 500: {d.mean:+.2f}% ± {d.half_width:.2f}%")


def _seeds_for(values, half_width: float) -> int:
    """The fewest seeds whose 95% t interval would be at most half_width wide, at the sample spread of values."""
    import statistics

    from lighthouse.train.stats import t_quantile

    sd = statistics.stdev(values)
    n = 2
    while t_quantile(0.975, n - 1) * sd / n**0.5 > half_width:
        n += 1
    return n


def six_seeds() -> None:
    """E2 at 500 steps and E5-post over seeds 0-5: seeds 0-2 from e1-e2 and e4-e5, seeds 3-5 from seeds345 (another
    session). Each gap is paired with the dense arm of its own folder and seed; the pooled interval is over the
    six per-seed gaps."""
    from lighthouse.train.stats import mean_interval

    new = HERE / "seeds345" / "arms.csv"
    pre = {}
    for d in (100, 200, 250, 400):
        old = _by_seed(HERE / "e1-e2" / "arms.csv", "E2", "lighthouse-then-dense", "gap_pct", length=500, dense_steps=d)
        more = _by_seed(new, "E2-500", "lighthouse-then-dense", "gap_pct", dense_steps=d)
        pre[d] = {**old, **more}
        for name, gaps in (("seeds 3-5", more), ("seeds 0-5", pre[d])):
            iv = mean_interval([gaps[i] for i in sorted(gaps)])
            print(f"E2 500 steps, {d} dense, {name}: gap {iv.mean:+.2f}% ± {iv.half_width:.2f}% ({len(gaps)} seeds)")
        print("  per seed: " + ", ".join(f"s{i} {pre[d][i]:+.2f}%" for i in sorted(pre[d])))
        print(f"  seeds for a half-width <= 2 points at this spread: {_seeds_for(list(pre[d].values()), 2.0)}")
    post = {
        **_by_seed(HERE / "e4-e5" / "arms.csv", "E5-post", "lighthouse-then-dense", "gap_pct"),
        **_by_seed(new, "E5-post", "lighthouse-then-dense", "gap_pct"),
    }
    iv = mean_interval([post[i] for i in sorted(post)])
    print(f"E5-post 500 steps, 100 dense, seeds 0-5: gap {iv.mean:+.2f}% ± {iv.half_width:.2f}% ({len(post)} seeds)")
    d = mean_interval([post[i] - pre[100][i] for i in sorted(post)])
    print(f"E5-post minus E2 (500 steps, 100 dense), by seed, seeds 0-5: {d.mean:+.2f} ± {d.half_width:.2f} points")
    dense = {
        **_by_seed(HERE / "e1-e2" / "arms.csv", "E2", "dense", "val_loss", length=500),
        **_by_seed(new, "E2-500", "dense", "val_loss"),
    }
    iv = mean_interval([dense[i] for i in sorted(dense)])
    print(
        f"dense at 500 steps, seeds 0-5: {iv.mean:.4f} ± {iv.half_width:.4f} "
        f"(range {min(dense.values()):.4f} .. {max(dense.values()):.4f})"
    )
    walls = [r for r in rows(HERE / "seeds345" / "summary.csv") if r["gap_pct_mean"]]
    for r in walls:
        print(f"seeds345 {r['experiment']} {r['dense_steps']} dense: wall ratio {float(r['wall_ratio']):.2f}")


def e3() -> None:
    """E3: stage 1 only (500 steps, no dense phase) at four budgets, validated in Lighthouse mode (the gap) and
    in dense mode (the same weights with dense attention), 2 seeds."""
    summary = rows(HERE / "e3" / "summary.csv")
    dense = next(float(r["loss_mean"]) for r in summary if not r["topk"])
    ratios = [100 * (float(r["dense_mode_mean"]) / dense - 1) for r in summary if r["topk"]]
    print(f"E3 dense-mode loss over dense's: {min(ratios):+.1f}% .. {max(ratios):+.1f}%")
    for r in summary:
        if not r["topk"]:
            print(f"E3 dense at 500 steps: {float(r['loss_mean']):.4f} ± {float(r['loss_hw']):.4f}")
            continue
        print(
            f"E3 k={r['topk']} S/N {float(r['s_over_n']):.2f}: gap {float(r['gap_pct_mean']):+.2f}% ± "
            f"{float(r['gap_pct_hw']):.2f}%, Lighthouse-mode loss {float(r['loss_mean']):.4f}, dense-mode loss "
            f"{float(r['dense_mode_mean']):.4f} ± {float(r['dense_mode_hw']):.4f}, wall ratio {float(r['wall_ratio']):.2f}"
        )
    for r in rows(HERE / "e3" / "arms.csv"):
        if r["topk"]:
            print(f"  E3 k={r['topk']} seed {r['seed']}: gap {float(r['gap_pct']):+.2f}%")
    # solo step times; `lighthouse` without a k is the trunk at E3's first budget, k=512 (study_run's clock label)
    clock = rows(HERE / "e3" / "clock.csv")
    print("E3 solo step: " + "; ".join(f"{r['attention']} {float(r['median_step_ms']):.1f} ms" for r in clock))


if __name__ == "__main__":
    sys.exit(main())
