"""What the stock SDPA's first backward in a process waits on (issue 24 item 5), in fresh processes.

    python reports/h200/tools/sdpa_first_call.py --out reports/h200/coldstart/sdpa-first-call   # one H200: ~1 min

The warm first Lighthouse call at 96K (2.86 s, coldstart/2026-12-03-s4-sdpa/) is bounded below by the stock SDPA's
first backward (2.2 s with cuDNN or flash, coldstart/first-call-s4/), which any model pays at its first step. The
question this answers: is that cost per shape (then only the call itself can pay it) or per process and kernel
family (then a warm-up on a tiny shape, started before the first step, takes it off the first call)? And does a
Triton kernel's first launch (from a filled cache) wait for it when both run at once, as the precompile's loads
seemed to (2.5 s each beside the warm-up against 0.45 s alone)?

Each variant runs in a fresh process, a device synchronisation after each timed step; `CUDA_MODULE_LOADING` is
left as the image sets it unless the variant says otherwise. The sub-sequence shape of the 96K paper point
(B=1, H=8, S=18432, D=128, bf16) is `real`; `tiny` is (1, 8, 128, D). Rows (`sdpa_first_call.csv`): variant,
step, ms, status. `machine.json` beside it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
VARIANTS = {
    "cudnn-real": "cuDNN: the real shape's fwd, bwd, then again",
    "cudnn-tiny-then-real": "cuDNN: a tiny shape (same D) first, then the real shape",
    "cudnn-tiny-d64-then-real": "cuDNN: a tiny shape with D=64 first, then the real shape (D=128)",
    "flash-real": "flash: the real shape's fwd, bwd, then again",
    "flash-tiny-then-real": "flash: a tiny shape first, then the real shape",
    "efficient-real": "memory-efficient: the real shape's fwd, bwd",
    "cudnn-real-eager-loading": "cuDNN real shape with CUDA_MODULE_LOADING=EAGER (what lazy loading defers)",
    "cudnn-warm-thread": "cuDNN: a tiny-shape warm-up on a thread at start, 3 s of host work, then the real shape",
    "triton-beside-sdpa": "a cached Triton kernel's first launch on a thread while the real cuDNN bwd runs",
    "triton-alone": "a cached Triton kernel's first launch alone",
    "cudnn-real-scalar-loss": "cuDNN real shape, backward from a scalar loss (as training calls it), not a gradient",
    "cudnn-profiled": "cuDNN real shape, the first backward under cProfile and -X importtime (what Python runs then)",
}
BACKENDS = {"cudnn": "CUDNN_ATTENTION", "flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION"}


class _StackSampler(threading.Thread):
    """Every thread's Python stack every 10 ms (cProfile sees only its own thread; autograd's CUDA backward runs on
    a device thread, which enters Python only if the backward calls Python)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.counts, self.samples, self.halt = {}, 0, threading.Event()

    def run(self):
        import traceback

        me = threading.get_ident()
        while not self.halt.wait(0.01):
            self.samples += 1
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                frames = traceback.extract_stack(frame)[::-1][:6]
                stack = " <- ".join(f"{f.name}@{Path(f.filename).name}:{f.lineno}" for f in frames)
                self.counts[stack] = self.counts.get(stack, 0) + 1

    def stop(self):
        self.halt.set()
        self.join()

    def text(self) -> str:
        top = sorted(self.counts.items(), key=lambda kv: -kv[1])[:25]
        return f"{self.samples} samples (10 ms)\n" + "\n".join(f"{n:5d}  {stack}" for stack, n in top) + "\n"


