"""Issue 24's host share, counted: what the host issues for one training fwd+bwd of the Triton path.

    python scripts/host_work.py                                   # CPU (TRITON_INTERPRET=1 is set for you)
    python scripts/host_work.py --seq 8192,98304 --topk 512,1536 --heads 8 --head-dim 128 --out reports/h200/host

For each point, one warm call of `lighthouse_attention(q, k, v, ..., impl='triton')` with requires_grad inputs and
its `out.backward(grad)`, counted per pass (fwd, bwd) and per stage of kernels/layer.py (`other`: the public
entry, the plan, autograd and the finiteness check outside the stages):
- Triton launches (every `kernel[grid](...)`, by wrapping Triton's `run`),
- aten ops (a TorchDispatchMode; ops a Triton launch does inside the interpreter are not counted), split into
  views (no new memory), allocations (a factory: empty, zeros, full, arange, ...), compute ops (fresh outputs
  or in place: on CUDA each launches a kernel);
- host-device syncs on CUDA: `.item()`/`bool()`/`int()` (aten._local_scalar_dense), nonzero and other ops whose
  output size depends on data, `.tolist()`, `.cpu()`, `.numpy()`, copies across devices that are not
  non_blocking into pinned memory, event/stream/device synchronize; and tensors built from host data
  (torch.tensor(...): a pageable copy per call on CUDA); on CUDA also CUDA event records and queries (`events`).
Each op is also attributed to the innermost function of this repository that issued it (`--by-origin`).
On the CPU the finiteness check is read at the call (two `.item()`); a CUDA training forward defers it (a pinned
copy and an event each), so those two syncs are CPU-only.

On CUDA, `--reps R` also times the host's issue time per stage: time.perf_counter around each stage function and
around each pass, the counting instruments off, torch.cuda.synchronize only between repetitions (outside the timed
region). Writes host_work.csv (counts) and host_time.csv (times) under --out when given.

`--stub-kernels` (CPU) times the Python glue alone: every Triton launch returns at once (the gather's outputs are
zeroed, so that v's finiteness screen reads finite rows) and the sub-sequence SDPA is one cheap autograd op of the
right shape; everything else runs (dispatch, plan, wrappers, allocations, the finiteness check, autograd). Per stage
host microseconds, the median of --reps calls, go to host_time.csv. It is CPU time with stubbed kernels: no Triton
launch cost, no cuDNN, and the check read at the call (no pinned copy, no event), so no GPU figure.

    python scripts/host_work.py --stub-kernels --seq 8192,98304 --topk 512,1536 --heads 1 --head-dim 16 --reps 2000
"""

from __future__ import annotations

import argparse
import collections
import csv
import os
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

if not torch.cuda.is_available():  # the kernels need the interpreter on the CPU; set before triton is imported
    os.environ.setdefault("TRITON_INTERPRET", "1")

from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from lighthouse import LighthouseConfig, lighthouse_attention  # noqa: E402
from lighthouse.kernels import layer  # noqa: E402

#: The stage functions of kernels/layer.py, looked up there as globals at every call (so a wrapper sees them).
STAGE_FUNCTIONS = {
    "scores": "run_scores",
    "select": "run_select",
    "gather": "run_gather",
    "sdpa": "run_sdpa",
    "scatter": "run_scatter",
    "fan_in": "run_fan_in",
    "sdpa_bwd": "run_sdpa_bwd",
    "pool_bwd": "run_pool_bwd",
}
OTHER = "other"
FACTORIES = {
    "empty",
    "empty_strided",
    "zeros",
    "ones",
    "full",
    "arange",
    "empty_like",
    "zeros_like",
    "ones_like",
    "full_like",
    "new_empty",
    "new_empty_strided",
    "new_zeros",
    "new_ones",
    "new_full",
    "scalar_tensor",
}
#: aten ops whose output size or value the host must read from the device on CUDA (a sync).
SYNC_OPS = {"_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique", "_unique2", "equal", "is_nonzero"}
HOST_DATA_OPS = {"lift_fresh", "lift_fresh_copy"}
KINDS = ("launches", "views", "allocs", "compute", "syncs", "host_data", "events")
COLUMNS = ("n", "pass", "stage", *KINDS)


