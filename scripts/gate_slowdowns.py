"""How sensitive is the regression gate? Planted slowdowns of the layer, each judged several times, on the GPU.

    python scripts/gate_slowdowns.py --out out/gate-slowdowns        # one H200: about 3-4 minutes
    python scripts/gate_slowdowns.py --out out/gate-host --where host  # the delay on the host (host-bound points)

1. Records a baseline from --runs runs of the suite (`lighthouse-bench check --record --runs 3`, the same code)
   into OUT/baseline.csv (OUT/record/run-<i>/ holds the runs).
2. Plants slowdowns of --planted percent (default 0, 5, 10, 20) of each point's baseline time in the layer with
   the TEST-ONLY switch LIGHTHOUSE_TEST_SLOWDOWN_US (lighthouse/testing/slowdown.py: after the layer's backward, per
   sequence length N; a GPU spin queued on the stream, or with --where host a busy-wait of the thread issuing
   the launches, autograd's worker in the backward) and judges each --judgments times with the check itself (repeats
   of points
   that look regressed included; parity and charts off), round-robin over the levels so that a run cut short by
   --budget-s still has every level.
3. Writes OUT/slowdowns.csv (after every judgment), one row per (planted %, judgment, point, figure): baseline, now,
measured change,
   limit, verdict, the check's exit code, and the change of the layer's median time that was actually measured
   (`layer_ms_change_pct`); prints it and a summary of exit codes per planted level. OUT/planted-<pct>-<j>/ keeps
   each check's folder (results.csv, reference.csv, check.csv, repeat-<i>/).

Expected: 0% and 5% exit 0 every time, 10% and 20% exit 1 every time. A GPU spin barely slows a host-bound point
(16K at batch 1 on an H200: it fills time the GPU spends waiting for launches; the `ci` suite runs 16K at batch 4
since, which is bound by the GPU); a host busy-wait barely slows a GPU-bound
one (64K, 96K: the host is ahead of the GPU queue). `layer_ms_change_pct` says what was actually delivered. The
baseline file is a fresh baseline of
this GPU: copy it to reports/baselines/<gpu>.csv (`lighthouse-bench check --baseline auto` picks it there).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def planted_env(baseline_rows, pct: float) -> str:
    """LIGHTHOUSE_TEST_SLOWDOWN_US for `pct` percent of each point's baseline layer time, per N."""
    from lighthouse.harness.tables import num

    per_n = {}
    for r in baseline_rows:
        ms = num(r.get("median_ms"))
        if ms:
            per_n[int(float(r["n"]))] = ms * 1e3 * pct / 100.0
    return ",".join(f"{n}={us:.1f}" for n, us in sorted(per_n.items()))


def main(argv=None) -> int:
    from lighthouse.bench.gate_trials import add_trial_arguments, trial_columns

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("out/gate-slowdowns"))
    add_trial_arguments(ap, "planted slowdowns", budget_s=210.0)
    ap.add_argument(
        "--where",
        choices=("gpu", "host"),
        default="gpu",
        help="spend the planted delay as a GPU spin (default; slows GPU-bound points) or as a host "
        "busy-wait (slows host-bound points such as 16K at batch 1)",
    )
    args = ap.parse_args(argv)

    import torch

    from lighthouse.bench import check
    from lighthouse.bench.gate_trials import Trials, exit_codes, trial_rows
    from lighthouse.harness.plain_csv import read_csv
    from lighthouse.testing import TEST_SLOWDOWN_ENV, TEST_SLOWDOWN_WHERE_ENV
    from lighthouse.testing.slowdown import install

    if not torch.cuda.is_available():
        print("gate_slowdowns: needs a CUDA device")
        return 2
    trials = Trials(args.out, args.suite, args.tolerance)
    install()  # the layer's call hook plants the delay while the switch is set
    os.environ.pop(TEST_SLOWDOWN_ENV, None)
    os.environ[TEST_SLOWDOWN_WHERE_ENV] = args.where
    if not trials.record(args.runs):
        return 2
    base_rows = read_csv(trials.baseline)
    for r in base_rows:
        spreads = " ".join(f"{f}={r[f]} (spread {r[check.SPREAD[f]] or '-'})" for f in check.GATED)
        print(f"  {check.point_name(r)}: median_ms={r['median_ms']} {spreads}")

    def judge_level(pct, j):
        env = planted_env(base_rows, pct) if pct > 0 else ""
        if env:
            os.environ[TEST_SLOWDOWN_ENV] = env
        else:
            os.environ.pop(TEST_SLOWDOWN_ENV, None)
        folder = trials.out / f"planted-{pct:g}-{j}"
        t0 = time.perf_counter()
        code = trials.judge(folder)
        seconds = time.perf_counter() - t0
        os.environ.pop(TEST_SLOWDOWN_ENV, None)
        print(
            f"planted {pct:4g}% #{j} on the {args.where} ({TEST_SLOWDOWN_ENV}={env or 'unset'}): exit {code} in "
            f"{seconds:.0f} s",
            flush=True,
        )
        level = {"planted_pct": f"{pct:g}", "judgment": j, "exit_code": code, "seconds": f"{seconds:.1f}"}
        return trial_rows(read_csv(folder / "check.csv"), level, "median_ms", "layer_ms_change_pct")

    levels = [float(x) for x in args.planted.split(",") if x.strip()]
    columns = trial_columns("layer_ms_change_pct")
    table_path = trials.out / "slowdowns.csv"
    table, stopped = trials.round_robin(levels, args.judgments, args.budget_s, judge_level, table_path, columns)
    summary = [f"planted {pct:g}%: exit codes {exit_codes(table, pct) or 'not judged'}" for pct in levels]
    trials.report(table, columns, summary, stopped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
