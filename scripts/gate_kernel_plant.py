"""Does the regression gate see a slower kernel? Slowdowns planted inside one of the layer's kernels, on the GPU.

    python scripts/gate_kernel_plant.py --kernel select --out reports/h200/check/gate-kernel-select   # ~7-9 min
    python scripts/gate_kernel_plant.py --kernel gather --out reports/h200/check/gate-kernel-gather

1. Records a baseline from --runs runs of the suite (`lighthouse-bench check --record`, the same code) into
   OUT/baseline.csv (OUT/record/run-<i>/ holds the runs). The gate judges the host-ahead figures and the host
   time per call (lighthouse/bench/check/).
2. Calibrates, per point of the suite, the spin of the test-only plant inside --kernel (kernels/plant.py) that
   costs each --planted percent of the layer's fwd+bwd time on the host-ahead clock, and measures what it
   delivered (lighthouse/bench/kernel_plant.py): OUT/calibration.csv.
3. Judges each level --judgments times with the check itself (repeats of points that look regressed included;
   parity, charts and the warm-up off), round-robin over the levels so that a run cut short by --budget-s still
   has every level. OUT/slowdowns.csv, rewritten after every judgment: per (level, judgment, point, figure) the
   baseline, now, change, limit, verdict, the exit code, the share asked, the share the calibration delivered
   and the change of the layer's host-ahead median the check itself measured against the baseline.

Expected (issue 24): 0% exits 0 every time; 10% and 20% exit 1 every time; 5% is at the 6% tolerance. The baseline
is a fresh baseline of this GPU: copy it to reports/baselines/<gpu>.csv for `lighthouse-bench check --baseline auto`.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CALIBRATION = ("n", "point", "kernel", "requested_pct", "cycles", "base_ms", "planted_ms", "delivered_pct")
COLUMNS = (
    "planted_pct",
    "judgment",
    "point",
    "figure",
    "baseline",
    "now",
    "change_pct",
    "limit",
    "verdict",
    "exit_code",
    "kernel",
    "delivered_pct",
    "layer_host_ahead_change_pct",
    "seconds",
)


def write_csv(path: Path, columns, rows) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def read_csv(path: Path):
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def judgment_rows(check_rows, pct, j, code, seconds, kernel, delivered_by_point):
    """slowdowns.csv rows of one judgment: each gated figure, with the plant's asked and delivered shares and the
    layer's host-ahead change the check measured."""
    from lighthouse.bench import check

    layer = {r["point"]: r["change_pct"] for r in check_rows if r["figure"] == "host_ahead_median_ms"}
    out = []
    for r in check_rows:
        if r["figure"] not in check.GATED:
            continue
        limit = r["note"].split(";")[0].removeprefix("limit ").split(" (")[0] if r["note"].startswith("limit") else ""
        out.append(
            {
                "planted_pct": f"{pct:g}",
                "judgment": j,
                "point": r["point"],
                "figure": r["figure"],
                "baseline": r["baseline"],
                "now": r["now"],
                "change_pct": r["change_pct"],
                "limit": limit,
                "verdict": r["verdict"],
                "exit_code": code,
                "kernel": kernel,
                "delivered_pct": delivered_by_point.get(r["point"], ""),
                "layer_host_ahead_change_pct": layer.get(r["point"], ""),
                "seconds": f"{seconds:.1f}",
            }
        )
    if not check_rows:  # the check could not write its table: keep the exit code
        out.append(
            {
                "planted_pct": f"{pct:g}",
                "judgment": j,
                "verdict": "no table",
                "exit_code": code,
                "kernel": kernel,
                "seconds": f"{seconds:.1f}",
            }
        )
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kernel", required=True, choices=("select", "gather"), help="the kernel that gets the spin")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--suite", default="ci")
    ap.add_argument("--runs", type=int, default=3, help="runs of the suite in the baseline (default 3)")
    ap.add_argument("--judgments", type=int, default=3, help="checks per planted level (default 3)")
    ap.add_argument("--planted", default="0,5,10,20", help="shares of the layer's time in percent (default 0,5,10,20)")
    ap.add_argument("--tolerance", type=float, default=None, help="the check's --tolerance (default: its own)")
    ap.add_argument(
        "--budget-s",
        type=float,
        default=540.0,
        help="start no new judgment when the time spent plus the slowest judgment so far would pass this",
    )
    args = ap.parse_args(argv)
    levels = [float(x) for x in args.planted.split(",") if x.strip()]
    if any(p < 0 for p in levels) or not levels:
        print(f"Error: --planted: percentages >= 0, got {args.planted!r}")
        return 2

    import torch
    from rich.console import Console

    from lighthouse.bench import check, kernel_plant
    from lighthouse.harness import points

    if not torch.cuda.is_available():
        print("Error: gate_kernel_plant needs a CUDA device")
        return 2
    start = time.perf_counter()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    log = (out / "log.txt").open("w")
    console = Console(file=log, width=200, color_system=None)
    tol = {} if args.tolerance is None else {"tolerance": args.tolerance}

    baseline = out / "baseline.csv"
    t0 = time.perf_counter()
    code = check.run_check(
        baseline,
        None,
        record=True,
        runs=args.runs,
        suite=args.suite,
        out=out / "record",
        console=console,
        plot=False,
        **tol,
    )
    print(
        f"baseline: {args.runs} runs of {args.suite} -> {baseline}: exit {code} ({time.perf_counter() - t0:.0f} s)",
        flush=True,
    )
    if code != 0:
        log.close()
        print((out / "log.txt").read_text()[-3000:])
        return 2

    t0 = time.perf_counter()
    spec = points.resolve(args.suite, {}, True)
    dev = torch.device("cuda", torch.cuda.current_device())
    cycles = {pct: {} for pct in levels}
    delivered = {pct: {} for pct in levels}
    calibration = []
    for p in spec.points:
        name = check.point_name(
            {
                **{c: "" for c in check.POINT_COLUMNS},
                "impl": "lighthouse_triton",
                "pass": "fwdbwd",
                "dtype": p.shape.dtype,
                "n": p.shape.n,
                "topk": p.topk,
                "levels": p.levels,
                "pooling": p.pooling,
                "scorer": p.scorer,
                "batch": p.shape.batch,
                "heads": p.shape.heads,
                "kv_heads": p.shape.kv_heads,
                "head_dim": p.shape.head_dim,
            }
        )
        layer_ms = kernel_plant.layer_timer(p, dev, spec.seed)
        for plant in kernel_plant.calibrate(layer_ms, p.shape.n, args.kernel, levels):
            cycles[plant.requested_pct][p.shape.n] = plant.cycles
            delivered[plant.requested_pct][name] = f"{plant.delivered_pct:.2f}"
            calibration.append(
                {
                    "n": p.shape.n,
                    "point": name,
                    "kernel": args.kernel,
                    "requested_pct": f"{plant.requested_pct:g}",
                    "cycles": plant.cycles,
                    "base_ms": f"{plant.base_ms:.5g}",
                    "planted_ms": f"{plant.planted_ms:.5g}",
                    "delivered_pct": f"{plant.delivered_pct:.2f}",
                }
            )
            print(
                f"  {name}: {plant.requested_pct:g}% asked -> {plant.cycles} cycles/program -> "
                f"{plant.delivered_pct:.2f}% delivered ({plant.base_ms:.4g} -> {plant.planted_ms:.4g} ms)",
                flush=True,
            )
        torch.cuda.empty_cache()
    write_csv(out / "calibration.csv", CALIBRATION, calibration)
    print(f"calibration: {out / 'calibration.csv'} ({time.perf_counter() - t0:.0f} s)", flush=True)

    table, slowest, stopped = [], 0.0, None
    for j in range(1, args.judgments + 1):
        for pct in levels:
            spent = time.perf_counter() - start
            if spent + slowest > args.budget_s:
                stopped = (
                    f"stopped at {pct:g}% judgment {j}: {spent:.0f} s spent, the slowest judgment took {slowest:.0f} s"
                )
                break
            folder = out / f"planted-{pct:g}-{j}"
            t0 = time.perf_counter()
            with kernel_plant.planted(args.kernel, cycles[pct]):
                code = check.run_check(
                    baseline,
                    None,
                    suite=args.suite,
                    out=folder,
                    console=console,
                    parity=False,
                    plot=False,
                    warm=False,
                    **tol,
                )
            seconds = time.perf_counter() - t0
            slowest = max(slowest, seconds)
            table += judgment_rows(read_csv(folder / "check.csv"), pct, j, code, seconds, args.kernel, delivered[pct])
            write_csv(out / "slowdowns.csv", COLUMNS, table)
            print(f"planted {pct:4g}% in {args.kernel} #{j}: exit {code} in {seconds:.0f} s", flush=True)
        if stopped:
            break
    log.close()

    print()
    print(" | ".join(COLUMNS[:-1]))
    for r in table:
        print(" | ".join(str(r.get(c, "")) for c in COLUMNS[:-1]))
    print()
    for pct in levels:
        judged = {(r["judgment"], r["exit_code"]) for r in table if r["planted_pct"] == f"{pct:g}"}
        codes = [c for _, c in sorted(judged)]
        shares = ", ".join(f"{v}%" for v in delivered[pct].values())
        print(f"planted {pct:g}% in {args.kernel} (delivered {shares or '-'}): exit codes {codes or 'not judged'}")
    if stopped:
        print(stopped)
    print(f"total {time.perf_counter() - start:.0f} s; table: {out / 'slowdowns.csv'}; baseline: {baseline}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