class Counts:
    """Counters keyed (pass, stage, kind) and op details keyed (pass, stage, kind, name, origin). The pass and the
    stage are process-wide (autograd runs a CUDA backward on its own thread)."""

    def __init__(self):
        self.pass_ = "fwd"
        self.stage = OTHER
        self.in_launch = 0
        self.by_kind = collections.Counter()
        self.detail = collections.Counter()

    def add(self, kind: str, name: str, origin: str) -> None:
        self.by_kind[(self.pass_, self.stage, kind)] += 1
        self.detail[(self.pass_, self.stage, kind, name, origin)] += 1

    def total(self, kind: str, pass_=None, stage=None) -> int:
        return sum(
            c
            for (p, s, k), c in self.by_kind.items()
            if k == kind and (pass_ is None or p == pass_) and (stage is None or s == stage)
        )


def origin_of(frame) -> str:
    """The innermost function of this repository (kernels/alloc.py's helper skipped) on the Python stack."""
    root = str(ROOT) + os.sep
    here = str(Path(__file__).resolve())
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith(root) and name != here and not name.endswith(os.sep + "alloc.py"):
            return f"{os.path.relpath(name, ROOT)}:{frame.f_code.co_name}"
        frame = frame.f_back
    return "torch (autograd engine)"


def _fresh_outputs(func, out) -> int:
    """How many tensors the op returned that alias none of its inputs (new memory)."""
    outs = out if isinstance(out, (tuple, list)) else (out,)
    fresh = 0
    for ret, value in zip(func._schema.returns, outs):
        if ret.alias_info is not None:
            continue
        if isinstance(value, torch.Tensor):
            fresh += 1
        elif isinstance(value, (tuple, list)):
            fresh += sum(isinstance(v, torch.Tensor) for v in value)
    return fresh


def _crosses_devices(name: str, args, kwargs) -> bool:
    """A copy between devices that makes the host wait: not non_blocking into pinned host memory (or from it)."""
    if name == "copy_" and len(args) >= 2:
        dst, src = args[0], args[1]
        if dst.device == src.device:
            return False
        non_blocking = bool(args[2] if len(args) > 2 else kwargs.get("non_blocking", False))
        pinned = dst.is_pinned() if dst.device.type == "cpu" else src.is_pinned()
        return not (non_blocking and pinned)
    if name == "_to_copy" and args:
        dev = kwargs.get("device")
        return dev is not None and torch.device(dev) != args[0].device and not kwargs.get("non_blocking", False)
    return False


class OpCounter(TorchDispatchMode):
    def __init__(self, counts: Counts):
        super().__init__()
        self.counts = counts

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        c = self.counts
        if c.in_launch:  # the interpreter's own tensor work inside a Triton launch
            return out
        name = func.overloadpacket.__name__
        origin = origin_of(sys._getframe(1))
        if name in SYNC_OPS or _crosses_devices(name, args, kwargs):
            c.add("syncs", name, origin)
        if name in HOST_DATA_OPS:
            c.add("host_data", name, origin)
        elif name in FACTORIES:
            c.add("allocs", name, origin)
        elif _fresh_outputs(func, out) or func._schema.is_mutable:
            c.add("compute", name, origin)
        else:
            c.add("views", name, origin)
        return out


@contextmanager
def _patched(owner, attr: str, make):
    """owner.attr replaced by make(original) inside the block."""
    original = getattr(owner, attr)
    setattr(owner, attr, make(original))
    try:
        yield
    finally:
        setattr(owner, attr, original)


def _launch_classes():
    """Triton's kernel classes whose `run` a `kernel[grid](...)` calls (compiled and interpreted)."""
    from triton.runtime import interpreter, jit

    return [jit.JITFunction, interpreter.InterpretedFunction]


@contextmanager
def stages(counts: Counts, times=None):
    """Every stage function of kernels/layer.py sets counts.stage while it runs; with `times` (a Counter) its
    host time (perf_counter) is added under (pass, stage)."""
    with ExitStack() as stack:
        for stage, fn_name in STAGE_FUNCTIONS.items():

            def make(original, stage=stage):
                def staged(*args, **kwargs):
                    outer, counts.stage = counts.stage, stage
                    t0 = time.perf_counter()
                    try:
                        return original(*args, **kwargs)
                    finally:
                        if times is not None:
                            times[(counts.pass_, stage)] += time.perf_counter() - t0
                        counts.stage = outer

                return staged

            stack.enter_context(_patched(layer, fn_name, make))
        yield


