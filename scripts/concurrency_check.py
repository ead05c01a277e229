"""Does training arms side by side change them? Re-run one finished study job alone and compare its curve.

    python scripts/concurrency_check.py STUDY_DIR JOB_ID --steps 200 [--out concurrency.csv]

The job's spec (STUDY_DIR/jobs/JOB_ID.json) is run again by the same worker, alone, for its first --steps steps
(validated at the same steps), and each step's train loss and each validation loss is compared with the curve it
wrote while other arms shared the device. Writes one row per compared step: step, the two values and their
difference; prints the largest differences. On a CPU the two agree exactly (deterministic kernels); on a GPU they
differ by the run-to-run noise of non-deterministic kernels (atomics), which this measures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lighthouse.harness.plain_csv import write_csv  # noqa: E402
from lighthouse.harness.tables import TRAIN_CURVE, num, read_rows  # noqa: E402
from lighthouse.train.study_curves import curve_files  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("study", type=Path)
    ap.add_argument("job")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    curve = curve_files(args.study).get(args.job)  # plain or packed; looked up before the run, not after it
    if curve is None:
        raise SystemExit(f"{args.study} has no curve of job {args.job} (curves/{args.job}.csv or .csv.gz)")
    spec = json.loads((args.study / "jobs" / f"{args.job}.json").read_text())
    plan = spec["job"]["plan"]
    if plan.get("from_snapshot"):
        raise SystemExit("pick a job that starts from the initialisation (a dense arm or a trunk)")
    steps = min(args.steps, plan["steps"])
    plan.update(steps=steps, snapshot_at=[], eval_at=[s for s in plan.get("eval_at", []) if s <= steps])
    with tempfile.TemporaryDirectory() as tmp:
        spec["curve"] = str(Path(tmp) / "solo.csv")
        spec["snapshots"] = tmp
        spec_path = Path(tmp) / "solo.json"
        spec_path.write_text(json.dumps(spec))
        subprocess.run(
            [sys.executable, "-m", "lighthouse.train.worker", str(spec_path)],
            check=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        solo = {int(r["step"]): r for r in read_rows(spec["curve"], TRAIN_CURVE)[0]}
    shared = {int(r["step"]): r for r in read_rows(curve, TRAIN_CURVE)[0]}
    out = args.out or args.study / "concurrency.csv"
    rows = []
    for step in sorted(solo):
        for col in ("train_loss", "val_loss"):
            a, b = num(solo[step].get(col)), num(shared.get(step, {}).get(col))
            if a is not None and b is not None:
                rows.append({"job": args.job, "step": step, "figure": col, "solo": a, "shared": b, "diff": b - a})
    write_csv(out, rows, ["job", "step", "figure", "solo", "shared", "diff"])
    for col in ("train_loss", "val_loss"):
        diffs = [abs(r["diff"]) for r in rows if r["figure"] == col]
        if diffs:
            print(
                f"{col}: {len(diffs)} steps compared, largest |shared - solo| = {max(diffs):.3g}, "
                f"at the last step {diffs[-1]:.3g}"
            )
    print(f"rows: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
