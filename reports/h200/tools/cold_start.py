"""Issue 13 on one GPU, in one call of a few minutes: cold start, small N, and N = 1M.

    python reports/h200/tools/cold_start.py --out reports/h200/coldstart

1. Cold start. For each configuration a fresh process with an empty TRITON_CACHE_DIR runs the layer's first
   forward and first backward (bf16, B=1, H=8, D=128, Triton path, cuDNN SDPA); a second fresh process with
   the cache the first one filled does the same (warm). Triton's compilation listener gives every kernel's
   compile time. Rows: `cold_start.csv` (one per process) and `compile.csv` (one per compiled kernel).
   The layer precompiles its kernels concurrently before the first launch (kernels/precompile.py; the
   `precompile` column: ready, failed or off, and its time; `triton_compile_ms` then sums compiles that ran at
   once, so it can exceed their wall time); LIGHTHOUSE_PRECOMPILE=0 in the environment of this script times the
   lazy compile instead.
2. Small N. Lighthouse fwd+bwd against dense cuDNN at N = 8K (k = 256, 512) and 16K (k = 512, 1024), and the
   paper point 96K (k = 1536), CUDA events, L2 flush, medians, dense measured in the same run; each row plain
   and through CUDA graphs (lighthouse.graph_lighthouse, graph_dense: `cuda_graph` column), with the host time
   to issue one fwd+bwd and the time per fwd+bwd back to back (no flush); the selection kernel alone at 96K,
   256K and 1M: `small_n.csv`.
3. N = 1M. Lighthouse (k = 4096, p = 4, L = 3 and 4) and dense cuDNN fwd+bwd, 1 warm-up and 2 repetitions
   each (dense takes about 15 s a repetition): `one_m.csv`, with the speedup.

Every part writes its rows as soon as they exist, so a part that fails or runs out of time leaves the others.
`machine.json` beside the CSVs records the machine. `--parts` picks parts (default all).
"""

from __future__ import annotations

import argparse
import csv
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

SHAPE = dict(batch=1, heads=8, head_dim=128)
#: (N, k, L, p, scorer): the paper point first; then the smallest N, N = 1M at L = 4, 512K, dilated.
COLD_CONFIGS = [
    (98304, 1536, 3, 4, "norm"),
    (8192, 512, 3, 4, "norm"),
    (1048576, 4096, 4, 4, "norm"),
    (524288, 4096, 3, 4, "norm"),
    (98304, 1536, 3, 4, "dilated"),
]
SMALL_POINTS = [(8192, 256), (8192, 512), (16384, 512), (16384, 1024), (98304, 1536)]
#: The selection kernel alone (rewritten for compile time in issue 13; before: 0.062 ms at 96K, 0.141 ms at 262K).
SELECT_POINTS = [(98304, 1536, 3), (262144, 4096, 3), (1048576, 4096, 4)]
ONE_M = 1048576


COLD_COLUMNS = (
    "phase",
    "n",
    "topk",
    "levels",
    "pooling",
    "scorer",
    "first_fwd_ms",
    "first_bwd_ms",
    "first_call_ms",
    "second_call_ms",
    "triton_compile_ms",
    "kernels_compiled",
    "import_ms",
    "precompile",
    "precompile_ms",
    "status",
)