@contextmanager
def counting(counts: Counts):
    """All counting instruments on: Triton launches, syncs at the Python level, aten ops, stages."""

    def launch(original):
        def run(self, *args, **kwargs):
            counts.add("launches", getattr(self, "__name__", "?"), origin_of(sys._getframe(1)))
            counts.in_launch += 1
            try:
                return original(self, *args, **kwargs)
            finally:
                counts.in_launch -= 1

        return run

    def counted(kind, what):
        def make(original):
            def wrapped(*args, **kwargs):
                if not counts.in_launch:
                    counts.add(kind, what, origin_of(sys._getframe(1)))
                return original(*args, **kwargs)

            return wrapped

        return make

    def python_sync(what):
        return counted("syncs", what)

    with ExitStack() as stack:
        for cls in _launch_classes():
            stack.enter_context(_patched(cls, "run", launch))
        for method in ("tolist", "cpu", "numpy"):  # .item()/bool() reach aten._local_scalar_dense
            stack.enter_context(_patched(torch.Tensor, method, python_sync(f"Tensor.{method}")))
        if torch.cuda.is_available():
            stack.enter_context(_patched(torch.cuda, "synchronize", python_sync("cuda.synchronize")))
            stack.enter_context(_patched(torch.cuda.Event, "synchronize", python_sync("Event.synchronize")))
            stack.enter_context(_patched(torch.cuda.Stream, "synchronize", python_sync("Stream.synchronize")))
            for method in ("record", "query"):  # not syncs: driver calls per call (the deferred finiteness check)
                stack.enter_context(_patched(torch.cuda.Event, method, counted("events", f"Event.{method}")))
        stack.enter_context(stages(counts))
        stack.enter_context(OpCounter(counts))
        yield


#: Triton kernels whose outputs the layer reads back on the host when their launch is stubbed: the positional
#: argument to zero (the gather's OUTS: v_sub feeds the finiteness screen; garbage could read as NaN).
ZEROED_OUTPUTS = {"_gather_kernel": 2}


def _stub_sdpa(q, k, v, backend=None):
    """The sub-sequence SDPA stubbed: one autograd op of the output's shape, so that its backward reaches every
    sub-sequence leaf (the nested autograd.grad of the sdpa_bwd stage still runs)."""
    return q + k + v


@contextmanager
def stubbed_kernels():
    """Every Triton launch a no-op (after Triton's own `kernel[grid]` proxy), the SDPA one add (see the docstring)."""

    def stub(original):
        def run(self, *args, grid=None, warmup=False, **kwargs):
            i = ZEROED_OUTPUTS.get(getattr(self, "__name__", ""))
            if i is not None and not kwargs.get("FAN_IN"):  # the backward's fan-in is read by no host check
                for out in args[i] if isinstance(args[i], tuple) else (args[i],):
                    out.zero_()

        return run

    with ExitStack() as stack:
        for cls in _launch_classes():
            stack.enter_context(_patched(cls, "run", stub))
        stack.enter_context(_patched(layer, "causal_sdpa", lambda original: _stub_sdpa))
        yield


def make_inputs(n: int, args, device, dtype):
    g = torch.Generator(device="cpu").manual_seed(0)

    def rand(heads):
        x = torch.randn(args.batch, heads, n, args.head_dim, generator=g).to(device=device, dtype=dtype)
        return x.requires_grad_()

    q, k, v = rand(args.heads), rand(args.kv_heads or args.heads), rand(args.kv_heads or args.heads)
    grad = torch.randn(args.batch, args.heads, n, args.head_dim, generator=g).to(device=device, dtype=dtype)
    return q, k, v, grad


def one_step(q, k, v, grad, cfg, counts: Counts):
    """One training step of the layer: forward, backward; the pass recorded in counts."""
    for t in (q, k, v):
        t.grad = None
    counts.pass_ = "fwd"
    out = lighthouse_attention(q, k, v, config=cfg)
    counts.pass_ = "bwd"
    out.backward(grad)
    counts.pass_ = "fwd"


