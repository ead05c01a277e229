"""Every figure quoted from this round's H200 runs (reports/h200/{train,coldstart,check/gate-slowdowns,quality},
reports/baselines/nvidia-h200.csv), recomputed from the committed CSVs, so that READMEs, PERF_NOTES and notes
cite numbers a script made rather than numbers copied by eye.

    python scripts/round_figures.py
"""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from pathlib import Path

H200 = Path(__file__).resolve().parent.parent / "reports" / "h200"


def rows(path: Path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def train() -> None:
    print("== train (reports/h200/train/throughput/train.csv)")
    for r in rows(H200 / "train" / "throughput" / "train.csv"):
        tag = r["attention"] + ("" if r["attention"] == "dense" else f" k={r['topk']}" + (" no-recompute" if r["recompute"] == "0" else ""))
        print(f"  N={r['n']:>7} {tag:<28} {r['status']:<3} tokens/s={r['tokens_per_s']:>9} speedup={r['speedup_vs_dense'] or '-':>7} "
              f"step_ms={r['median_step_ms']:>9} attention_share={r['attention_share']:>8} peak_GiB={r['peak_mem_gib']:>8} "
              f"mfu={r['mfu']:>8} first_step_s={r['first_step_s']}")
    curve = rows(H200 / "train" / "recipe" / "curve.csv")
    for arm in ("lighthouse-then-dense", "dense"):
        mine = [r for r in curve if r["arm"] == arm]
        final = [r for r in mine if r["val_loss"]][-1]
        switch = [r for r in mine if r["attention"] == "dense"]
        print(f"  recipe {arm}: final val_loss={float(final['val_loss']):.4f} steps={final['step']} "
              f"wall_s={float(final['elapsed_s']):.1f} first dense step={switch[0]['step'] if switch else '-'}")
    a = [float(r["val_loss"]) for r in curve if r["arm"] == "lighthouse-then-dense" and r["val_loss"]][-1]
    d = [float(r["val_loss"]) for r in curve if r["arm"] == "dense" and r["val_loss"]][-1]
    print(f"  recipe gap: {100 * (a / d - 1):+.2f}% validation loss")


def coldstart() -> None:
    print("== cold start (reports/h200/coldstart/cold_start.csv)")
    for r in rows(H200 / "coldstart" / "cold_start.csv"):
        if r["status"] == "ok":
            print(f"  {r['phase']:<4} N={r['n']:>7} k={r['topk']} L={r['levels']}: first call {float(r['first_call_ms']) / 1e3:.2f} s "
                  f"(fwd {float(r['first_fwd_ms']) / 1e3:.2f}, bwd {float(r['first_bwd_ms']) / 1e3:.2f}), "
                  f"triton compile {float(r['triton_compile_ms']) / 1e3:.2f} s over {r['kernels_compiled']} kernels")
    print("== small N (reports/h200/coldstart/small_n.csv)")
    for r in rows(H200 / "coldstart" / "small_n.csv"):
        print(f"  N={r['n']:>7} k={r['topk'] or '-':>5} {r['impl']:<22} median {r['median_ms']} ms  vs cuDNN {r['speedup_vs_cudnn'] or '-'}")
    print("== N = 1M (reports/h200/coldstart/one_m.csv)")
    for r in rows(H200 / "coldstart" / "one_m.csv"):
        print(f"  L={r['levels'] or '-'} {r['impl']:<18} median {r['median_ms']} ms  peak {r['peak_gib']} GiB  speedup {r['speedup_vs_cudnn']}")


def gate() -> None:
    print("== planted slowdowns (reports/h200/check/gate-slowdowns/slowdowns.csv)")
    table = rows(H200 / "check" / "gate-slowdowns" / "slowdowns.csv")
    by_level = defaultdict(dict)
    for r in table:
        key = (r["judgment"], r["point"].split(" n=")[1].split()[0])
        by_level[r["planted_pct"]].setdefault(r["judgment"], {"exit": r["exit_code"], "layer": {}})["layer"][key[1]] = r["layer_ms_change_pct"]
    for pct in sorted(by_level, key=float):
        for j, info in sorted(by_level[pct].items()):
            changes = ", ".join(f"N={n}: {c}%" for n, c in info["layer"].items())
            print(f"  planted {pct:>2}% judgment {j}: exit {info['exit']}; measured layer time change {changes}")
    for r in rows(H200.parent / "baselines" / "nvidia-h200.csv"):
        print(f"  baseline N={r['n']}: speedup_vs_sdpa_cudnn {float(r['speedup_vs_sdpa_cudnn']):.3f} "
              f"(spread {100 * float(r['speedup_vs_sdpa_cudnn_spread']):.1f}%), floor_ratio {float(r['floor_ratio']):.3f}, "
              f"median {float(r['median_ms']):.3f} ms over {r['runs']} runs")


def quality() -> None:
    print("== quality (reports/h200/quality/n*/quality/quality.csv)")
    for n in ("16k", "64k", "96k", "128k"):
        q = [r for r in rows(H200 / "quality" / f"n{n}" / "quality" / "quality.csv") if r["status"] == "ok"]
        s = rows(H200 / "quality" / f"n{n}" / "sweep" / "results.csv")
        lh = [r for r in s if r["kind"] == "lighthouse"]
        print(f"  N={n}: quality rows ok={len(q)}; sweep Lighthouse rows ok={sum(r['status'] == 'ok' for r in lh)} "
              f"invalid={sum(r['status'] == 'invalid' for r in lh)}")
        for scorer in ("norm", "dilated", "gla"):
            needle = [float(r["needle_recall"]) for r in q if r["inputs"] == "needle" and r["scorer"] == scorer]
            perfect = [f"L{r['levels']}p{r['pooling']}k{r['topk']}" for r in q if r["inputs"] == "needle"
                       and r["scorer"] == scorer and float(r["needle_recall"]) >= 0.9]
            dense = {r["dense_needle_recall"] for r in q if r["inputs"] == "needle"}
            print(f"    {scorer:<8} needle recall mean {statistics.mean(needle):.3f} min {min(needle):.3f} max {max(needle):.3f} "
                  f"over {len(needle)} configs; >= 0.9: {len(perfect)} ({', '.join(sorted(set(p[:4] for p in perfect)))}); "
                  f"dense recall {sorted(dense)}")


if __name__ == "__main__":
    train()
    coldstart()
    gate()
    quality()