def _append(path: Path, row: dict, columns=None) -> None:
    """One row, flushed; `columns` fixes the header (rows without some columns leave them empty)."""
    new = not path.exists()
    with path.open("a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns or row), restval="")
        if new:
            w.writeheader()
        w.writerow(row)
        fh.flush()
        os.fsync(fh.fileno())


def _backward(y, d_out) -> None:
    """y's backward with gradient d_out, the way a training step calls it: from a scalar loss. (y.backward(d_out),
    a gradient tensor handed to autograd, makes its `_make_grads` import sympy at a process's first call: 2-4.8 s
    on the H200 image, reports/h200/coldstart/sdpa-first-profiled/, which no training step's loss.backward() pays.)"""
    (y * d_out).sum().backward()


def _inputs(n, requires_grad=True, seed=0):
    import torch

    g = torch.Generator(device="cuda").manual_seed(seed)
    shape = (SHAPE["batch"], SHAPE["heads"], n, SHAPE["head_dim"])
    q, k, v, d_out = (torch.randn(shape, generator=g, device="cuda", dtype=torch.bfloat16) for _ in range(4))
    for t in (q, k, v):
        t.requires_grad_(requires_grad)
    return q, k, v, d_out


def _layer(n, topk, levels, pooling, scorer="norm"):
    from lighthouse import LighthouseConfig, lighthouse_attention

    cfg = LighthouseConfig(
        levels=levels, pooling=pooling, topk=topk, scorer=scorer, impl="triton", sdpa_backend="cudnn"
    )
    return lambda q, k, v: lighthouse_attention(q, k, v, config=cfg)


# ------------------------------------------------------------------------------------------- 1. cold start


def child(spec: str, out: Path, phase: str) -> int:
    """One fresh process: the first forward and backward of one configuration, compile times per kernel."""
    t_start = time.perf_counter()
    import torch
    import triton

    n, topk, levels, pooling, scorer = spec.split(",")
    n, topk, levels, pooling = int(n), int(topk), int(levels), int(pooling)
    compiles = []

    def listener(*, src, metadata, metadata_group, times, cache_hit):
        name = getattr(src, "name", "?")
        consts = getattr(src, "constants", {}) or {}
        fn = getattr(src, "fn", None)
        names = getattr(fn, "arg_names", None) or []
        shown = []
        for key, val in consts.items():
            idx = key[0] if isinstance(key, tuple) and key else key
            label = names[idx] if isinstance(idx, int) and idx < len(names) else str(key)
            if label.isupper():
                shown.append(f"{label}={val}")
        stages = dict(getattr(times, "lowering_stages", []) or [])
        total_us = (
            (getattr(times, "ir_initialization", 0) or 0)
            + sum(stages.values())
            + (getattr(times, "store_results", 0) or 0)
        )
        compiles.append(
            {
                "kernel": name,
                "constexprs": " ".join(sorted(shown)),
                "cache_hit": cache_hit,
                "compile_ms": round(total_us / 1e3, 1),
                **{f"{k}_ms": round(v / 1e3, 1) for k, v in stages.items()},
            }
        )

    try:
        triton.knobs.compilation.listener = listener
    except AttributeError:  # an older triton: totals only
        pass
    t_import = time.perf_counter() - t_start
    torch.cuda.init()
    torch.empty(1, device="cuda")
    q, k, v, d_out = _inputs(n)
    torch.cuda.synchronize()
    layer = _layer(n, topk, levels, pooling, scorer)
    t0 = time.perf_counter()
    y = layer(q, k, v)
    torch.cuda.synchronize()
    t1 = time.perf_counter()
    _backward(y, d_out)
    torch.cuda.synchronize()
    t2 = time.perf_counter()
    q.grad = k.grad = v.grad = None
    y = layer(q, k, v)  # the second call: what is left once everything is compiled
    _backward(y, d_out)
    torch.cuda.synchronize()
    t3 = time.perf_counter()
    compile_ms = sum(c["compile_ms"] for c in compiles if not c["cache_hit"])
    precompiled = _precompile_results()
    cells = _config_cells(phase, (n, topk, levels, pooling, scorer))
    row = {
        **cells,
        "first_fwd_ms": round((t1 - t0) * 1e3, 1),
        "first_bwd_ms": round((t2 - t1) * 1e3, 1),
        "first_call_ms": round((t2 - t0) * 1e3, 1),
        "second_call_ms": round((t3 - t2) * 1e3, 2),
        "triton_compile_ms": round(compile_ms, 1),
        "kernels_compiled": sum(not c["cache_hit"] for c in compiles),
        "import_ms": round(t_import * 1e3),
        # kernels/precompile.py (LIGHTHOUSE_PRECOMPILE): off, or ready / failed (then Triton compiled lazily)
        "precompile": precompiled[0],
        "precompile_ms": precompiled[1],
        "status": "ok",
    }
    _append(out / "cold_start.csv", row, COLD_COLUMNS)
    for c in compiles:
        _append(
            out / "compile.csv",
            {
                **cells,
                **{
                    k: c.get(k, "")
                    for k in (
                        "kernel",
                        "constexprs",
                        "cache_hit",
                        "compile_ms",
                        "ttir_ms",
                        "ttgir_ms",
                        "llir_ms",
                        "ptx_ms",
                        "cubin_ms",
                    )
                },
            },
        )
    return 0


def _precompile_results():
    """(state, ms) of the layer's precompile in this process (kernels/precompile.py): `off` when it did not run
    (LIGHTHOUSE_PRECOMPILE=0, or a build without it), else `ready` (every kernel compiled and loaded before the first
    launch) or `failed` (some left to Triton's lazy compile), with the time of its first configuration."""
    try:
        from lighthouse.kernels import precompile
    except ImportError:
        return "off", ""
    done = list(precompile.results().values())
    if not done:
        return "off", ""
    ok, seconds = done[0]
    return ("ready" if all(x[0] for x in done) else "failed"), round(seconds * 1e3, 1)


def _config_cells(phase: str, config) -> dict:
    """The cells that name a row's process: its phase and configuration (n, topk, levels, pooling, scorer)."""
    return {"phase": phase, **dict(zip(("n", "topk", "levels", "pooling", "scorer"), config))}


def _unmeasured(out: Path, phase: str, config, status: str) -> None:
    """The cold_start.csv row of a process that measured nothing: skipped, timed out or failed (`status`)."""
    _append(out / "cold_start.csv", {**_config_cells(phase, config), "status": status[:300]}, COLD_COLUMNS)


def cold_start(out: Path, deadline: float) -> None:
    for config in COLD_CONFIGS:
        n, topk, levels, pooling, scorer = config
        cache = tempfile.mkdtemp(prefix="lh-triton-cache-")
        spec = f"{n},{topk},{levels},{pooling},{scorer}"
        for phase in ("cold", "warm"):
            left = deadline - time.time()
            if left < 20:
                print(f"cold start: out of time, skipped {spec} {phase}", flush=True)
                _unmeasured(out, phase, config, "skipped")
                continue
            env = dict(
                os.environ, TRITON_CACHE_DIR=cache, PYTHONPATH=f"{ROOT}{os.pathsep}" + os.environ.get("PYTHONPATH", "")
            )
            t0 = time.time()
            try:
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", spec, "--phase", phase, "--out", str(out)],
                    env=env,
                    timeout=min(left, 240),
                    capture_output=True,
                    text=True,
                )
                status = "ok"
                if proc.returncode != 0:
                    tail = proc.stderr.strip().splitlines()
                    status = "error: " + (tail[-1] if tail else f"exit {proc.returncode}")
                    print("\n".join(tail[-15:]), flush=True)
            except subprocess.TimeoutExpired:
                status = "timeout"
            wall = time.time() - t0
            print(f"cold start {spec:32s} {phase}: process {wall:6.1f} s  {status}", flush=True)
            if status != "ok":
                _unmeasured(out, phase, config, status)


