"""Where the warm first call goes (issue 13): the layer's first forward and backward, stage by stage, in fresh
processes whose Triton cache is already filled, for each SDPA backend of the sub-sequence.

    python reports/h200/tools/first_call.py --out reports/h200/coldstart/first-call     # one H200: about 1 minute

`reports/h200/tools/cold_start.py` measured a warm first call (fresh process, Triton's disk cache filled) of 2.8-3.5 s, of
which the first backward is 2.2-2.9 s with no Triton compile. This script splits that time:

1. A fill process runs the layer once so that Triton's cache (TRITON_CACHE_DIR, a temporary folder) holds every
   kernel; it is not measured.
2. For each variant a fresh process with that cache times, with a device synchronisation after each step:
   CUDA context and inputs; then either the layer's stages one by one (`kernels.layer.run_<stage>`, the same
   functions the layer runs) for the first and then the second time, or (variant `sdpa-first`) dense causal SDPA
   on the sub-sequence's shape first, alone, and then the whole layer's first call.
   (Until commit fd02216 the `sdpa-first` and `autograd-first` variants ran the forward's scores, select and
   gather once, untimed, to learn S: the committed rows of reports/h200/coldstart/first-call/ for those variants
   time the layer with its forward Triton kernels already loaded.)
   Variants: stages with the cuDNN sub-sequence SDPA (the benchmark's default), with flash, `sdpa-first`
   with cuDNN and with flash, and `autograd-first` (the first backward of a tiny elementwise op, then as
   `sdpa-first`): what any first CUDA backward of a process costs, Lighthouse or not.
Rows (`first_call.csv`, one per timed step): variant, backend, call (first/second), stage, ms. `machine.json`
beside it. A variant that fails writes a row with its status and the others go on.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]  # the checkout's root (this file: reports/h200/tools/)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

COLUMNS = ("variant", "backend", "n", "topk", "levels", "pooling", "call", "stage", "ms", "status")
#: (variant, sub-sequence SDPA backend)
VARIANTS = [
    ("stages", "cudnn"),
    ("stages", "flash"),
    ("sdpa-first", "cudnn"),
    ("sdpa-first", "flash"),
    ("autograd-first", "cudnn"),
]


def _append(path: Path, row: dict) -> None:
    """One row of first_call.csv, flushed (cold_start.py's writer, with this file's columns)."""
    from cold_start import _append as append_row  # this folder is on sys.path when a script runs

    append_row(path, row, COLUMNS)


def child(variant: str, backend: str, n: int, topk: int, levels: int, pooling: int, out: Path) -> int:
    t_start = time.perf_counter()
    import torch

    from lighthouse import LighthouseConfig, lighthouse_attention
    from lighthouse.kernels import layer
    from lighthouse.plan import make_plan
    from lighthouse.sdpa import causal_sdpa

    base = dict(variant=variant, backend=backend, n=n, topk=topk, levels=levels, pooling=pooling, status="ok")

    def record(call, stage, seconds):
        _append(out, dict(base, call=call, stage=stage, ms=round(seconds * 1e3, 2)))

    record("setup", "import", time.perf_counter() - t_start)
    t = time.perf_counter()
    torch.cuda.init()
    torch.empty(1, device="cuda")
    torch.cuda.synchronize()
    record("setup", "cuda_context", time.perf_counter() - t)

    g = torch.Generator(device="cuda").manual_seed(0)
    shape = (1, 8, n, 128)
    q, k, v, go = (torch.randn(shape, generator=g, device="cuda", dtype=torch.bfloat16) for _ in range(4))
    cfg = LighthouseConfig(levels=levels, pooling=pooling, topk=topk, impl="triton", sdpa_backend=backend)
    plan = make_plan(cfg, q, k, v)
    torch.cuda.synchronize()

    def timed(call, stage, fn):
        t0 = time.perf_counter()
        result = fn()
        torch.cuda.synchronize()
        record(call, stage, time.perf_counter() - t0)
        return result

    if variant == "stages":
        for call in ("first", "second"):
            with torch.no_grad():
                scores = timed(call, "scores", lambda: layer.run_scores(q, k, v, plan))
                sel = timed(call, "select", lambda: layer.run_select(scores, plan))
                subs = timed(call, "gather", lambda: layer.run_gather(q, k, v, sel, plan))
            subs = [x.detach().requires_grad_() for x in subs]
            with torch.enable_grad():
                out_sub = timed(call, "sdpa", lambda: layer.run_sdpa(*subs, plan))
            with torch.no_grad():
                timed(call, "scatter", lambda: layer.run_scatter(out_sub.detach(), sel, plan))
                d_out_sub = timed(call, "fan_in", lambda: layer.run_fan_in(go, sel, plan))
            d_subs = timed(call, "sdpa_bwd", lambda: layer.run_sdpa_bwd(out_sub, subs, d_out_sub))
            with torch.no_grad():
                timed(call, "pool_bwd", lambda: layer.run_pool_bwd(d_subs, sel, plan))
    else:  # sdpa-first: the stock kernel's own first call on the sub-sequence's shape, then the whole layer
        if variant == "autograd-first":  # the process's first CUDA backward of all, on one elementwise op
            x = torch.ones(1024, device="cuda", requires_grad=True)
            y = timed("first", "tiny_elementwise_fwd", lambda: (x * 2.0).sum())
            timed("first", "tiny_elementwise_bwd", lambda: y.backward())
            y = timed("second", "tiny_elementwise_fwd", lambda: (x * 2.0).sum())
            timed("second", "tiny_elementwise_bwd", lambda: y.backward())
        s = plan.selected_len  # known from the plan: nothing of the layer runs before its timed first call
        qs, ks, vs = (
            torch.randn(1, 8, s, 128, generator=g, device="cuda", dtype=torch.bfloat16, requires_grad=True)
            for _ in range(3)
        )
        o = timed("first", f"dense_sdpa_fwd_s{s}", lambda: causal_sdpa(qs, ks, vs, backend))
        # backward from a scalar loss, as training calls it (a gradient tensor handed to backward makes autograd
        # import sympy at a process's first call: reports/h200/coldstart/sdpa-first-profiled/)
        timed("first", f"dense_sdpa_bwd_s{s}", lambda: o.sum().backward())
        for t_ in (q, k, v):
            t_.requires_grad_(True)
        for call in ("first", "second"):
            y = timed(call, "layer_fwd", lambda: lighthouse_attention(q, k, v, config=cfg))
            timed(call, "layer_bwd", lambda: (y * go).sum().backward())
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("out/first-call"))
    ap.add_argument("--config", default="98304,1536,3,4", help="N,k,L,p (default the paper point 98304,1536,3,4)")
    ap.add_argument(
        "--variants",
        default=",".join(sorted({v for v, _ in VARIANTS})),
        help="comma list of variants to run (default all): stages, sdpa-first, autograd-first",
    )
    ap.add_argument("--child", nargs=2, metavar=("VARIANT", "BACKEND"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    n, topk, levels, pooling = (int(x) for x in args.config.split(","))
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path = args.out / "first_call.csv"
    if args.child:
        return child(*args.child, n, topk, levels, pooling, csv_path)

    try:
        from lighthouse.harness import machine

        (args.out / "machine.json").write_text(json.dumps(machine.collect(sys.argv), indent=2, default=str))
    except Exception as err:  # machine info is a courtesy; never lose the run over it
        print(f"machine.json not written: {err}", flush=True)
    cache = tempfile.mkdtemp(prefix="lh-first-call-")
    env = dict(os.environ, TRITON_CACHE_DIR=cache, PYTHONPATH=f"{ROOT}{os.pathsep}" + os.environ.get("PYTHONPATH", ""))
    fill = [
        sys.executable,
        "-c",
        (
            "import torch; from lighthouse import LighthouseConfig, lighthouse_attention as f\n"
            f"q, k, v = (torch.randn(1, 8, {n}, 128, device='cuda', dtype=torch.bfloat16, requires_grad=True) for _ in range(3))\n"
            "for b in ('cudnn', 'flash'):\n"
            f"    f(q, k, v, config=LighthouseConfig(levels={levels}, pooling={pooling}, topk={topk}, impl='triton', sdpa_backend=b)).sum().backward()\n"
            "torch.cuda.synchronize()"
        ),
    ]
    t0 = time.time()
    proc = subprocess.run(fill, env=env, capture_output=True, text=True, timeout=240)
    print(f"fill process: {time.time() - t0:.1f} s, exit {proc.returncode}", flush=True)
    if proc.returncode:
        print(proc.stderr[-3000:], flush=True)
    wanted = set(args.variants.split(","))
    for variant, backend in [vb for vb in VARIANTS if vb[0] in wanted]:
        t0 = time.time()
        try:
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--out",
                    str(args.out),
                    "--config",
                    args.config,
                    "--child",
                    variant,
                    backend,
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            status = "ok" if proc.returncode == 0 else "error: " + (proc.stderr.strip().splitlines() or ["?"])[-1]
            if proc.returncode:
                print(proc.stderr[-3000:], flush=True)
        except subprocess.TimeoutExpired:
            status = "timeout"
        print(f"{variant:10s} {backend:6s}: process {time.time() - t0:5.1f} s  {status}", flush=True)
        if status != "ok":
            _append(
                csv_path,
                dict(
                    variant=variant,
                    backend=backend,
                    n=n,
                    topk=topk,
                    levels=levels,
                    pooling=pooling,
                    status=status[:300],
                ),
            )
    if csv_path.exists():
        print(csv_path.read_text(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
