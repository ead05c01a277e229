"""The layer's cold compile through kernels/precompile.py, on a machine WITHOUT a GPU: serial against threads.

Why: Triton compiles a call's kernels one after the other at their first launches; kernels/precompile.py compiles
them at once in threads before the first launch (reports/PERF_NOTES.md, step 18). This times that code path itself
offline: layer.planned_launches at a profile point, then precompile.warm (JITFunction.warmup in threads) with
Triton's driver replaced by a stand-in that names an sm_90 target (no GPU is touched; the module and launcher
loading, which needs one, is left out: each launch then reports not ready, which is expected here). Each run is a
fresh process with an empty TRITON_CACHE_DIR, as on a fresh machine.

    python scripts/precompile_times.py                        # 96K, k=1536, L=3, p=4, H=8, D=128, bf16, 1 and 2 threads
    python scripts/precompile_times.py --workers 1,2,4 --rope pre --repeat 2

A CPU measurement: absolute times move with the machine's load; the ratio serial / threads is what it is for.
"""

from __future__ import annotations

import argparse
import contextlib
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
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        rope, workers = a.child.split(",")
        print(json.dumps(child(rope, int(workers), a.n, a.topk, a.levels, a.pooling)))
        return 0
    print("rope workers launches compiled plan_ms compile_s")
    for _ in range(a.repeat):
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
                print(
                    f"{r['rope']:4s} {r['workers']:7d} {r['launches']:8d} {r['compiled']:8d} {r['plan_ms']:7.1f} "
                    f"{r['compile_s']:9.2f}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