def _child(variant: str) -> None:
    t0 = time.perf_counter()
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    rows = []

    def mark(step, t):
        rows.append((step, round((time.perf_counter() - t) * 1e3, 1)))

    mark("import_torch", t0)
    t = time.perf_counter()
    torch.zeros(1, device="cuda")
    torch.cuda.synchronize()
    mark("cuda_init", t)
    backend = BACKENDS.get(variant.split("-")[0], "CUDNN_ATTENTION")

    def sdpa(shape, tag):
        x = [torch.randn(shape, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3)]
        torch.cuda.synchronize()
        with sdpa_kernel(getattr(SDPBackend, backend)):
            t = time.perf_counter()
            out = F.scaled_dot_product_attention(*x, is_causal=True)
            torch.cuda.synchronize()
            mark(f"{tag}_fwd", t)
            dout = torch.ones_like(out)
            torch.cuda.synchronize()
            profile = variant == "cudnn-profiled" and tag == "real"
            if profile:
                import cProfile

                print("=== first backward begins", file=sys.stderr, flush=True)
                prof = cProfile.Profile()
                sampler = _StackSampler()
                sampler.start()
                prof.enable()
            t = time.perf_counter()
            if variant.endswith("scalar-loss"):
                (out * dout).sum().backward()
            else:
                torch.autograd.grad(out, x, dout)
            torch.cuda.synchronize()
            mark(f"{tag}_bwd", t)
            if profile:
                prof.disable()
                sampler.stop()
                print("=== first backward ends", file=sys.stderr, flush=True)
                Path(os.environ["SDPA_FIRST_PROFILE"]).with_suffix(".stacks.txt").write_text(sampler.text())
                prof.dump_stats(os.environ["SDPA_FIRST_PROFILE"])

    real, tiny = (1, 8, 18432, 128), (1, 8, 128, 128)
    if variant.startswith("triton"):
        import triton
        import triton.language as tl

        @triton.jit
        def _add_one(x_ptr, n, BLOCK: tl.constexpr):
            i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
            tl.store(x_ptr + i, tl.load(x_ptr + i, mask=i < n) + 1, mask=i < n)

        buf = torch.zeros(1024, device="cuda")

        def launch():
            t = time.perf_counter()
            _add_one[(1,)](buf, 1024, BLOCK=1024)
            torch.cuda.synchronize()
            mark("triton_first_launch", t)

        if variant == "triton-alone":
            launch()
        else:
            th = threading.Thread(target=launch)
            t = time.perf_counter()
            th.start()
            sdpa(real, "real")
            th.join()
            mark("both_done", t)
    elif variant == "cudnn-warm-thread":
        th = threading.Thread(target=sdpa, args=(tiny, "thread_tiny"))
        th.start()
        t = time.perf_counter()
        busy = time.perf_counter() + 3.0  # the model's build, in Python, meanwhile (holds the GIL as Python does)
        while time.perf_counter() < busy:
            sum(range(1000))
        mark("host_work", t)
        th.join()
        sdpa(real, "real")
        sdpa(real, "real_again")
    else:
        if "tiny-d64" in variant:
            sdpa((1, 8, 128, 64), "tiny_d64")
        elif "tiny" in variant:
            sdpa(tiny, "tiny")
        sdpa(real, "real")
        sdpa(real, "real_again")
    print(json.dumps(rows))


def _profile_text(stderr: str, out: Path) -> None:
    """first_bwd.txt: the imports made during the first backward (from -X importtime) and cProfile's top calls."""
    import io
    import pstats

    lines = stderr.splitlines()
    marks = [i for i, line in enumerate(lines) if line.startswith("=== first backward")]
    during = lines[marks[0] + 1 : marks[1]] if len(marks) == 2 else []
    text = io.StringIO()
    text.write("imports during the first backward (-X importtime: self us | cumulative us | module):\n")
    text.write("\n".join(during) + "\n\ncProfile of the first backward, by cumulative time:\n")
    pstats.Stats(str(out / "first_bwd.prof"), stream=text).sort_stats("cumulative").print_stats(40)
    stacks = out / "first_bwd.stacks.txt"
    if stacks.exists():
        text.write("\nevery thread's Python stack, sampled:\n" + stacks.read_text())
    (out / "first_bwd.txt").write_text(text.getvalue())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args()
    if args.child:
        return _child(args.child)
    args.out.mkdir(parents=True, exist_ok=True)
    cache = tempfile.mkdtemp(prefix="triton-cache-")
    base = dict(os.environ, TRITON_CACHE_DIR=cache)
    # fill Triton's cache for the triton variants (not measured)
    subprocess.run([sys.executable, __file__, "--out", str(args.out), "--child", "triton-alone"], env=base, check=False)
    with open(args.out / "sdpa_first_call.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(("variant", "step", "ms", "status"))
        for variant in args.variants.split(","):
            env = dict(base)
            if variant.endswith("eager-loading"):
                env["CUDA_MODULE_LOADING"] = "EAGER"
            extra = []
            if variant == "cudnn-profiled":  # cProfile's stats and the imports' times, for what the backward runs
                env["SDPA_FIRST_PROFILE"] = str(args.out / "first_bwd.prof")
                extra = ["-X", "importtime"]
            cmd = [sys.executable, *extra, __file__, "--out", str(args.out), "--child", variant]
            try:
                run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
                rows, status = json.loads(run.stdout.strip().splitlines()[-1]), "ok"
                if extra:
                    _profile_text(run.stderr, args.out)
            except Exception as err:  # one variant's failure leaves the others
                rows, status = [], f"failed: {type(err).__name__}: {str(err)[:200]}"
            for step, ms in rows or [("", "")]:
                w.writerow((variant, step, ms, status))
                print(variant, step, ms, status, flush=True)
            f.flush()
    import torch

    machine = dict(
        torch=torch.__version__,
        cuda=torch.version.cuda,
        cudnn=torch.backends.cudnn.version(),
        gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        module_loading=os.environ.get("CUDA_MODULE_LOADING", "(unset)"),
    )
    (args.out / "machine.json").write_text(json.dumps(machine, indent=1) + "\n")


if __name__ == "__main__":
    main()
