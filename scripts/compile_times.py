"""Compile time of every Triton kernel variant the layer launches, measured on a machine WITHOUT a GPU.

Why: a fresh process spends most of the layer's first call compiling Triton kernels (issue 13). Triton
compiles for a CUDA target without a GPU (ptxas ships in its wheel), so where the time goes can be found,
and cut, on a CPU-only machine. The stage wrappers are called on `meta` tensors with their kernels replaced
by a recorder, so the variants compiled are exactly those the layer launches (same constexprs, same
integer specialisations); each is then compiled with `triton.compile` for sm_90 into an empty cache,
stage by stage (ttir, ttgir, llir, ptx, cubin) timed.

    PYTHONPATH=$PWD python scripts/compile_times.py --config 98304,1536,3,4 --out /tmp/compile.csv

Absolute times depend on the CPU (the H200 host compiles about as fast as a desktop core); the ratios
between kernels and between code versions are what this is for.
"""

from __future__ import annotations

import argparse
import inspect
import csv
import os
import re
import sys
import tempfile
import time
from typing import Dict, List

# An empty cache, before triton is imported, so every variant really compiles.
os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="lh-compile-")

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402

from lighthouse.config import LighthouseConfig  # noqa: E402
from lighthouse.plan import LighthousePlan  # noqa: E402

TARGET = GPUTarget("cuda", 90, 32)
DTYPES = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32", torch.int32: "i32", torch.int64: "i64"}


class Recorder:
    """Stands in for a JITFunction: `kernel[grid](*args, **kw)` records the call instead of launching."""

    def __init__(self, fn, calls: list):
        self.fn, self.calls = fn, calls

    def __getitem__(self, grid):
        def record(*args, **kwargs):
            self.calls.append((self.fn, grid, args, kwargs))

        return record


def _kernel_modules():
    import importlib

    mods = {}
    for stage in ("scores", "select", "gather", "pull", "scatter"):
        try:
            mods[stage] = importlib.import_module(f"lighthouse.kernels.{stage}")
        except ImportError:
            pass
    return mods


def record_launches(plan: LighthousePlan, dtype=torch.bfloat16) -> list:
    """(JITFunction, grid, args, kwargs) of every kernel launch of one forward + backward."""
    mods = _kernel_modules()
    calls: list = []
    saved = []
    for mod in mods.values():
        for name, obj in list(vars(mod).items()):
            if isinstance(obj, triton.runtime.jit.JITFunction) and name.endswith("_kernel"):
                # (under TRITON_INTERPRET=1 the kernels are not JITFunctions: run this without it)
                saved.append((mod, name, obj))
                setattr(mod, name, Recorder(obj, calls))
    try:
        dev = torch.device("meta")
        b, hq, hkv, n, d = plan.batch, plan.q_heads, plan.kv_heads, plan.seq_len, plan.head_dim
        q = torch.empty(b, hq, n, d, dtype=dtype, device=dev)
        k = torch.empty(b, hkv, n, d, dtype=dtype, device=dev)
        v = torch.empty_like(k)
        scores, select, gather = mods["scores"], mods["select"], mods["gather"]
        pull = mods.get("scatter") or mods["pull"]
        inv = torch.empty(b, hkv, plan.pyramid_len, dtype=torch.int32, device=dev)
        sq, sk, _ = scores.score_pyramids(q, k, v, plan, None, inv)
        sel = select.select_in_kernel(sq, sk, plan, inv)
        subs = gather.gather_many([q, k, v], sel.lm_idx, sel.lm_pos, plan)
        pull_fn = getattr(pull, "pull_rows", None) or getattr(pull, "scatter_rows")
        many_fn = getattr(pull, "pull_many", None) or getattr(pull, "scatter_many")
        out = pull_fn(subs[0], sel.inv, plan, scatter=True)
        gather.gather_rows(out, sel.lm_idx, sel.lm_pos, plan, fan_in=True)
        many_fn(subs, sel.inv, plan, scatter=False)
    finally:
        for mod, name, obj in saved:
            setattr(mod, name, obj)
    return calls


def specialise(fn, args, kwargs):
    """Signature, constexprs and attributes as Triton's launcher derives them from the arguments:
    constexpr parameters and integers equal to 1 are compile-time constants; pointers and integers divisible
    by 16 carry the divisibility hint."""
    names = fn.arg_names
    values = dict(zip(names, args))
    options = {}
    for key, val in kwargs.items():
        if key in names:
            values[key] = val
        else:
            options[key] = val
    const_names = {p.name for p in fn.params if p.is_constexpr}
    for p in fn.params:  # a parameter the launch leaves out takes its default, as at a launch
        if p.name not in values and p.default is not inspect.Parameter.empty:
            values[p.name] = p.default
    signature, constexprs, attrs = {}, {}, {}

    def spec(val, path, name):
        """The signature entry of one argument (a tuple argument element by element, at its index path)."""
        if isinstance(val, tuple):
            return tuple(spec(v, path + (j,), name) for j, v in enumerate(val))
        if isinstance(val, torch.Tensor):
            attrs[path] = [["tt.divisibility", 16]]
            return "*" + DTYPES[val.dtype]
        if isinstance(val, bool):
            return "i1"
        if isinstance(val, int):
            if val == 1:
                constexprs[path] = 1
                return "constexpr"
            if val % 16 == 0:
                attrs[path] = [["tt.divisibility", 16]]
            return "i32" if -(2**31) <= val < 2**31 else "i64"
        if isinstance(val, float):
            return "fp32"
        raise TypeError(f"{fn.__name__}: cannot specialise argument {name}={val!r}")

    for i, name in enumerate(names):
        if name in const_names:
            signature[name] = "constexpr"
            constexprs[name] = values[name]
        else:
            signature[name] = spec(values[name], (i,), name)
    return signature, constexprs, attrs, options


