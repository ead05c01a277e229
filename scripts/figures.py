"""Recompute every figure the reports' READMEs quote, from the committed CSV/JSON files alone, and print them.

    python scripts/figures.py            # from the repository root; needs only the standard library

reports/h200/README.md, reports/h200/check/README.md, reports/PERF_NOTES.md and README.md cite this script:
a figure in those files that this script does not print is not backed by committed data.
"""

from __future__ import annotations

import csv
import glob
import json
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
H200 = ROOT / "reports" / "h200"
FINAL = H200 / "paper-triton-final" / "results.csv"
PAPER = H200 / "paper" / "results.csv"  # the run with both Lighthouse paths and every pass
#: every committed sweep of the final kernels that has the paper's point (sweeps and checks)
FINAL_RUNS = [
    FINAL,
    H200 / "check" / "record-results.csv",
    H200 / "check" / "final-check1" / "results.csv",
    H200 / "check" / "final-check2" / "results.csv",
]


def rows(path: Path):
    with path.open(newline="") as f:
        return [r for r in csv.DictReader(f) if r.get("status", "ok") == "ok"]


def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def span(values, fmt="{:.2f}"):
    values = [v for v in values if v is not None]
    return f"{fmt.format(min(values))}-{fmt.format(max(values))}" if values else "-"


def by_impl(rs, impl, pass_="fwdbwd"):
    return {(r["n"], r.get("topk", "")): r for r in rs if r["impl"] == impl and r["pass"] == pass_}


def torch_vs_triton():
    rs = rows(PAPER)
    print("== lighthouse_torch against lighthouse_triton (paper, every pass)")
    allp = []
    for pass_ in ("fwd", "bwd", "fwdbwd"):
        tri, tor = by_impl(rs, "lighthouse_triton", pass_), by_impl(rs, "lighthouse_torch", pass_)
        ratios = [num(tor[k]["median_ms"]) / num(tri[k]["median_ms"]) for k in tor if k in tri]
        allp += ratios
        print(f"  {pass_}: torch/triton time {span(ratios)}x over {len(ratios)} points")
    print(f"  all passes: {span(allp)}x")
    for pass_ in ("fwd", "fwdbwd"):
        dense = {r["n"]: num(r["peak_mem_gib"]) for r in rs if r["impl"] == "sdpa_cudnn" and r["pass"] == pass_}
        mem = [
            num(r["peak_mem_gib"]) / dense[r["n"]]
            for r in rs
            if r["impl"] == "lighthouse_torch" and r["pass"] == pass_ and dense.get(r["n"])
        ]
        print(f"  {pass_}: torch peak memory / dense cuDNN up to {max(mem):.2f}x")


def triton_figures():
    rs = rows(FINAL)
    print("== lighthouse_triton, fwdbwd (paper-triton-final)")
    dense = {r["n"]: r for r in rs if r["impl"] == "sdpa_cudnn" and r["pass"] == "fwdbwd"}
    for r in sorted(
        (r for r in rs if r["impl"] == "lighthouse_triton" and r["pass"] == "fwdbwd"), key=lambda r: int(r["n"])
    ):
        mem = num(r["peak_mem_gib"]) / num(dense[r["n"]]["peak_mem_gib"])
        print(
            f"  N={r['n']:>6} k={r['topk']:>4}: {num(r['median_ms']):.3f} ms, "
            f"{num(r['speedup_vs_sdpa_cudnn']):.2f}x cuDNN, "
            f"floor ratio {num(r['floor_ratio']):.3f}, peak memory {mem:.3f}x dense"
        )


def memory_by_sweep():
    print("== lighthouse_triton fwdbwd peak memory / dense cuDNN, per committed paper sweep")
    for name in ("paper", "paper-triton", "paper-triton-final"):
        rs = rows(H200 / name / "results.csv")
        dense = {r["n"]: num(r["peak_mem_gib"]) for r in rs if r["impl"] == "sdpa_cudnn" and r["pass"] == "fwdbwd"}
        mem = {
            int(r["n"]): num(r["peak_mem_gib"]) / dense[r["n"]]
            for r in rs
            if r["impl"] == "lighthouse_triton" and r["pass"] == "fwdbwd" and dense.get(r["n"])
        }
        small = [v for n, v in mem.items() if n <= 65536]
        large = [v for n, v in mem.items() if n >= 98304]
        print(
            f"  {name}: N <= 64K {span(small, '{:.3f}')}x, N >= 96K {span(large, '{:.3f}')}x "
            f"({', '.join(f'{n // 1024}K {v:.3f}' for n, v in sorted(mem.items()) if n >= 98304)})"
        )


