"""One GPU call for issue 14 (`lighthouse-bench train` on the H200), inside a wall-clock budget.

    PYTHONPATH=. python reports/h200/tools/gpu_train.py --out reports/h200/train [--budget-s 500] [--phases a,b,c]

Phases, in this order (each point is skipped, with the reason printed, when its estimated cost no longer fits
the budget; an out-of-memory point is a row with status oom and the run goes on):
  a  throughput of paper-530m at N=98,304: dense, Lighthouse, and Lighthouse without the recomputed backward
     (to show what the checkpointing-unfriendly Triton ctx costs in memory); 3 timed steps after 1 warm-up.
     -> OUT/throughput/train.csv (+ machine.json, chart)
  b  the two-stage recipe on the stdlib's bytes (preset `mid`, N=16K, batch 4): steps calibrated so that each
     arm trains for its share of the budget (at most --arm-minutes). -> OUT/recipe/curve.csv (+ chart)
  c  the longest N: dense at 196,608, Lighthouse at 196,608, 393,216, 786,432, 1,048,576 and 1,572,864, then
     dense at 262,144 (dense is limited by time long before memory), one timed step each after the first; a bigger N of
     an attention is skipped once a smaller one ran out of memory.
     -> OUT/throughput/train.csv (same table as a, so the tokens/s chart spans every N)
Last: OUT/summary.md (the Markdown section of `lighthouse-bench report`) and a short table on stdout.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the checkout's root

import torch  # noqa: E402

from lighthouse.harness.tables import num  # noqa: E402
from lighthouse.train.benchmark import run_points  # noqa: E402
from lighthouse.train.loss import liger_available  # noqa: E402
from lighthouse.train.presets import get_preset  # noqa: E402
from lighthouse.train.recipe import RecipeOptions, run_recipe  # noqa: E402
from lighthouse.train.report import train_section  # noqa: E402
from lighthouse.train.throughput import RunOptions, TrainPoint  # noqa: E402

#: How step time grows with N when extrapolating from a measured point: dense attention dominates (N^2);
#: Lighthouse is close to linear.
GROWTH = {"dense": 2.0, "lighthouse": 1.15}
#: Reserve for the summary, the charts and process exit.
RESERVE_S = 15.0


class Budget:
    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


def estimate_s(point: TrainPoint, opts: RunOptions, rows) -> float:
    """Seconds a point should take: model build + first step + warm-up + timed steps, from the nearest smaller
    measured point of the same attention (first-step overhead such as Triton compilation carried over)."""
    same = [
        r
        for r in rows
        if r.get("attention") == point.attention
        and r.get("status") == "ok"
        and r.get("preset") == point.preset.name
        and num(r.get("median_step_ms"))
    ]
    if not same:
        return 60.0 if point.attention == "lighthouse" else 30.0
    ref = min(same, key=lambda r: abs(int(r["n"]) - point.seq))
    step_s = num(ref["median_step_ms"]) / 1e3 * (point.seq / int(ref["n"])) ** GROWTH[point.attention]
    overhead = max(0.0, num(ref["first_step_s"]) - num(ref["median_step_ms"]) / 1e3)
    return 10.0 + overhead + (1 + opts.warmup + opts.steps) * step_s


def make_skip(budget: Budget, opts: RunOptions):
    def skip(point: TrainPoint, rows):
        smaller_oom = [
            r
            for r in rows
            if r.get("attention") == point.attention
            and r.get("status") == "oom"
            and r.get("preset") == point.preset.name
            and int(r["n"]) < point.seq
            and str(r.get("recompute") or "") == ("" if point.attention == "dense" else str(int(opts.recompute)))
        ]
        if smaller_oom:
            return f"out of memory already at N={min(int(r['n']) for r in smaller_oom)}"
        need, left = estimate_s(point, opts, rows), budget.left() - RESERVE_S
        if need > left:
            return f"time budget: needs about {need:.0f} s, {max(left, 0):.0f} s left"
        return None

    return skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="output folder (created)")
    ap.add_argument("--budget-s", type=float, default=500.0, help="wall-clock budget of the whole script")
    ap.add_argument("--phases", default="a,b,c", help="which phases to run: a (98K), b (recipe), c (longest N)")
    ap.add_argument("--arm-minutes", type=float, default=3.0, help="most training minutes per recipe arm")
    ap.add_argument("--recipe-preset", default="mid", help="preset of the two-stage recipe")
    ap.add_argument("--reserve-c-s", type=float, default=130.0, help="seconds kept for phase c when b runs")
    ap.add_argument(
        "--cpu-smoke",
        action="store_true",
        help="run the same flow on the CPU with the tiny preset (checks the script, measures nothing meaningful)",
    )
    args = ap.parse_args()
    budget = Budget(args.budget_s)
    phases = set(args.phases.split(","))
    smoke = args.cpu_smoke
    if not torch.cuda.is_available() and not smoke:
        print("no CUDA device: this script is for the GPU (use `lighthouse-bench train --preset tiny` on a CPU)")
        return 2
    if smoke:
        torch.set_num_threads(1)
    dev = torch.device("cpu") if smoke else torch.device("cuda", torch.cuda.current_device())
    dtype, backend = ("fp32", None) if smoke else ("bf16", "cudnn")
    n_a, n_dense_c, n_lh_c = (
        ([512], [1024], [1024, 2048])
        if smoke
        else ([98304], [196608, 262144], [196608, 393216, 786432, 1048576, 1572864])
    )
    print(
        f"{torch.cuda.get_device_name(dev) if not smoke else 'CPU smoke run'}, torch {torch.__version__}, liger-kernel: "
        f"{'yes' if liger_available() else 'no (chunked cross-entropy)'}; budget {args.budget_s:.0f} s",
        flush=True,
    )
    out = args.out
    tp_dir = out / "throughput"
    paper = get_preset("tiny" if smoke else "paper-530m")
    argv = sys.argv
    codes = []

    def points(attention, seqs, preset=paper):
        return [TrainPoint(preset, attention, n) for n in seqs]

    ran_throughput = False
    if "a" in phases:
        opts = RunOptions(device=dev, dtype=dtype, steps=3, warmup=1, sdpa_backend=backend)
        skip = make_skip(budget, opts)

        def throughput(phase_points, phase: str, plot: bool) -> int:
            """One phase's points into tp_dir's train.csv (resumed once it exists), tagged with the phase."""
            resume = tp_dir.joinpath("train.csv").exists()
            return run_points(
                phase_points, opts, tp_dir, resume=resume, argv=argv, skip=skip, plot=plot, options={"phase": phase}
            )

        codes.append(throughput(points("dense", n_a) + points("lighthouse", n_a), "a", plot=False))
        no_recompute = RunOptions(device=dev, dtype=dtype, steps=3, warmup=1, sdpa_backend=backend, recompute=False)
        codes.append(
            run_points(
                points("lighthouse", n_a),
                no_recompute,
                tp_dir,
                resume=tp_dir.joinpath("train.csv").exists(),
                argv=argv,
                skip=make_skip(budget, no_recompute),
                plot=False,
                options={"phase": "a, --no-recompute"},
            )
        )
        ran_throughput = True
    if "b" in phases and not any(codes):
        preset = get_preset("tiny" if smoke else args.recipe_preset)
        reserve = args.reserve_c_s if "c" in phases else 0.0
        left = budget.left() - RESERVE_S - reserve
        # each arm: its training + build, compile and evaluation (~20%); the Lighthouse arm is not slower than dense
        minutes = min(args.arm_minutes, left / 2.6 / 60)
        if minutes < (0.05 if smoke else 0.5):
            print(f"phase b skipped: {left:.0f} s left before phase c's reserve")
        else:
            print(f"phase b: about {minutes:.1f} min of training per arm", flush=True)
            try:
                run_recipe(
                    preset,
                    RunOptions(device=dev, dtype=dtype, sdpa_backend=backend),
                    RecipeOptions(steps=200, dense_from=0.9, eval_every=25, val_windows=4, arm_minutes=minutes),
                    out / "recipe",
                    argv=argv,
                )
            except Exception as err:  # noqa: BLE001 - keep the throughput rows and go on to phase c
                print(f"phase b failed: {type(err).__name__}: {err}")
            torch.cuda.empty_cache()
    if "c" in phases and not any(codes):
        opts = RunOptions(device=dev, dtype=dtype, steps=1, warmup=0, sdpa_backend=backend)
        skip = make_skip(budget, opts)
        # dense at the first N (the same-run comparison), Lighthouse up to its memory limit, then longer dense;
        # a kernel failure that loses the CUDA context at a huge N then costs no dense row
        long_points = points("dense", n_dense_c[:1]) + points("lighthouse", n_lh_c) + points("dense", n_dense_c[1:])
        codes.append(throughput(long_points, "c", plot=True))
        ran_throughput = True
    elif ran_throughput:
        from lighthouse.train.plots import throughput_chart

        throughput_chart(tp_dir / "train.csv")

    sections = []
    for folder in (tp_dir, out / "recipe"):
        try:
            sections.append(train_section(folder, heading=f"## Training: {folder.name}").markdown)
        except (ValueError, OSError) as err:
            sections.append(f"## Training: {folder.name}\n\n(not run: {err})\n")
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text("\n".join(sections))
    print("\n" + "\n".join(sections))
    print(f"done in {args.budget_s - budget.left():.0f} s; everything under {out}")
    return max(codes) if codes else 0


if __name__ == "__main__":
    sys.exit(main())
