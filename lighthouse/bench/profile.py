"""`lighthouse-bench profile`: where one Lighthouse call spends its time, stage by stage.

Each stage of the forward (scores, select, gather, sdpa, scatter) and of the backward (fan_in, sdpa_bwd,
pool_bwd for the Triton path; scatter_bwd, sdpa_bwd, gather_bwd for the PyTorch path) is timed alone on its
real inputs (L2 flush, median), next to the whole pass timed end to end, on both clocks of harness/clocks.py:
`ms` as launched (its first meaning: the GPU's waits for the host's launches count, beyond the first ~0.06 ms
that the 256 MiB flush queued ahead of the begin event hides on an H200) and `host_ahead_ms`, the stage's
kernels alone, with the host's own time to issue it beside them. So a short stage's `ms` moves with the host,
its `host_ahead_ms` does not. Each stage also gets the bytes it must move and the FLOPs it must do (the model
below), and from the device's measured peaks (bench.peaks) its floor and its distance to it. The floor counts
what the fused design has to move, so the PyTorch path's ratios show its excess traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch

from .. import lighthouse_attention
from ..config import TILE
from ..plan import LighthousePlan, make_plan
from ..sdpa import causal_sdpa, repeat_kv
from ..harness import flops as flops_mod
from ..harness.points import Point
from ..harness.tables import (
    HOST_AHEAD_TIMEOUTS,
    HOST_MS,
    POINT_COLUMNS,
    PROFILE,
    PROFILE_HOST_AHEAD_MS,
    PROFILE_HOST_AHEAD_RATIO,
    PROFILE_SUMMARY,
    cell,
    fmt,
)
from .inputs import TORCH_DTYPES, random_inputs
from ..harness.timing import Timing, measure

PROFILE_FILE = "profile.csv"

#: Rows that summarise a pass rather than time a stage (results.PROFILE_SUMMARY).
TOTAL, MEASURED, GPU_BUSY = SUMMARY_STAGES = PROFILE_SUMMARY


def label(point: Point, impl: str) -> str:
    s = point.shape
    rope = "" if point.rope == "pre" else f" rope={point.rope}"
    return f"N={s.n} k={point.topk} L{point.levels} p{point.pooling} {point.scorer}{rope} {s.dtype} {impl}"


def trace_name(point: Point, impl: str) -> str:
    """The trace file of one point: every field that names a profile row, so that two points of one run
    (`--rope pre,post`, two scorers, two batches) never write the same file."""
    s = point.shape
    return (
        f"trace-n{s.n}-k{point.topk}-L{point.levels}-p{point.pooling}-{point.scorer}-{point.rope}"
        f"-B{s.batch}-H{s.heads}x{s.kv_heads}-D{s.head_dim}-{s.dtype}-{impl}.json"
    )


@dataclass
class Stage:
    """One timed piece: `fn` returns a tensor; mode 'fwd' times fn, 'bwd' times fn()'s backward alone."""

    pass_: str
    name: str
    fn: Callable[[], object]
    mode: str = "fwd"
    leaves: Sequence[torch.Tensor] = ()
    grad: Optional[torch.Tensor] = None


# ---------------------------------------------------------------------------------------------- cost model
def tokens_read_per_tensor(plan: LighthousePlan) -> int:
    """Token rows a gather reads per head: the whole coarsest level (every token once) plus the refined
    spans of the finer levels (128 * p entries per level and tile, span p**l each)."""
    c = plan.config
    finer = sum(TILE * c.pooling * f for f in plan.spans[:-1])
    return plan.padded_len + plan.tiles * finer


def stage_costs(plan: LighthousePlan, elem: int) -> Dict[str, tuple]:
    """stage -> (bytes it must move, FLOPs it must do), for the whole batch."""
    b, hq, hk, d = plan.batch, plan.q_heads, plan.kv_heads, plan.head_dim
    n, n_pad, s, p_len, lv = plan.seq_len, plan.padded_len, plan.selected_len, plan.pyramid_len, plan.config.levels
    row = d * elem
    hq_rows, hk_rows = b * hq, b * hk
    t_read = tokens_read_per_tensor(plan)
    attn_fwd = flops_mod.causal_attention_flops(s, b, hq, d, "fwd")
    attn_bwd = flops_mod.causal_attention_flops(s, b, hq, d, "bwd")
    return {
        # read q, k; write both score pyramids; the max-pooling reads the level below
        "scores": ((hq_rows + hk_rows) * n * row + 2 * hk_rows * (p_len + n_pad) * 4, 0.0),
        # candidate scores in, four S-long int64 lists and the inverse map out
        "select": (hk_rows * (2 * plan.tiles * plan.tile_len * 4 + 6 * s * 8 + 2 * p_len * 4), 0.0),
        "gather": ((hq_rows + 2 * hk_rows) * (t_read + s) * row + 2 * hk_rows * s * 8, 0.0),
        "sdpa": (4 * hq_rows * s * row, attn_fwd),
        "scatter": (hq_rows * (s + n) * row + hk_rows * lv * n * 4, 0.0),
        "fan_in": (hq_rows * (t_read + s) * row + 2 * hk_rows * s * 8, 0.0),
        "sdpa_bwd": (8 * hq_rows * s * row, attn_bwd),
        "pool_bwd": ((hq_rows + 2 * hk_rows) * (s + n) * row + 2 * hk_rows * lv * n * 4, 0.0),
    }