def across_runs():
    print("== the final kernels across every committed run (sweeps and checks), fwdbwd")
    for n, topk in (("16384", "1024"), ("98304", "1536")):
        ms, sp, fl = [], [], []
        for path in FINAL_RUNS:
            for r in rows(path):
                if r["impl"] == "lighthouse_triton" and r["pass"] == "fwdbwd" and r["n"] == n and r["topk"] == topk:
                    (
                        ms.append(num(r["median_ms"])),
                        sp.append(num(r["speedup_vs_sdpa_cudnn"])),
                        fl.append(num(r["floor_ratio"])),
                    )
        print(
            f"  N={n} k={topk}: {len(ms)} runs, {', '.join(f'{x:.2f}' for x in ms)} ms (median "
            f"{statistics.median(ms):.2f}); "
            f"speedup {span(sp)}x; floor ratio {span(fl)}"
        )
    sp = [
        num(r["speedup_vs_sdpa_cudnn"])
        for path in FINAL_RUNS + [H200 / "paper-triton" / "results.csv"]
        for r in rows(path)
        if r["impl"] == "lighthouse_triton" and r["pass"] == "fwdbwd" and r["n"] == "16384"
    ]
    print(f"  N=16384 with paper-triton too: speedup {span(sp)}x over {len(sp)} runs")


def benchmarks():
    print("== pytest-benchmark (check/benchmarks): min and median per test, ms")
    for path in sorted(glob.glob(str(H200 / "check" / "benchmarks" / "*.json"))):
        for b in json.load(open(path))["benchmarks"]:
            s = b["stats"]
            print(f"  {Path(path).name[:4]} {b['name']}: min {s['min'] * 1e3:.2f}, median {s['median'] * 1e3:.2f}")


def validate():
    print("== validate/run4-fused.csv")
    for r in csv.DictReader((H200 / "validate" / "run4-fused.csv").open()):
        if r["check"] == "triton_vs_torch":
            print(
                f"  triton_vs_torch {r['dtype']} hkv={r['hkv']} N={r['n']}: ok={r['ok']} "
                f"bitwise_repeat={r['bitwise_repeat']} "
                f"selection_equal={r['selection_equal_frac']} rel_out={num(r['rel_out']):.2g} "
                f"rel_dq={num(r['rel_dq']):.2g}"
            )


def machine():
    print("== measured peaks (profile machine.json)")
    for path in sorted(glob.glob(str(H200 / "profile" / "*" / "machine.json"))):
        peaks = json.load(open(path)).get("peaks", {})
        for dtype, p in peaks.items():
            if isinstance(p, dict) and "copy_gb_s" in p:
                print(f"  {Path(path).parent.name} {dtype}: copy {p['copy_gb_s']:.1f} GB/s")


def bound_at_96k():
    """PERF_NOTES' lower bound at the paper's point: SDPA at S plus the unavoidable memory passes at peak copy,
    assuming none of them overlaps the SDPA."""
    prof = list(csv.DictReader((H200 / "profile" / "n96k-k1536" / "profile.csv").open()))
    sdpa = sum(num(r["ms"]) for r in prof if r["stage"] in ("sdpa", "sdpa_bwd"))
    floor = [
        num(r["median_ms"]) for r in rows(FINAL) if r["impl"] == "floor" and r["pass"] == "fwdbwd" and r["n"] == "98304"
    ][0]
    peaks = json.load(open(H200 / "profile" / "n96k-k1536" / "machine.json"))["peaks"]
    copy = next(p["copy_gb_s"] for p in peaks.values() if isinstance(p, dict) and "copy_gb_s" in p)
    n, s, row = 98304, 18432, 8 * 128 * 2
    gb = (8 * n + 8 * s) * row / 1e9
    ms = gb / copy * 1e3
    print("== the memory-pass bound at N=98304, k=1536 (PERF_NOTES)")
    print(f"  unavoidable passes {gb:.2f} GB at {copy:.1f} GB/s = {ms:.3f} ms")
    print(
        f"  with SDPA at S from the profile ({sdpa:.2f} ms): bound {(sdpa + ms) / sdpa:.3f}x; "
        f"with the sweep's floor row ({floor:.2f} ms): {(floor + ms) / floor:.3f}x"
    )
    under = [
        (r["pass"], r["stage"], num(r["floor_ratio"]))
        for r in prof
        if num(r.get("floor_ratio")) is not None and num(r["floor_ratio"]) < 1 and r["floor_kind"] != "sum"
    ]
    print(
        "  profile stages faster than their modelled floor: "
        + (", ".join(f"{p}/{st} {x:.2f}" for p, st, x in under) or "none")
    )


if __name__ == "__main__":
    for step in (
        torch_vs_triton,
        triton_figures,
        memory_by_sweep,
        across_runs,
        benchmarks,
        validate,
        machine,
        bound_at_96k,
    ):
        step()