# ------------------------------------------------------------------------------------------- 2. small N


def _time(fn, q, k, v, d_out, warmup, rep, min_rep, max_seconds):
    """The sweep's own timer (lighthouse.harness.timing.measure): CUDA events, L2 flush, first call timed apart."""
    import torch

    from lighthouse.harness.timing import measure

    return measure(
        lambda: fn(q, k, v),
        "fwdbwd",
        (q, k, v),
        d_out,
        device=torch.device("cuda"),
        warmup=warmup,
        rep=rep,
        min_rep=min_rep,
        max_seconds=max_seconds,
    )


def _dense(q, k, v):
    from lighthouse.sdpa import causal_sdpa

    return causal_sdpa(q, k, v, "cudnn")


#: small_n.csv: per row plain (cuda_graph False) or through lighthouse.graph_lighthouse / graph_dense (True).
SMALL_COLUMNS = (
    "n",
    "topk",
    "levels",
    "impl",
    "cuda_graph",
    "median_ms",
    "p20_ms",
    "p80_ms",
    "reps",
    "speedup_vs_cudnn",
    "speedup_vs_eager_cudnn",
    "first_call_ms",
    "host_issue_ms",
    "stream_ms",
)


def _graphed(make):
    """fn(q, k, v) that captures on its first call (so first_call_ms includes the warm-up and the capture)."""
    made = []

    def fn(q, k, v):
        if not made:
            made.append(make(q, k, v))
        return made[0](q, k, v)

    return fn