def _timed_stages():
    """Wrap the NVIDIA backend's stages so each records its wall time in the returned dict."""
    from triton.backends.nvidia.compiler import CUDABackend

    times: Dict[str, float] = {}
    original = CUDABackend.add_stages

    def add_stages(self, stages, options, language):
        original(self, stages, options, language)
        for name in list(stages):
            inner = stages[name]

            def timed(src, metadata, _inner=inner, _name=name):
                t0 = time.perf_counter()
                try:
                    return _inner(src, metadata)
                finally:
                    times[_name] = times.get(_name, 0.0) + time.perf_counter() - t0

            stages[name] = timed

    CUDABackend.add_stages = add_stages
    return times


STAGE_TIMES = _timed_stages()


def compile_one(fn, args, kwargs) -> dict:
    signature, constexprs, attrs, options = specialise(fn, args, kwargs)
    src = triton.compiler.ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs)
    STAGE_TIMES.clear()
    t0 = time.perf_counter()
    compiled = triton.compile(src, target=TARGET, options=options)
    total = time.perf_counter() - t0
    shown = {k: v for k, v in constexprs.items() if isinstance(k, str) and k.isupper()}
    return {
        "kernel": fn.__name__,
        "constexprs": " ".join(f"{k}={v}" for k, v in shown.items()),
        "num_warps": options.get("num_warps", 4),
        "compile_s": round(total, 3),
        **{f"{k}_s": round(v, 3) for k, v in STAGE_TIMES.items()},
        "ptx_lines": compiled.asm["ptx"].count("\n"),
        "cubin_bytes": len(compiled.asm["cubin"]),
        "hash": src.hash()[:12],
    }


def ttir(fn, args, kwargs) -> str:
    """The kernel's Triton IR as the front end emits it for sm_90 (no optimisation pass, well under a second)."""
    from triton._C.libtriton import ir
    from triton.compiler.compiler import make_backend

    signature, constexprs, attrs, options = specialise(fn, args, kwargs)
    backend = make_backend(TARGET)
    opts = backend.parse_options(dict(options))
    context = ir.context()
    ir.load_dialects(context)
    backend.load_dialects(context)
    src = triton.compiler.ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs)
    return str(src.make_ir(TARGET, opts, backend.get_codegen_implementation(opts), backend.get_module_map(), context))


def max_tensor_rank(text: str) -> int:
    """Highest rank of a tensor type in IR text: `tensor<2x2x...x2xi64>` of rank log2(n) is how tl.sort and
    tl.topk build their sorting networks, whose layout passes cost seconds per round."""
    ranks = [m.group(1).count("x") for m in re.finditer(r"tensor<((?:\d+x)+)", text)]
    return max(ranks, default=0)


def parse_config(text: str):
    n, topk, levels, pooling = (int(x) for x in text.split(","))
    return n, topk, levels, pooling


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--config", action="append", default=None, help="N,k,L,p (repeatable); default: the paper point 98304,1536,3,4"
    )
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=None)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--out", default=None, help="CSV of one row per compiled variant")
    ap.add_argument("--label", default="", help="written in the CSV's `code` column (e.g. before/after)")
    ap.add_argument(
        "--ranks",
        action="store_true",
        help="compile nothing: print each launched kernel's highest tensor rank in its Triton IR",
    )
    a = ap.parse_args(argv)
    configs = [parse_config(c) for c in (a.config or ["98304,1536,3,4"])]
    if a.ranks:
        for n, topk, levels, pooling in configs:
            cfg = LighthouseConfig(levels=levels, pooling=pooling, topk=topk, impl="triton")
            plan = LighthousePlan(cfg, a.batch, a.heads, a.kv_heads or a.heads, n, cfg.padded_len(n), a.head_dim)
            for fn, _grid, args, kwargs in record_launches(plan):
                print(
                    f"rank {max_tensor_rank(ttir(fn, args, kwargs))} {fn.__name__} N={n} k={topk} L={levels} "
                    f"p={pooling}"
                )
        return 0
    rows: List[dict] = []
    seen = set()
    for n, topk, levels, pooling in configs:
        cfg = LighthouseConfig(levels=levels, pooling=pooling, topk=topk, impl="triton")
        hkv = a.kv_heads or a.heads
        plan = LighthousePlan(cfg, a.batch, a.heads, hkv, n, cfg.padded_len(n), a.head_dim)
        config_total = 0.0
        for fn, _grid, args, kwargs in record_launches(plan):
            sig = specialise(fn, args, kwargs)
            key = (
                fn.__name__,
                repr(sig[0]),
                repr(sorted(sig[1].items(), key=repr)),
                repr(sorted(sig[2].items())),
                repr(sig[3]),
            )
            new = key not in seen
            seen.add(key)
            if not new:  # same variant as an earlier launch: compiled once per process
                continue
            row = {"code": a.label, "config": f"N={n} k={topk} L={levels} p={pooling}", **compile_one(fn, args, kwargs)}
            config_total += row["compile_s"]
            rows.append(row)
            print(
                f"{row['config']:28s} {row['kernel']:22s} {row['compile_s']:7.2f} s  "
                f"ttgir {row.get('ttgir_s', 0):5.2f} llir {row.get('llir_s', 0):5.2f} "
                f"ptx {row.get('ptx_s', 0):5.2f} cubin {row.get('cubin_s', 0):5.2f}  {row['constexprs']}",
                flush=True,
            )
        print(f"{'':28s} {'new variants, total':22s} {config_total:7.2f} s", flush=True)
    if a.out:
        cols = list(dict.fromkeys(c for r in rows for c in r))
        with open(a.out, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=cols)
            w.writeheader()
            w.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