# Stages of the PyTorch path share the model: its scatter backward is the fan-in, its gather backward the
# pooling backward.
TORCH_COST_NAME = {"scatter_bwd": "fan_in", "gather_bwd": "pool_bwd"}


def floor_of(nbytes: float, nflops: float, peaks: dict):
    """(floor ms, 'bandwidth' or 'compute'): the larger of moving the bytes and doing the FLOPs at peak."""
    bw_ms = nbytes / (peaks["copy_gb_s"] * 1e9) * 1e3
    fl_ms = nflops / (peaks["matmul_tflops"] * 1e12) * 1e3
    return (fl_ms, "compute") if fl_ms > bw_ms else (bw_ms, "bandwidth")


# ------------------------------------------------------------------------------------------------ stages
def _leaf(x: torch.Tensor) -> torch.Tensor:
    return x.detach().clone().requires_grad_()


def triton_stages(q, k, v, go, gate, plan: LighthousePlan) -> List[Stage]:
    """The Triton layer's own stage functions (kernels.layer.run_<stage>), each on its real inputs."""
    from ..kernels import layer
    from ..kernels.rope import rope_args

    rope = rope_args(plan, q.device)  # None unless rope='post': then the gather and pool_bwd rotate, as the layer
    with torch.no_grad():
        scores = layer.run_scores(q, k, v, plan, gate)
        sel = layer.run_select(scores, plan)
        scores.check.raise_if_bad()
        subs = [_leaf(x) for x in layer.run_gather(q, k, v, sel, plan, rope)]
    with torch.enable_grad():
        out_sub = layer.run_sdpa(*subs, plan)
    d_out_sub = _no_grad(layer.run_fan_in, go, sel, plan)
    d_subs = layer.run_sdpa_bwd(out_sub, subs, d_out_sub)

    def sdpa_fn():  # with autograd recording, as in training
        return layer.run_sdpa(*subs, plan)

    stages = {
        "scores": Stage("fwd", "scores", lambda: _no_grad(layer.run_scores, q, k, v, plan, gate)),
        "select": Stage("fwd", "select", lambda: _no_grad(layer.run_select, scores, plan)),
        "gather": Stage("fwd", "gather", lambda: _no_grad(layer.run_gather, q, k, v, sel, plan, rope)),
        "sdpa": Stage("fwd", "sdpa", sdpa_fn),
        "scatter": Stage("fwd", "scatter", lambda: _no_grad(layer.run_scatter, out_sub.detach(), sel, plan)),
        "fan_in": Stage("bwd", "fan_in", lambda: _no_grad(layer.run_fan_in, go, sel, plan)),
        "sdpa_bwd": Stage("bwd", "sdpa_bwd", sdpa_fn, "bwd", subs, d_out_sub),
        "pool_bwd": Stage("bwd", "pool_bwd", lambda: _no_grad(layer.run_pool_bwd, d_subs, sel, plan, rope)),
    }
    return [stages[name] for pass_ in ("fwd", "bwd") for name in layer.STAGES[pass_]]


def _no_grad(fn, *args):
    with torch.no_grad():
        return fn(*args)