def _graphed_layer(topk, levels, pooling):
    from lighthouse import LighthouseConfig, graph_lighthouse

    cfg = LighthouseConfig(levels=levels, pooling=pooling, topk=topk, impl="triton", sdpa_backend="cudnn")
    return _graphed(lambda q, k, v: graph_lighthouse(q, k, v, cfg))


def _graphed_dense():
    from lighthouse.cuda_graph import graph_dense

    return _graphed(lambda q, k, v: graph_dense(q, k, v, "cudnn"))


def _stream(fn, q, k, v, d_out, reps):
    """Back to back, no flush: (host ms to issue one fwd+bwd, ms per fwd+bwd once the GPU has caught up).
    Eager Lighthouse at small N issues slower than the GPU runs (host-bound); a replay issues in microseconds."""
    import torch

    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        q.grad = k.grad = v.grad = None
        fn(q, k, v).backward(d_out)
    t1 = time.perf_counter()
    torch.cuda.synchronize()
    t2 = time.perf_counter()
    return (t1 - t0) * 1e3 / reps, (t2 - t0) * 1e3 / reps


def _small_row(out, n, topk, levels, impl, graphed, t, dense_ms, eager_dense_ms, stream):
    _append(
        out / "small_n.csv",
        {
            "n": n,
            "topk": topk,
            "levels": levels,
            "impl": impl,
            "cuda_graph": graphed,
            "median_ms": round(t.median_ms, 4),
            "p20_ms": round(t.p20_ms, 4),
            "p80_ms": round(t.p80_ms, 4),
            "reps": len(t.samples_ms),
            "speedup_vs_cudnn": round(dense_ms / t.median_ms, 3),
            "speedup_vs_eager_cudnn": round(eager_dense_ms / t.median_ms, 3) if eager_dense_ms else "",
            "first_call_ms": round(t.first_call_ms, 1),
            "host_issue_ms": round(stream[0], 4),
            "stream_ms": round(stream[1], 4),
        },
        SMALL_COLUMNS,
    )


#: Which modes the small part times (False: plain, True: CUDA graphs); --small-modes sets it.
GRAPH_MODES = {False, True}
ERROR_COLUMNS = ("part", "n", "topk", "impl", "cuda_graph", "error")


def _fail(out: Path, n, topk, impl: str, graphed: bool, err: Exception) -> None:
    print(f"N={n} k={topk} {impl} cuda_graph={graphed}: {type(err).__name__}: {err}", flush=True)
    _append(
        out / "errors.csv",
        {
            "part": "small",
            "n": n,
            "topk": topk,
            "impl": impl,
            "cuda_graph": graphed,
            "error": f"{type(err).__name__}: {err}"[:500],
        },
        ERROR_COLUMNS,
    )