def count_point(n: int, topk: int, args, device, dtype) -> Counts:
    """The counts of one warm fwd+bwd (a first, uncounted step compiles the kernels and fills the caches)."""
    cfg = LighthouseConfig(
        levels=args.levels, pooling=args.pooling, topk=topk, impl="triton", sdpa_backend=args.sdpa_backend
    )
    q, k, v, grad = make_inputs(n, args, device, dtype)
    one_step(q, k, v, grad, cfg, Counts())
    counts = Counts()
    with counting(counts):
        one_step(q, k, v, grad, cfg, counts)
    return counts


def time_point(n: int, topk: int, args, device, dtype) -> dict:
    """Median host time (ms) per pass and stage over args.reps warm steps, instruments off but the stage clocks."""
    cfg = LighthouseConfig(
        levels=args.levels, pooling=args.pooling, topk=topk, impl="triton", sdpa_backend=args.sdpa_backend
    )
    q, k, v, grad = make_inputs(n, args, device, dtype)
    counts = Counts()
    samples = collections.defaultdict(list)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for rep in range(args.warmup + args.reps):
        times = collections.Counter()
        with stages(counts, times):
            sync()
            for t in (q, k, v):
                t.grad = None
            t0 = time.perf_counter()
            counts.pass_ = "fwd"
            out = lighthouse_attention(q, k, v, config=cfg)
            t1 = time.perf_counter()
            counts.pass_ = "bwd"
            out.backward(grad)
            t2 = time.perf_counter()
            counts.pass_ = "fwd"
        sync()
        if rep < args.warmup:
            continue
        for pass_, total in (("fwd", t1 - t0), ("bwd", t2 - t1)):
            staged = sum(sec for (p, _), sec in times.items() if p == pass_)
            samples[(pass_, "total")].append(total)
            samples[(pass_, OTHER)].append(total - staged)
        for key, sec in times.items():
            samples[key].append(sec)
        samples[("fwd+bwd", "total")].append(t2 - t0)
    return {key: 1e3 * sorted(xs)[len(xs) // 2] for key, xs in samples.items()}


def rows_of(n: int, counts: Counts):
    """One row per (pass, stage) with any count, then per-pass and overall totals."""
    rows = []
    for pass_, names in layer.STAGES.items():
        for stage in (*names, OTHER):
            row = {"n": n, "pass": pass_, "stage": stage, **{k: counts.total(k, pass_, stage) for k in KINDS}}
            if any(row[k] for k in KINDS):
                rows.append(row)
        rows.append({"n": n, "pass": pass_, "stage": "total", **{k: counts.total(k, pass_) for k in KINDS}})
    rows.append({"n": n, "pass": "fwd+bwd", "stage": "total", **{k: counts.total(k) for k in KINDS}})
    return rows


def print_table(rows, out=sys.stdout, keys=COLUMNS) -> None:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in keys}
    print("  ".join(c.ljust(widths[c]) for c in keys), file=out)
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in keys), file=out)


def print_detail(counts: Counts, out=sys.stdout) -> None:
    """Every counted item except views: pass, stage, kind, op or kernel, where it came from, how many."""
    items = sorted(
        ((k, c) for k, c in counts.detail.items() if k[2] != "views"), key=lambda kc: (kc[0][0] != "fwd", kc[0])
    )
    for (pass_, stage, kind, name, origin), c in items:
        print(f"  {pass_:3s} {stage:8s} {kind:9s} {c:3d} x {name:28s} {origin}", file=out)


def estimate_ms(row: dict, launch_us: float, op_us: float, view_us: float) -> float:
    """Host time the counts predict: a launch or a kernel-issuing aten op at its typical cost, views cheaper."""
    ops = row["allocs"] + row["compute"] + row["host_data"]
    return (row["launches"] * launch_us + ops * op_us + row["views"] * view_us) / 1e3


def _ints(text: str):
    return [int(x) for x in str(text).split(",") if x.strip()]


