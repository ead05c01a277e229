"""The layer's cold compile through kernels/precompile.py, on a machine WITHOUT a GPU: serial against threads.

Why: Triton compiles a call's kernels one after the other at their first launches; kernels/precompile.py compiles
them at once in threads before the first launch (reports/PERF_NOTES.md, step 18). This times that code path itself
offline: layer.planned_launches at a profile point, then precompile.warm (JITFunction.warmup in threads) with
Triton's driver replaced by a stand-in that names an sm_90 target (no GPU is touched; the module and launcher
loading, which needs one, is left out: each launch then reports not ready, which is expected here). Each run is a
fresh process with an empty TRITON_CACHE_DIR, as on a fresh machine.

    python scripts/precompile_times.py                        # 96K, k=1536, L=3, p=4, H=8, D=128, bf16, 1 and 2 threads
    python scripts/precompile_times.py --workers 1,2,4 --rope pre --repeat 2
    python scripts/precompile_times.py --repeat 3 --out reports/cpu/precompile/precompile_times.csv
    python scripts/precompile_times.py --summary reports/cpu/precompile/precompile_times.csv   # the table, from the CSV

A CPU measurement: absolute times move with the machine's load; the ratio serial / threads is what it is for.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(rope: str, workers: int, n: int, topk: int, levels: int, pooling: int) -> dict:
    os.environ.pop("TRITON_INTERPRET", None)
    import torch
    from triton.backends.compiler import GPUTarget
    from triton.runtime import driver

    from lighthouse import LighthouseConfig
    from lighthouse.kernels import layer, precompile
    from lighthouse.kernels.rope import rope_args
    from lighthouse.plan import plan_for

    class OfflineDriver:  # what JITFunction.warmup asks of the driver, for an H200 (sm_90)
        def get_current_device(self):
            return 0

        def get_current_stream(self, device):
            return 0

        def get_current_target(self):
            return GPUTarget("cuda", 90, 32)

    driver.set_active(OfflineDriver())
    torch.cuda.device = lambda device: contextlib.nullcontext()  # this script's process only: no CUDA here
    cfg = LighthouseConfig(topk=topk, levels=levels, pooling=pooling, rope=rope, impl="triton")
    plan = plan_for(cfg, 1, 8, 8, n, 128)
    meta = torch.device("meta")
    q, k, v = (torch.empty(1, 8, n, 128, dtype=torch.bfloat16, device=meta) for _ in range(3))
    t0 = time.perf_counter()
    launches = layer.planned_launches(q, k, v, plan, rope_args(plan, meta), grad=True)
    t1 = time.perf_counter()
    precompile.warm(launches, torch.device("cuda", 0), workers=workers)
    t2 = time.perf_counter()
    compiled = sum(
        len(getattr(x.kernel, "device_caches", {}).get(0, ({},))[0])
        for x in {id(x.kernel): x for x in launches}.values()
    )
    return dict(
        rope=rope,
        workers=workers,
        launches=len(launches),
        compiled=compiled,
        plan_ms=round((t1 - t0) * 1e3, 1),
        compile_s=round(t2 - t1, 2),
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=98304)
    ap.add_argument("--topk", type=int, default=1536)
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--pooling", type=int, default=4)
    ap.add_argument("--rope", default="pre,post")
    ap.add_argument("--workers", default="1,2", help="comma list of thread counts (1: serial)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each (rope, workers), alternating")
    ap.add_argument("--out", type=Path, default=None, help="also write the rows to this CSV")
    ap.add_argument("--summary", type=Path, default=None, help="print the means and ratios of a CSV written by --out")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.summary:
        summary(a.summary)
        return 0
    if a.child:
        rope, workers = a.child.split(",")
        print(json.dumps(child(rope, int(workers), a.n, a.topk, a.levels, a.pooling)))
        return 0
    print("rope workers launches compiled plan_ms compile_s")
    rows = []
    for run in range(a.repeat):
        for rope in a.rope.split(","):
            for workers in a.workers.split(","):
                env = dict(os.environ, TRITON_CACHE_DIR=tempfile.mkdtemp(prefix="lh-precompile-"))
                env["PYTHONPATH"] = f"{ROOT}{os.pathsep}" + env.get("PYTHONPATH", "")
                sizes = ["--n", str(a.n), "--topk", str(a.topk), "--levels", str(a.levels), "--pooling", str(a.pooling)]
                out = subprocess.run(
                    [sys.executable, __file__, "--child", f"{rope},{workers}", *sizes],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                r = json.loads(out.strip().splitlines()[-1])
                rows.append({"run": run, **{c: r[c] for c in COLUMNS[1:]}})
                print(
                    f"{r['rope']:4s} {r['workers']:7d} {r['launches']:8d} {r['compiled']:8d} {r['plan_ms']:7.1f} "
                    f"{r['compile_s']:9.2f}",
                    flush=True,
                )
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        with a.out.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
        summary(a.out)
    return 0


#: The columns of --out: one row per run, placement and thread count.
COLUMNS = ("run", "rope", "workers", "launches", "compiled", "plan_ms", "compile_s")


def summary(path: Path) -> None:
    """Per placement: each thread count's runs and mean, and the serial mean over each one's."""
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for rope in dict.fromkeys(r["rope"] for r in rows):
        mine = [r for r in rows if r["rope"] == rope]
        means = {}
        for workers in dict.fromkeys(r["workers"] for r in mine):
            times = [float(r["compile_s"]) for r in mine if r["workers"] == workers]
            means[workers] = sum(times) / len(times)
            print(
                f"{rope} {workers} thread(s): "
                + ", ".join(f"{t:.2f}" for t in times)
                + f" s, mean {means[workers]:.2f}"
                f" ({mine[0]['launches']} launches, planned in {min(float(r['plan_ms']) for r in mine):.1f}-"
                f"{max(float(r['plan_ms']) for r in mine):.1f} ms)"
            )
        serial = means.get("1")
        for workers, mean in means.items():
            if serial and workers != "1":
                print(f"{rope} serial / {workers} threads: {serial / mean:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