def small_n(out: Path) -> None:
    """Plain and graphed, side by side in one process: dense cuDNN and Lighthouse, each eager and through CUDA
    graphs; speedup_vs_cudnn compares with dense in the same mode, speedup_vs_eager_cudnn with plain dense."""
    import torch

    path = out / "small_n.csv"
    if path.exists() and path.read_text().splitlines()[:1] != [",".join(SMALL_COLUMNS)]:
        aside = path.with_name(f"small_n.before-{int(path.stat().st_mtime)}.csv")
        path.rename(aside)  # an older run's columns: keep it, beside
        print(f"small N: {path} had other columns; moved to {aside}", flush=True)
    for n in sorted({p[0] for p in SMALL_POINTS}):
        q, k, v, d_out = _inputs(n)
        stream_reps = 30 if n <= 16384 else 5
        modes = tuple((g, make()) for g, make in ((False, lambda: _dense), (True, _graphed_dense)) if g in GRAPH_MODES)
        dense_ms = {}
        for graphed, fn in modes:
            try:
                t = _time(fn, q, k, v, d_out, 10, 200, 20, 3.0)
            except Exception as err:  # one failing mode (a capture error) keeps the other rows
                _fail(out, n, "", "sdpa_cudnn", graphed, err)
                continue
            dense_ms[graphed] = t.median_ms
            stream = _stream(fn, q, k, v, d_out, stream_reps)
            _small_row(out, n, "", "", "sdpa_cudnn", graphed, t, t.median_ms, dense_ms.get(False), stream)
            print(
                f"N={n:7d} dense cuDNN{' graphed' if graphed else '        '} fwd+bwd {t.median_ms:8.3f} ms "
                f"(issue {stream[0]:.3f} ms, back to back {stream[1]:.3f} ms)",
                flush=True,
            )
        for pn, topk in SMALL_POINTS:
            if pn != n:
                continue
            for graphed in (False, True):
                if graphed not in dense_ms:
                    continue  # no dense row in this mode to compare with
                fn = _graphed_layer(topk, 3, 4) if graphed else _layer(n, topk, 3, 4)
                try:
                    t = _time(fn, q, k, v, d_out, 10, 200, 20, 3.0)
                except Exception as err:
                    _fail(out, n, topk, "lighthouse_triton", graphed, err)
                    continue
                stream = _stream(fn, q, k, v, d_out, stream_reps)
                _small_row(
                    out, n, topk, 3, "lighthouse_triton", graphed, t, dense_ms[graphed], dense_ms.get(False), stream
                )
                print(
                    f"N={n:7d} k={topk:5d} Lighthouse{' graphed' if graphed else '        '} fwd+bwd "
                    f"{t.median_ms:8.3f} ms ({dense_ms[graphed] / t.median_ms:.2f}x cuDNN in the same mode, "
                    f"{dense_ms.get(False, float('nan')) / t.median_ms:.2f}x plain cuDNN; issue {stream[0]:.3f} ms, back to back "
                    f"{stream[1]:.3f} ms; first call {t.first_call_ms:.0f} ms)",
                    flush=True,
                )
                fn = None
        del q, k, v, d_out, modes
        torch.cuda.empty_cache()


def select_alone(out: Path) -> None:
    """The selection kernel alone (scores computed once), triton.testing.do_bench: L2 flushed, median."""
    import torch
    import triton.testing
    from lighthouse import LighthouseConfig
    from lighthouse.kernels.scores import score_pyramids
    from lighthouse.kernels.select import select_in_kernel
    from lighthouse.plan import make_plan

    for n, topk, levels in SELECT_POINTS:
        q, k, v, _ = _inputs(n, requires_grad=False)
        plan = make_plan(LighthouseConfig(levels=levels, pooling=4, topk=topk, impl="triton"), q, k, v)
        inv = torch.empty(plan.batch, plan.kv_heads, plan.pyramid_len, dtype=torch.int32, device="cuda")
        sq, sk, check = score_pyramids(q, k, v, plan, None, inv)
        check.raise_if_bad()
        ms = triton.testing.do_bench(lambda: select_in_kernel(sq, sk, plan, inv), warmup=25, rep=100)
        _append(
            out / "small_n.csv",
            {
                "n": n,
                "topk": topk,
                "levels": levels,
                "impl": "select_kernel_alone",
                "cuda_graph": False,
                "median_ms": round(ms, 4),
            },
            SMALL_COLUMNS,
        )
        print(f"N={n:7d} k={topk:5d} L={levels} selection kernel alone {ms:.4f} ms", flush=True)
        del q, k, v, sq, sk, inv
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------- 3. N = 1M


