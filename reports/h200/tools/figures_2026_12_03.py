"""Every figure quoted from the H200 runs of 2026-12-03 (RoPE cost, paper-530m under mixed precision, the needle
grid on correctly planted needles), recomputed from the committed CSVs.

python reports/h200/tools/figures_2026_12_03.py
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pandas as pd

H200 = Path(__file__).resolve().parents[1]


def rope_cost() -> None:
    s = pd.read_csv(H200 / "rope" / "rope_cost_summary.csv").set_index("pass")
    for p in ("fwdbwd", "fwd", "bwd"):
        r = s.loc[p]
        print(f"rope cost 96K {p}: pre {r.pre_ms:.3f} ms, post {r.post_ms:.3f} ms, post/pre {r.post_over_pre:.4f}")
    rounds = pd.read_csv(H200 / "rope" / "rope_cost.csv")
    fb = rounds[rounds["pass"] == "fwdbwd"].pivot_table(index="round", columns="rope", values="median_ms")
    ratio = fb["post"] / fb["pre"]
    print(f"rope cost 96K fwdbwd post/pre by round: {ratio.min():.3f} .. {ratio.max():.3f} ({len(ratio)} rounds)")


def paper_530m() -> None:
    for loss in ("liger", "chunked"):
        t = pd.read_csv(H200 / "train" / f"paper-530m-mixed-{loss}" / "train.csv")
        for _, r in t.iterrows():
            what = "dense" if r.attention == "dense" else f"lighthouse rope={r.rope}"
            speed = "" if r.attention == "dense" else f", {r.speedup_vs_dense:.2f}x dense"
            print(
                f"530m {loss} N={r.n} {what}: {r.tokens_per_s / 1e3:.1f}k tokens/s{speed}, peak {r.peak_mem_gib:.1f} "
                f"GiB, {r['dtype']}, clip {r['clip']}, loss {r.loss_impl}"
            )


def paper_530m_shares() -> None:
    t = pd.concat(pd.read_csv(H200 / "train" / f"paper-530m-mixed-{loss}" / "train.csv") for loss in ("liger", "chunked"))
    lh = t[t.attention == "lighthouse"]
    print(f"530m Lighthouse attention share of the step: {lh.attention_share.min():.2f} .. {lh.attention_share.max():.2f}")
    both = lh.pivot_table(index=["loss_impl", "n"], columns="rope", values="tokens_per_s")
    ratio = both["post"] / both["pre"]
    print(f"530m post / pre tokens/s: {ratio.min():.4f} .. {ratio.max():.4f}")


def needles() -> None:
    q = pd.read_csv(H200 / "quality" / "needles-fixed" / "quality.csv")
    ok = q[q.status == "ok"]
    for (inputs, rope), g in ok.groupby(["inputs", "rope"]):
        dense = sorted(set(g.dense_needle_recall))
        best = g.groupby("n").needle_recall.max()
        print(
            f"needles {inputs} rope={rope}: dense recall {dense[0]:g}..{dense[-1]:g}; best Lighthouse recall by N "
            + ", ".join(f"{n // 1024}K {v:.3f}" for n, v in best.items())
        )
    pick = ok[(ok.inputs == "needle") & (ok.rope == "pre") & (ok.levels == 2) & (ok.pooling == 2) & (ok.topk == 512)]
    pick = pick[pick.scorer == "norm"].set_index("n").needle_recall
    print("the old 96K pick (L=2 p=2 k=512 norm) on fixed needles: " + ", ".join(f"{n // 1024}K {v:.3f}" for n, v in pick.items()))
    rot = ok[ok.inputs == "needle-rope"]
    key = ["n", "levels", "pooling", "topk", "scorer"]
    both = rot.pivot_table(index=key, columns="rope", values="needle_recall").dropna()
    diff = both["post"] - both["pre"]
    for n, d in diff.groupby(level="n"):
        print(
            f"needle-rope post - pre recall at {n // 1024}K over {len(d)} configurations: median {statistics.median(d):+.3f}, "
            f"{(d > 0).sum()} higher, {(d < 0).sum()} lower, {(d == 0).sum()} equal"
        )
    old = pd.read_csv(H200 / "quality" / "n96k" / "quality" / "quality.csv")
    old = old[(old.status == "ok") & (old.inputs == "needle")]
    print(f"inflated needles (before the fix) at 96K: best recall {old.needle_recall.max():.3f}, "
          f"{(old.needle_recall >= 0.9).sum()} of {len(old)} rows >= 0.9")
    fixed = ok[(ok.inputs == "needle") & (ok.rope == "pre") & (ok.n == 98304)]
    print(f"fixed needles at 96K: {(fixed.needle_recall >= 0.9).sum()} of {len(fixed)} rows >= 0.9")


if __name__ == "__main__":
    rope_cost()
    paper_530m()
    paper_530m_shares()
    needles()