def torch_stages(q, k, v, go, gate, plan: LighthousePlan) -> List[Stage]:
    from ..reference.gather import gather_entries
    from ..reference.scatter import scatter_back
    from ..reference.scores import score_pyramid, token_scores
    from ..reference.select import select_entries

    backend, g = plan.config.sdpa_backend, plan.group

    def scores():
        with torch.no_grad():
            tq, tk = token_scores(q, k, v, plan, gate)
            return score_pyramid(tq, plan), score_pyramid(tk, plan)

    pq, pk = scores()
    indices = _no_grad(select_entries, pq, pk, plan)
    leaves = [_leaf(x) for x in (q, k, v)]
    groups = (g, 1, 1)

    def gather_one(i):
        return gather_entries(leaves[i], indices, plan, groups[i])

    subs = [_leaf(gather_one(i)) for i in range(3)]

    def sdpa_fn():
        return causal_sdpa(subs[0], repeat_kv(subs[1], g), repeat_kv(subs[2], g), backend)

    out_sub = _leaf(sdpa_fn())
    d_out_sub = torch.autograd.grad(scatter_back(out_sub, indices, plan), out_sub, go)[0]
    d_subs = torch.autograd.grad(sdpa_fn(), subs, d_out_sub)
    stages = [
        Stage("fwd", "scores", scores),
        Stage("fwd", "select", lambda: _no_grad(select_entries, pq, pk, plan)),
        Stage("fwd", "gather", lambda: [gather_one(i) for i in range(3)]),
        Stage("fwd", "sdpa", sdpa_fn),
        Stage("fwd", "scatter", lambda: scatter_back(out_sub, indices, plan)),
        Stage("bwd", "scatter_bwd", lambda: scatter_back(out_sub, indices, plan), "bwd", [out_sub], go),
        Stage("bwd", "sdpa_bwd", sdpa_fn, "bwd", subs, d_out_sub),
    ]
    # the gathers' backward, one per tensor (summed into one stage below)
    for i in range(3):
        stages.append(Stage("bwd", f"gather_bwd.{i}", lambda i=i: gather_one(i), "bwd", [leaves[i]], d_subs[i]))
    return stages


# --------------------------------------------------------------------------------------------- profiling
@dataclass(frozen=True)
class StageTiming:
    """How each stage and each whole pass is timed: `warmup` untimed calls, then at most `rep` timed ones,
    stopping after `max_seconds` once MIN_REP are done. The defaults are `profile`'s when an option is not given."""

    MIN_REP = 3
    warmup: int = 3
    rep: int = 20
    max_seconds: float = 2.0

    def clocks(self, fn, pass_: str, leaves, grad_out, device: torch.device) -> "Clocks":
        kw = dict(warmup=self.warmup, rep=self.rep, min_rep=self.MIN_REP, max_seconds=self.max_seconds)
        return Clocks.of(measure(fn, pass_, list(leaves), grad_out, device=device, **kw))


