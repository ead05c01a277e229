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
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CALIBRATION = ("n", "point", "kernel", "requested_pct", "cycles", "base_ms", "planted_ms", "delivered_pct")
LAYER_COLUMN = "layer_host_ahead_change_pct"  # the change of the layer's host-ahead median the check measured


def main(argv=None) -> int:
    from lighthouse.bench.gate_trials import add_trial_arguments

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kernel", required=True, choices=("select", "gather"), help="the kernel that gets the spin")
    ap.add_argument("--out", type=Path, required=True)
    add_trial_arguments(ap, "shares of the layer's time", budget_s=540.0)
    args = ap.parse_args(argv)
    levels = [float(x) for x in args.planted.split(",") if x.strip()]
    if any(p < 0 for p in levels) or not levels:
        print(f"Error: --planted: percentages >= 0, got {args.planted!r}")
        return 2

    import torch

    from lighthouse.bench import check, kernel_plant
    from lighthouse.bench.gate_trials import Trials, exit_codes, trial_columns, trial_rows
    from lighthouse.harness.plain_csv import read_csv, write_csv
    from lighthouse.harness import points

    if not torch.cuda.is_available():
        print("Error: gate_kernel_plant needs a CUDA device")
        return 2
    trials = Trials(args.out, args.suite, args.tolerance)
    out = trials.out
    if not trials.record(args.runs):
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
    write_csv(out / "calibration.csv", calibration, CALIBRATION)
    print(f"calibration: {out / 'calibration.csv'} ({time.perf_counter() - t0:.0f} s)", flush=True)

    def judge_level(pct, j):
        folder = out / f"planted-{pct:g}-{j}"
        t0 = time.perf_counter()
        with kernel_plant.planted(args.kernel, cycles[pct]):
            code = trials.judge(folder)
        seconds = time.perf_counter() - t0
        print(f"planted {pct:4g}% in {args.kernel} #{j}: exit {code} in {seconds:.0f} s", flush=True)
        level = {"planted_pct": f"{pct:g}", "judgment": j, "exit_code": code, "kernel": args.kernel}
        level["seconds"] = f"{seconds:.1f}"
        by_point = {"delivered_pct": delivered[pct]}
        return trial_rows(read_csv(folder / "check.csv"), level, "host_ahead_median_ms", LAYER_COLUMN, by_point)

    columns = trial_columns("kernel", "delivered_pct", LAYER_COLUMN)
    table, stopped = trials.round_robin(
        levels, args.judgments, args.budget_s, judge_level, out / "slowdowns.csv", columns
    )
    summary = []
    for pct in levels:
        shares = ", ".join(f"{v}%" for v in delivered[pct].values())
        codes = exit_codes(table, pct)
        summary.append(
            f"planted {pct:g}% in {args.kernel} (delivered {shares or '-'}): exit codes {codes or 'not judged'}"
        )
    trials.report(table, columns, summary, stopped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