def main(argv=None) -> int:
    cuda = torch.cuda.is_available()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seq", default="2048,4096", help="sequence lengths N, comma-separated")
    ap.add_argument("--topk", default="128", help="k per N (one value for all, or one per N)")
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--pooling", type=int, default=4)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--heads", type=int, default=8 if cuda else 2)
    ap.add_argument("--kv-heads", type=int, default=None, help="default: --heads (no GQA)")
    ap.add_argument("--head-dim", type=int, default=128 if cuda else 16)
    ap.add_argument("--dtype", default="bfloat16" if cuda else "float32", choices=("bfloat16", "float16", "float32"))
    ap.add_argument("--sdpa-backend", default="cudnn" if cuda else None, help="the sweep's: cudnn on CUDA")
    ap.add_argument("--reps", type=int, default=200, help="timed steps per point (CUDA, or --stub-kernels)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--launch-us", type=float, default=20.0, help="host cost of one Triton launch, for the estimate")
    ap.add_argument("--op-us", type=float, default=7.0, help="host cost of one kernel-issuing aten op")
    ap.add_argument("--view-us", type=float, default=2.0, help="host cost of one view op")
    ap.add_argument("--by-origin", action="store_true", help="also list every counted op with its origin")
    ap.add_argument(
        "--stub-kernels", action="store_true", help="CPU: time the Python glue, Triton launches and SDPA stubbed"
    )
    ap.add_argument("--out", type=Path, default=None, help="folder for host_work.csv (and host_time.csv on CUDA)")
    args = ap.parse_args(argv)
    seqs, topks = _ints(args.seq), _ints(args.topk)
    if not seqs or len(topks) not in (1, len(seqs)):
        print("Error: --topk takes one value or one per --seq value", file=sys.stderr)
        return 2
    topks = topks * len(seqs) if len(topks) == 1 else topks
    if args.stub_kernels and cuda:
        print("Error: --stub-kernels times the glue on the CPU; run it where CUDA is absent", file=sys.stderr)
        return 2
    if args.stub_kernels:
        torch.set_num_threads(1)  # the stubbed glue's own tensor work (tiny) on one thread: steadier medians
    device = torch.device("cuda" if cuda else "cpu")
    dtype = getattr(torch, args.dtype)
    all_rows, time_rows = [], []
    for n, topk in zip(seqs, topks):
        try:
            with stubbed_kernels() if args.stub_kernels else ExitStack():
                counts = count_point(n, topk, args, device, dtype)
        except ValueError as err:
            print(f"Error: N={n}, topk={topk}: {err}", file=sys.stderr)
            return 2
        rows = rows_of(n, counts)
        for r in rows:
            r["topk"] = topk
            r["est_ms"] = round(estimate_ms(r, args.launch_us, args.op_us, args.view_us), 3)
        all_rows += rows
        print(
            f"\nN={n} k={topk} L={args.levels} p={args.pooling} B={args.batch} H={args.heads} D={args.head_dim} "
            f"{args.dtype} on {device.type}; est_ms: {args.launch_us:g} us/launch, {args.op_us:g} us/op, "
            f"{args.view_us:g} us/view"
        )
        print_table(rows, keys=(*COLUMNS[1:], "est_ms"))
        if args.by_origin:
            print_detail(counts)
        if (cuda or args.stub_kernels) and args.reps > 0:
            with stubbed_kernels() if args.stub_kernels else ExitStack():
                times = time_point(n, topk, args, device, dtype)
            what = "CPU, kernels stubbed" if args.stub_kernels else device.type
            print(f"host ms per stage ({what}; median of {args.reps} steps):")
            for (pass_, stage), ms in sorted(times.items()):
                print(f"  {pass_:7s} {stage:8s} {ms:8.3f}")
                time_rows.append({"n": n, "topk": topk, "pass": pass_, "stage": stage, "host_ms": round(ms, 4)})
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        _write(args.out / "host_work.csv", all_rows, ("n", "topk", *COLUMNS[1:], "est_ms"))
        if time_rows:
            _write(args.out / "host_time.csv", time_rows, ("n", "topk", "pass", "stage", "host_ms"))
    return 0


def _write(path: Path, rows, columns) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)


if __name__ == "__main__":
    sys.exit(main())
