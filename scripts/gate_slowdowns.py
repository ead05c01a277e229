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
import csv
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

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
    "layer_ms_change_pct",
    "seconds",
)


def planted_env(baseline_rows, pct: float) -> str:
    """LIGHTHOUSE_TEST_SLOWDOWN_US for `pct` percent of each point's baseline layer time, per N."""
    from lighthouse.harness.tables import num

    per_n = {}
    for r in baseline_rows:
        ms = num(r.get("median_ms"))
        if ms:
            per_n[int(float(r["n"]))] = ms * 1e3 * pct / 100.0
    return ",".join(f"{n}={us:.1f}" for n, us in sorted(per_n.items()))


def check_rows(folder: Path):
    path = folder / "check.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def table_rows(rows, pct: float, judgment: int, code: int, seconds: float):
    """slowdowns.csv rows of one judgment: each gated figure, with the layer's measured time change."""
    from lighthouse.bench import check

    ms_change = {r["point"]: r["change_pct"] for r in rows if r["figure"] == "median_ms"}
    out = []
    for r in rows:
        if r["figure"] not in check.GATED:
            continue
        limit = r["note"].split(";")[0].removeprefix("limit ").split(" (")[0] if r["note"].startswith("limit") else ""
        out.append(
            {
                "planted_pct": f"{pct:g}",
                "judgment": judgment,
                "point": r["point"],
                "figure": r["figure"],
                "baseline": r["baseline"],
                "now": r["now"],
                "change_pct": r["change_pct"],
                "limit": limit,
                "verdict": r["verdict"],
                "exit_code": code,
                "layer_ms_change_pct": ms_change.get(r["point"], ""),
                "seconds": f"{seconds:.1f}",
            }
        )
    if not rows:  # the check could not write its table: keep the exit code
        out.append(
            {
                "planted_pct": f"{pct:g}",
                "judgment": judgment,
                "point": "",
                "figure": "",
                "verdict": "no table",
                "exit_code": code,
                "seconds": f"{seconds:.1f}",
            }
        )
    return out


def write_table(path: Path, table) -> None:
    """The whole table so far (rewritten after every judgment: a run killed by a time limit keeps its rows)."""
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(table)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("out/gate-slowdowns"))
    ap.add_argument("--suite", default="ci")
    ap.add_argument("--runs", type=int, default=3, help="runs of the suite in the baseline (default 3)")
    ap.add_argument("--judgments", type=int, default=3, help="checks per planted level (default 3)")
    ap.add_argument("--planted", default="0,5,10,20", help="planted slowdowns in percent (default 0,5,10,20)")
    ap.add_argument("--tolerance", type=float, default=None, help="the check's --tolerance (default: its own)")
    ap.add_argument(
        "--where",
        choices=("gpu", "host"),
        default="gpu",
        help="spend the planted delay as a GPU spin (default; slows GPU-bound points) or as a host "
        "busy-wait (slows host-bound points such as 16K at batch 1)",
    )
    ap.add_argument(
        "--budget-s",
        type=float,
        default=210.0,
        help="start no new judgment when the time spent plus the slowest judgment so far would pass this",
    )
    args = ap.parse_args(argv)

    import torch
    from rich.console import Console

    from lighthouse.testing import TEST_SLOWDOWN_ENV, TEST_SLOWDOWN_WHERE_ENV
    from lighthouse.testing.slowdown import install
    from lighthouse.bench import check

    if not torch.cuda.is_available():
        print("gate_slowdowns: needs a CUDA device")
        return 2
    start = time.perf_counter()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    log = (out / "log.txt").open("w")
    console = Console(file=log, width=200, color_system=None)
    tol = {} if args.tolerance is None else {"tolerance": args.tolerance}
    install()  # the layer's call hook plants the delay while the switch is set
    os.environ.pop(TEST_SLOWDOWN_ENV, None)
    os.environ[TEST_SLOWDOWN_WHERE_ENV] = args.where

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
    with baseline.open(newline="") as f:
        base_rows = list(csv.DictReader(f))
    for r in base_rows:
        spreads = " ".join(f"{f}={r[f]} (spread {r[check.SPREAD[f]] or '-'})" for f in check.GATED)
        print(f"  {check.point_name(r)}: median_ms={r['median_ms']} {spreads}")

    levels = [float(x) for x in args.planted.split(",") if x.strip()]
    table, slowest = [], 0.0
    stopped = None
    for j in range(1, args.judgments + 1):
        for pct in levels:
            spent = time.perf_counter() - start
            if spent + slowest > args.budget_s:
                stopped = (
                    f"stopped at planted {pct:g}% judgment {j}: {spent:.0f} s spent, "
                    f"the slowest judgment took {slowest:.0f} s"
                )
                break
            env = planted_env(base_rows, pct) if pct > 0 else ""
            if env:
                os.environ[TEST_SLOWDOWN_ENV] = env
            else:
                os.environ.pop(TEST_SLOWDOWN_ENV, None)
            folder = out / f"planted-{pct:g}-{j}"
            t0 = time.perf_counter()
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
            os.environ.pop(TEST_SLOWDOWN_ENV, None)
            rows = table_rows(check_rows(folder), pct, j, code, seconds)
            table += rows
            write_table(out / "slowdowns.csv", table)
            print(
                f"planted {pct:4g}% #{j} on the {args.where} ({TEST_SLOWDOWN_ENV}={env or 'unset'}): exit {code} in "
                f"{seconds:.0f} s",
                flush=True,
            )
        if stopped:
            break
    log.close()

    write_table(out / "slowdowns.csv", table)
    print()
    print(" | ".join(COLUMNS[:-1]))
    for r in table:
        print(" | ".join(str(r.get(c, "")) for c in COLUMNS[:-1]))
    print()
    for pct in levels:
        judged = sorted({(r["judgment"], r["exit_code"]) for r in table if r["planted_pct"] == f"{pct:g}"})
        print(f"planted {pct:g}%: exit codes {[c for _, c in judged] or 'not judged'}")
    if stopped:
        print(stopped)
    print(f"total {time.perf_counter() - start:.0f} s; table: {out / 'slowdowns.csv'}; baseline: {baseline}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