def one_m(out: Path) -> None:
    import torch

    q, k, v, d_out = _inputs(ONE_M)
    rows = []
    for levels in (3, 4):
        lh = _time(_layer(ONE_M, 4096, levels, 4), q, k, v, d_out, 3, 10, 5, 3.0)
        rows.append(("lighthouse_triton", levels, lh))
        print(
            f"N=1M L={levels} k=4096 Lighthouse fwd+bwd {lh.median_ms:9.2f} ms "
            f"(first call {lh.first_call_ms / 1e3:.1f} s)",
            flush=True,
        )
    dense = _time(_dense, q, k, v, d_out, 1, 2, 2, 0.0)  # first call + 0 extra warm-ups + 2 repetitions
    print(f"N=1M dense cuDNN fwd+bwd {dense.median_ms:9.1f} ms ({len(dense.samples_ms)} repetitions)", flush=True)
    peak = torch.cuda.max_memory_allocated() / 2**30
    for impl, levels, t in rows + [("sdpa_cudnn", "", dense)]:
        _append(
            out / "one_m.csv",
            {
                "n": ONE_M,
                "topk": 4096 if levels else "",
                "levels": levels,
                "pooling": 4,
                "impl": impl,
                "median_ms": round(t.median_ms, 3),
                "samples_ms": " ".join(f"{s:.3f}" for s in t.samples_ms),
                "first_call_ms": round(t.first_call_ms, 1),
                "peak_gib": round((t.peak_bytes or 0) / 2**30, 2),
                "speedup_vs_cudnn": round(dense.median_ms / t.median_ms, 2),
            },
        )
    print(
        "N=1M speedups: "
        + ", ".join(f"L={lv}: {dense.median_ms / t.median_ms:.1f}x" for _, lv, t in rows)
        + f" (max allocated {peak:.1f} GiB)",
        flush=True,
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="reports/h200/coldstart", help="folder for the CSVs and machine.json")
    ap.add_argument("--parts", default="cold,small,1m", help="comma list of: cold, small, 1m")
    ap.add_argument(
        "--budget-s",
        type=float,
        default=270.0,
        help="seconds for the whole run; cold-start configurations past it are skipped",
    )
    ap.add_argument(
        "--small-modes",
        default="plain,graphed",
        help="small part: plain, graphed or both (each in its own process gives eager rows untouched "
        "by an earlier capture in the same process)",
    )
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--phase", default="cold", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.child:
        return child(a.child, out, a.phase)
    modes = {m.strip() for m in a.small_modes.split(",") if m.strip()}
    if not modes or modes - {"plain", "graphed"}:
        ap.error(f"--small-modes must be plain, graphed or plain,graphed, got {a.small_modes!r}")
    GRAPH_MODES.clear()
    GRAPH_MODES.update(m == "graphed" for m in modes)
    start = time.time()
    parts = [p.strip() for p in a.parts.split(",") if p.strip()]
    try:
        from lighthouse.harness import machine

        (out / "machine.json").write_text(json.dumps(machine.collect(sys.argv), indent=2, default=str))
    except Exception as err:  # machine info is a courtesy; never lose the run over it
        print(f"machine.json not written: {err}", flush=True)
    # 1M and small N take about 70 s and 110 s (plain and graphed); cold start gets what is left of the budget.
    reserve = (70 if "1m" in parts else 0) + (110 if "small" in parts else 0)
    if "cold" in parts:
        cold_start(out, start + a.budget_s - reserve)
    for name, fn in (("small", small_n), ("small", select_alone), ("1m", one_m)):
        if name in parts:
            try:
                fn(out)
            except Exception as err:  # keep the other parts' rows
                print(f"part {name} failed: {type(err).__name__}: {err}", flush=True)
                _append(
                    out / "errors.csv", {"part": name, "error": f"{type(err).__name__}: {err}"[:500]}, ERROR_COLUMNS
                )
    print(f"done in {time.time() - start:.0f} s; rows in {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