def _plus(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or b is None else a + b


@dataclass(frozen=True)
class Clocks:
    """One stage's (or pass's) medians on both clocks: `ms` as launched, `host_ahead_ms` the kernels alone (None
    where the hold kernel could not run), `host_ms` the host's own time to issue it (None where every
    repetition waited on the GPU), `timeouts` the host-ahead repetitions that did. A stage timed in parts
    (the PyTorch path's three gather backwards) is their sum."""

    ms: float = 0.0
    host_ahead_ms: Optional[float] = 0.0
    host_ms: Optional[float] = 0.0
    timeouts: Optional[int] = 0

    @staticmethod
    def of(t: Timing) -> "Clocks":
        return Clocks(t.median_ms, t.host_ahead_median_ms, t.host_ms_per_call, t.host_ahead_timeouts)

    def __add__(self, other: "Clocks") -> "Clocks":
        return Clocks(
            self.ms + other.ms,
            _plus(self.host_ahead_ms, other.host_ahead_ms),
            _plus(self.host_ms, other.host_ms),
            _plus(self.timeouts, other.timeouts),
        )

    def cells(self, floor_ms: float) -> dict:
        """The row's clock cells (PROFILE_CLOCK_COLUMNS; `ms` is written by the caller)."""
        ahead = self.host_ahead_ms
        return {
            PROFILE_HOST_AHEAD_MS: ahead,
            PROFILE_HOST_AHEAD_RATIO: ahead / floor_ms if ahead is not None and floor_ms else None,
            HOST_MS: self.host_ms,
            HOST_AHEAD_TIMEOUTS: self.timeouts,
        }


def _time(stage: Stage, device: torch.device, timing: StageTiming) -> Clocks:
    return timing.clocks(stage.fn, stage.mode, stage.leaves, stage.grad, device)


def profile_point(
    point: Point,
    impl: str,
    device: torch.device,
    peaks: dict,
    *,
    sdpa_backend: Optional[str] = None,
    seed: int = 0,
    timing: StageTiming = StageTiming(),
) -> List[dict]:
    """Rows of profile.csv for one point: every stage, the sum per pass (total) and the whole pass (measured)."""
    cfg = point.config(impl, sdpa_backend)
    inputs = random_inputs(point.shape, device, seed, gate=point.scorer == "gla")
    q, k, v = (x.detach() for x in inputs.leaves)
    plan = make_plan(cfg, q, k, v, inputs.gate)
    builder = triton_stages if impl == "triton" else torch_stages
    stages = builder(q, k, v, inputs.grad_out, inputs.gate, plan)
    costs = stage_costs(plan, q.element_size())
    times: Dict[tuple, Clocks] = {}
    for st in stages:
        name = st.name.split(".")[0]
        times[(st.pass_, name)] = times.get((st.pass_, name), Clocks()) + _time(st, device, timing)
    del stages  # frees the stage inputs before the whole layer is timed
    leaves = inputs.leaves

    def whole():
        return lighthouse_attention(*leaves, config=cfg, gate=inputs.gate)

    measured = {
        "fwd": timing.clocks(whole, "fwd", leaves, None, device),
        "bwd": timing.clocks(whole, "bwd", leaves, inputs.grad_out, device),
    }
    if device.type == "cuda":
        gpu = gpu_busy_ms(whole, leaves, inputs.grad_out)
    base = dict(
        **point.cells(),
        impl=impl,
        s_sel=plan.selected_len,
        device=str(device.type),
    )
    rows = []
    for pass_ in ("fwd", "bwd"):
        names = [name for (p, name) in times if p == pass_]
        summed = sum((times[(pass_, nm)] for nm in names), Clocks())
        total = summed.ms
        sums = {"bytes": 0.0, "flops": 0.0, "floor_ms": 0.0}
        for nm in names:
            nbytes, nflops = costs[TORCH_COST_NAME.get(nm, nm)]
            fl_ms, kind = floor_of(nbytes, nflops, peaks)
            ms = times[(pass_, nm)].ms
            rows.append(
                {
                    **base,
                    "pass": pass_,
                    "stage": nm,
                    "ms": ms,
                    "share": ms / total if total else None,
                    "bytes": nbytes,
                    "flops": nflops,
                    "floor_ms": fl_ms,
                    "floor_kind": kind,
                    "floor_ratio": ms / fl_ms if fl_ms else None,
                    **times[(pass_, nm)].cells(fl_ms),
                }
            )
            sums["bytes"] += nbytes
            sums["flops"] += nflops
            sums["floor_ms"] += fl_ms
        summary = [(TOTAL, summed), (MEASURED, measured[pass_])]
        if device.type == "cuda":  # the kernels' summed durations: no clock of its own
            summary.append((GPU_BUSY, Clocks(gpu[pass_], None, None, None)))
        for stage, clocks in summary:
            ms = clocks.ms
            rows.append(
                {
                    **base,
                    "pass": pass_,
                    "stage": stage,
                    "ms": ms,
                    "share": ms / total if total else None,
                    **sums,
                    "floor_kind": "sum",
                    "floor_ratio": ms / sums["floor_ms"] if sums["floor_ms"] else None,
                    **clocks.cells(sums["floor_ms"]),
                }
            )
    return rows


def gpu_busy_ms(whole: Callable[[], torch.Tensor], leaves, grad_out, calls: int = 3) -> Dict[str, float]:
    """Per pass, the summed duration of the GPU kernels of one call (torch.profiler): set beside the
    measured wall time of the pass it shows how much of that time the GPU waited for the host to launch."""
    from torch.profiler import ProfilerActivity, profile

    def kernels_ms(prof) -> float:
        import json
        import os
        import tempfile

        fd, path = tempfile.mkstemp(suffix=".json")
        os.close(fd)
        try:
            prof.export_chrome_trace(path)
            events = json.loads(Path(path).read_text()).get("traceEvents", [])
        finally:
            os.unlink(path)
        gpu = [e for e in events if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")]
        return sum(float(e.get("dur", 0.0)) for e in gpu) / 1e3 / calls

    from ..harness.timing import _retained

    out = whole()
    with _retained():
        out.backward(grad_out, retain_graph=True)  # warm
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            whole()
        torch.cuda.synchronize()
    fwd = kernels_ms(prof)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            for t in leaves:
                t.grad = None
            with _retained():
                out.backward(grad_out, retain_graph=True)
        torch.cuda.synchronize()
    for t in leaves:
        t.grad = None
    return {"fwd": fwd, "bwd": kernels_ms(prof)}


def trace(
    point: Point,
    impl: str,
    device: torch.device,
    path: Path,
    seed: int = 0,
    steps: int = 3,
    sdpa_backend: Optional[str] = None,
) -> Path:
    """A torch.profiler Chrome trace of a few forward+backward calls (open in chrome://tracing or Perfetto)."""
    from torch.profiler import ProfilerActivity, profile

    inputs = random_inputs(point.shape, device, seed, gate=point.scorer == "gla")
    cfg = point.config(impl, sdpa_backend)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    lighthouse_attention(*inputs.leaves, config=cfg, gate=inputs.gate).backward(inputs.grad_out)  # compile first
    with profile(activities=activities) as prof:
        for _ in range(steps):
            lighthouse_attention(*inputs.leaves, config=cfg, gate=inputs.gate).backward(inputs.grad_out)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    prof.export_chrome_trace(str(path))
    return path


def run_profile(
    points: Sequence[Point],
    impl: str,
    device: torch.device,
    out: Path,
    *,
    sdpa_backend: Optional[str] = None,
    trace_calls: bool = False,
    remeasure_peaks: bool = False,
    seed: int = 0,
    timing: StageTiming = StageTiming(),
    console=None,
    argv=None,
    options: Optional[dict] = None,
    resume: bool = False,
) -> int:
    """Profile every point into out/ (profile.csv, machine.json with the peaks, profile.png, traces) through
    the harness's row loop: --out claimed first (an existing profile.csv is never overwritten: --resume
    continues it), each point's rows written as soon as it is profiled, Ctrl-C keeps them. A point that fails
    is reported and skipped (no rows; --resume tries it again); returns 0 when every point was profiled,
    1 when one failed, 130 on Ctrl-C."""
    from ..harness.loop import EXIT_OK, Item, RowLoop
    from . import peaks as peaks_mod
    from .profile_view import print_tables, stacked_chart

    loop = RowLoop("profile", out, PROFILE, PROFILE_FILE, resume=resume, options=options, argv=argv, console=console)
    kept = loop.prepare()  # before measuring anything
    done = {
        tuple(r.get(c, "") for c in ("impl", *POINT_COLUMNS))
        for r in kept.values()
        if r.get("pass") == "bwd" and r.get("stage") == MEASURED
    }  # a point's rows are complete
    dtypes = sorted({p.shape.dtype for p in points})
    peaks = {dt: peaks_mod.get_peaks(device, TORCH_DTYPES[dt], remeasure_peaks) for dt in dtypes}
    info = loop.begin({"peaks": peaks})
    for dt, pk in peaks.items():
        loop.console.print(
            f"peaks ({dt}{', cached' if pk.get('cached') else ', measured now'}): copy "
            f"{fmt(pk['copy_gb_s'])} GB/s, matmul {fmt(pk['matmul_tflops'])} TFLOP/s"
        )

    def rows_of(point: Point):
        loop.console.print(f"profiling {label(point, impl)} ...")
        rows = profile_point(
            point,
            impl,
            device,
            peaks[point.shape.dtype],
            sdpa_backend=sdpa_backend,
            seed=seed,
            timing=timing,
        )
        if trace_calls:
            path = trace(
                point,
                impl,
                device,
                Path(out) / trace_name(point, impl),
                seed,
                sdpa_backend=sdpa_backend,
            )
            loop.console.print(f"trace: {path}")
        yield from rows

    def failed(point: Point):
        def report(status: str, reason: str):
            loop.console.print(f"[red]{label(point, impl)}: {status}: {reason}[/red]")
            return []  # no rows: --resume profiles the point again

        return report

    todo = [p for p in points if (impl, *(_cell_of(p, c) for c in POINT_COLUMNS)) not in done]
    outcome = loop.run(
        (Item(label(p, impl), lambda p=p: rows_of(p), on_failure=failed(p)) for p in todo),
        total=len(todo),
        device=device,
    )
    loop.info["failed_points"] = [
        {"point": name, "error": f"{status}: {reason}"} for name, status, reason in outcome.failed
    ]

    def charts(path: Path):
        return stacked_chart(loop.rows(), Path(out), device_name=info.get("gpu") or info.get("cpu"))

    code = loop.finish(outcome, summary=lambda rows: print_tables(rows, loop.console) if rows else None, charts=charts)
    if outcome.failed and not outcome.interrupted:
        from ..harness import machine

        machine.write(loop.machine_path, loop.info, loop.previous)
    return 1 if code == EXIT_OK and outcome.failed else code


def _cell_of(point: Point, column: str) -> str:
    """A point's value in a profile.csv column, as the CSV spells it."""
    s = point.shape
    value = (
        getattr(point, column, None)
        if column in ("topk", "levels", "pooling", "scorer", "rope")
        else getattr(s, column)
    )
    return cell(value)
