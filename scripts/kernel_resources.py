"""Registers, stack and instruction mix of the gather (forward, fan_in) and pull (scatter, pool_bwd) kernels as
compiled for an H200 (sm_90), on a machine without a GPU: the kernels' wrappers run on meta tensors at a profile
point, their launches are caught before they run and compiled offline with Triton's own specialisation and ptxas,
and the SASS is counted.

    python scripts/kernel_resources.py                         # 96K, k=1536, L=3, p=4, H=8, D=128, bf16
    python scripts/kernel_resources.py --n 65536 --heads 32 --kv-heads 8
    python scripts/kernel_resources.py --stage gather           # the forward gather only (repeatable)

STL/LDL: spill stores and loads (local memory) in the SASS; STACK counts bytes of local memory per thread.

Why: a stage's cost in post mode (rope='post') depends on what the rotation does to the kernel's registers
(occupancy), not only on its arithmetic; this shows both without device time. Static counts, not timings.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.pop("TRITON_INTERPRET", None)

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from lighthouse import LighthouseConfig  # noqa: E402
from lighthouse.kernels import gather, layer, scatter  # noqa: E402
from lighthouse.kernels.select import Selection  # noqa: E402
from lighthouse.plan import plan_for  # noqa: E402

BIN = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
REGS_PER_SM = 65536
MAX_WARPS_PER_SM = 64
TARGET = GPUTarget("cuda", 90, 32)


def compile_launch(fn, args, kwargs):
    """The compiled kernel of one caught launch fn[grid](*args, **kwargs), specialised as Triton's launcher
    does (its binder and _pack_args) for an sm_90 target; and its warps per program."""
    from triton.compiler import make_backend
    from triton.runtime.jit import create_function_from_signature

    backend = make_backend(TARGET)
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    bound, specialization, _ = binder(*args, **kwargs)
    options, signature, constexprs, attrs = fn._pack_args(backend, kwargs, bound, specialization, None)
    src = ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs)
    return triton.compile(src, target=TARGET, options=options.__dict__), options.num_warps


def sass_stats(compiled, num_warps: int) -> dict:
    """Registers, stack, occupancy bound by registers and the static instruction mix of a compiled kernel."""
    cubin = Path("/tmp") / f"kernel_resources_{os.getpid()}.cubin"
    cubin.write_bytes(compiled.asm["cubin"])
    try:
        sass = subprocess.run([str(BIN / "cuobjdump"), "-sass", str(cubin)], capture_output=True, text=True).stdout
        res = subprocess.run([str(BIN / "cuobjdump"), "-res-usage", str(cubin)], capture_output=True, text=True).stdout
    finally:
        cubin.unlink()
    regs = int(re.search(r"REG:(\d+)", res).group(1))
    stack = int(re.search(r"STACK:(\d+)", res).group(1))
    ops = {}
    for line in sass.splitlines():
        m = re.match(r"\s+/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)", line)
        if m:
            ops[m.group(1)] = ops.get(m.group(1), 0) + 1
    per_block = ((regs + 7) // 8 * 8) * 32 * num_warps
    blocks = min(REGS_PER_SM // per_block, MAX_WARPS_PER_SM // num_warps)
    ptx = compiled.asm["ptx"]
    return dict(
        regs=regs,
        stack=stack,
        warps_per_sm=blocks * num_warps,
        instrs=sum(ops.values()),
        mufu=ops.get("MUFU", 0),
        stl=ops.get("STL", 0),
        ldl=ops.get("LDL", 0),
        ldg=ops.get("LDG", 0),
        stg=ops.get("STG", 0),
        bra=ops.get("BRA", 0),
        f64=ops.get("DMUL", 0) + ops.get("DFMA", 0),
        libdevice_trig=len(re.findall(r"__nv_(?:sin|cos)f\.exit", ptx)),
    )


def catch(kernel):
    """Replace kernel.run so that its launches are recorded, not run; returns the record list and an undo."""
    calls = []
    original = kernel.run

    def run(*args, grid, warmup, **kwargs):
        calls.append((args, kwargs))

    kernel.run = run
    return calls, lambda: setattr(kernel, "run", original)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=98304)
    ap.add_argument("--topk", type=int, default=1536)
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--pooling", type=int, default=4)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=None)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--positions", action="store_true", help="post mode with a positions tensor (HAS_POS)")
    stage_names = ("gather", "scatter", "fan_in", "pool_bwd")
    ap.add_argument("--stage", choices=stage_names, action="append", help="compile only this stage (repeatable)")
    args = ap.parse_args(argv)
    hkv = args.kv_heads or args.heads
    meta = torch.device("meta")
    print("rope stage       launch  regs stack STL LDL warps/SM instrs MUFU LDG STG BRA f64 libdevice_sin_cos")
    for rope in ("pre", "post"):
        cfg = LighthouseConfig(topk=args.topk, levels=args.levels, pooling=args.pooling, rope=rope)
        plan = plan_for(cfg, 1, args.heads, hkv, args.n, args.head_dim)
        pos = torch.zeros(1, args.n, dtype=torch.int64, device=meta) if args.positions else None
        rotation = layer.rope_args(plan, meta, pos)
        q = torch.empty(1, args.heads, args.n, args.head_dim, dtype=torch.bfloat16, device=meta)
        kv = torch.empty(1, hkv, args.n, args.head_dim, dtype=torch.bfloat16, device=meta)
        s = plan.selected_len
        lm = torch.empty(1, hkv, s, dtype=torch.int64, device=meta)
        sel = Selection(lm, lm, lm, torch.empty(1, hkv, plan.pyramid_len, dtype=torch.int32, device=meta))
        subs_q = torch.empty(1, args.heads, s, args.head_dim, dtype=torch.bfloat16, device=meta)
        subs_kv = torch.empty(1, hkv, s, args.head_dim, dtype=torch.bfloat16, device=meta)
        stages = (
            ("gather", gather._gather_kernel, lambda: layer.run_gather(q, kv, kv, sel, plan, rotation)),
            ("scatter", scatter._pull_kernel, lambda: layer.run_scatter(subs_q, sel, plan)),
            ("fan_in", gather._gather_kernel, lambda: layer.run_fan_in(q, sel, plan)),
            (
                "pool_bwd",
                scatter._pull_kernel,
                lambda: layer.run_pool_bwd((subs_q, subs_kv, subs_kv), sel, plan, rotation),
            ),
        )
        for stage, kernel, call in stages:
            if args.stage and stage not in args.stage:
                continue
            calls, undo = catch(kernel)
            try:
                call()
            finally:
                undo()
            for i, (a, kw) in enumerate(calls):
                st = sass_stats(*compile_launch(kernel, a, kw))
                print(
                    f"{rope:4} {stage:11} {i:6} {st['regs']:5} {st['stack']:5} {st['stl']:3} {st['ldl']:3}"
                    f" {st['warps_per_sm']:8} {st['instrs']:6}"
                    f" {st['mufu']:4} {st['ldg']:3} {st['stg']:3} {st['bra']:3} {st['f64']:3} {st['libdevice_trig']:4}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
