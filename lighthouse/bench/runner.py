"""Run one task (shape or point, implementation, pass) and turn whatever happens into a row status.

ok: measured. invalid: the library refused the parameters (ValueError; known before anything is allocated).
unsupported: the implementation cannot run here (a forced SDPA backend, Triton without CUDA, FlexAttention
failing to compile). oom: out of memory (memory is freed and the sweep goes on). error: anything else, with
the exception text. One task never stops the sweep; only Ctrl-C and a lost CUDA context do.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from .. import lighthouse_attention
from ..cuda_graph import NotCapturable
from ..sdpa import BackendUnavailable, causal_sdpa
from ..harness import baselines, failures
from ..harness.device import device_ok, free_memory, kernels_unavailable_reason, resolve_device
from ..harness.points import Shape, Task
from ..harness.tables import IMPLS
from ..harness.timing import measure
from .inputs import TORCH_DTYPES, Inputs, random_inputs
from .result import Result

#: SDPA backends the floor and Lighthouse's own SDPA call try, fastest first (cuDNN leads on Hopper).
FAST_BACKENDS = {"cuda": ("cudnn",), "cpu": ()}


# ------------------------------------------------------------------------------------ what can run here


def _sdpa_runs(backend: Optional[str], device: torch.device, dtype: str, head_dim: int = 64) -> bool:
    """A tiny forward+backward through a forced backend: does it run on this device and dtype at all?"""
    try:
        x = torch.randn(1, 2, 256, head_dim, device=device, dtype=TORCH_DTYPES[dtype], requires_grad=True)
        causal_sdpa(x, x, x, backend).sum().backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return True
    except Exception:
        return False


def default_impls(device: torch.device) -> List[str]:
    """torch always; triton wherever lighthouse.kernels says it can run."""
    return ["torch"] + (["triton"] if kernels_unavailable_reason(device) is None else [])


def default_baselines(device: torch.device, dtypes: Sequence[str]) -> List[str]:
    """Every dense baseline that runs by default on this device in at least one of the sweep's dtypes (each is
    still forced explicitly per row; a dtype it cannot do becomes an `unsupported` row)."""
    return baselines.defaults(device, dtypes, _sdpa_runs)


# ---------------------------------------------------------------------------------------- the context


class Bench:
    """State shared by the tasks of one sweep: the device, the current shape's inputs, compiled and probed
    things. One shape's inputs live at a time (tasks come grouped by shape)."""

    def __init__(self, device: str, seed: int, warmup: int, rep: int, min_rep: int, max_seconds: float):
        self.device = resolve_device(device)
        self.seed = seed
        self.timing = dict(warmup=warmup, rep=rep, min_rep=min_rep, max_seconds=max_seconds)
        self._shape: Optional[Tuple[Shape, bool]] = None
        self._inputs: Optional[Inputs] = None
        self._fast: Dict[Tuple[str, int], Optional[str]] = {}
        self._masks: Dict[int, object] = {}
        self._flex = None
        self._make_mask = None
        self.cp = None  # a cp.CpContext under `sweep --cp W` (context parallelism, one process per rank)

    def inputs(self, shape: Shape, gate: bool = False) -> Inputs:
        """The shape's inputs, seeded by (seed, shape) so a resumed sweep sees the same values."""
        if self._shape is not None and self._shape[0] == shape and (self._shape[1] or not gate):
            return self._inputs
        self.release()
        self._inputs = random_inputs(shape, self.device, self.seed, gate)
        self._shape = (shape, gate)
        return self._inputs

    def release(self) -> None:
        if self.cp is not None:
            self.cp.release()
        self._inputs = self._shape = None
        self._masks.clear()
        free_memory(self.device)

    def fast_backends(self, dtype: str, head_dim: int) -> List[Optional[str]]:
        """SDPA backends for the floor and Lighthouse's own SDPA call: cuDNN on CUDA if it runs this dtype
        and head dim, then None (PyTorch's choice) as the fallback."""
        key = (dtype, head_dim)
        if key not in self._fast:
            self._fast[key] = next(
                (b for b in FAST_BACKENDS.get(self.device.type, ()) if _sdpa_runs(b, self.device, dtype, head_dim)),
                None,
            )
        first = self._fast[key]
        return [first, None] if first else [None]

    def block_mask(self, n: int):
        """The causal block mask of length n, built compiled (uncompiled it materialises N^2 at 128K)."""
        if n not in self._masks:
            if self._make_mask is None:
                from torch.nn.attention.flex_attention import create_block_mask

                self._make_mask = torch.compile(create_block_mask)
            self._masks[n] = self._make_mask(_causal, None, None, n, n, device=self.device)
        return self._masks[n]

    def flex(self):
        """flex_attention compiled once (a recompile per shape; the first call of each is the warm-up)."""
        if self._flex is None:
            import torch._dynamo.config as dynamo_config
            from torch.nn.attention.flex_attention import flex_attention

            for name in ("recompile_limit", "cache_size_limit"):
                if hasattr(dynamo_config, name):
                    setattr(dynamo_config, name, max(getattr(dynamo_config, name), 64))
            self._flex = torch.compile(flex_attention, dynamic=False, fullgraph=True)
        return self._flex


def _causal(b, h, q_idx, kv_idx):
    """FlexAttention mask_mod of causal attention."""
    return q_idx >= kv_idx


# ------------------------------------------------------------------------------------------ one task


def preflight(task: Task, bench: Bench) -> Optional[str]:
    """Why this task cannot run here at all (-> `unsupported`), found without allocating anything."""
    if task.impl in baselines.BY_CSV:
        return baselines.BY_CSV[task.impl].unavailable()
    if task.impl == IMPLS["triton"]:
        return kernels_unavailable_reason(bench.device)
    if task.kind == "lighthouse" and task.point.scorer == "gla":
        if importlib.util.find_spec("fla") is None:
            return "scorer gla needs flash-linear-attention: pip install '.[gla]'"
        if bench.device.type != "cuda":
            return "scorer gla (flash-linear-attention) needs CUDA"
    return None


def backends_for(task: Task, bench: Bench) -> List[Optional[str]]:
    """The SDPA backends to try, in order: the forced one for a dense baseline; cuDNN-then-auto for the
    floor and for Lighthouse's own SDPA call (the floor uses exactly what Lighthouse uses)."""
    if task.kind == "dense":
        return [None if bench.cp is not None else baselines.BY_CSV[task.impl].sdpa_backend]
    return bench.fast_backends(task.shape.dtype, task.shape.head_dim)


def build(
    task: Task, bench: Bench, backend: Optional[str]
) -> Tuple[Callable[[], torch.Tensor], List[torch.Tensor], torch.Tensor]:
    """The callable to time, the leaves whose gradients it produces and the output gradient."""
    if bench.cp is not None:
        from .cp import build as build_cp

        return build_cp(task, bench, backend)
    s = task.shape
    if task.kind == "floor":
        sub = dataclasses.replace(s, kv_heads=s.heads, n=task.s_sel)  # the sub-sequence call's shape (MHA)
        x = random_inputs(sub, bench.device, bench.seed + 1)
        return (lambda: causal_sdpa(x.q, x.k, x.v, backend)), x.leaves, x.grad_out
    x = bench.inputs(s, gate=task.kind == "lighthouse" and task.point.scorer == "gla")
    retain = task.pass_ == "bwd"  # backward alone is timed by repeating it on one forward
    if task.kind == "dense":
        how, fn = baselines.BY_CSV[task.impl].build(x, bench, backend, task.cuda_graph, retain)
        return (_graphed(fn, x) if how == "graphed" else fn), x.leaves, x.grad_out
    p = task.point
    impl = task.impl.removeprefix("lighthouse_")
    if task.cuda_graph:
        from ..cuda_graph import graph_lighthouse

        cfg = p.config(impl, backend)
        return _graphed(lambda: graph_lighthouse(x.q, x.k, x.v, cfg, retain_graph=retain), x), x.leaves, x.grad_out

    cfg = p.config(impl, backend)  # rope='post': the random q, k are the raw ones, rotated after selection

    def run():
        return lighthouse_attention(x.q, x.k, x.v, config=cfg, gate=x.gate)

    return run, x.leaves, x.grad_out


def _graphed(make: Callable, x: Inputs) -> Callable[[], torch.Tensor]:
    """A step through a graphed callable made on the first call, so that the first call's time (first_call_ms)
    includes the warm-up iterations and the capture."""
    made = []

    def run():
        if not made:
            made.append(make())
        return made[0](x.q, x.k, x.v)

    return run


def classify(exc: Exception, task: Task) -> Tuple[str, str]:
    """Exception -> (status, reason): the harness's classifier (oom on the CPU as on CUDA), plus what only a
    sweep knows: FlexAttention failing to compile, or a dense/floor SDPA call refused, cannot run here."""
    status, reason = failures.classify(exc, unsupported=(BackendUnavailable, NotCapturable))
    if status != "error":
        return status, reason
    if task.impl in baselines.BY_CSV and baselines.BY_CSV[task.impl].every_failure_unsupported:
        return "unsupported", reason
    if isinstance(exc, RuntimeError) and (task.kind in ("dense", "floor") or "cannot run this call" in str(exc)):
        return "unsupported", reason.split(": ", 1)[1]
    return status, reason


def execute(task: Task, bench: Bench) -> Result:
    """One task -> one Result. Never raises, except KeyboardInterrupt. A failure that leaves the CUDA context
    lost ends the task as `error` (the row loop then stops the run)."""
    if task.invalid:
        return Result("invalid", task.invalid)
    if bench.cp is not None:
        from . import cp
    reason = cp.preflight(task, bench.cp) if bench.cp is not None else preflight(task, bench)
    if reason:
        return Result("unsupported", reason)
    result = None
    for backend in backends_for(task, bench):
        label = backend or (task.impl if task.impl in baselines.BY_CSV else "auto")
        try:
            fn, leaves, grad_out = build(task, bench, backend)
            timing = measure(fn, task.pass_, leaves, grad_out, device=bench.device, **bench.timing)
            result = Result("ok", timing=timing, sdpa_backend=label)
        except Exception as exc:  # noqa: BLE001 - classified, recorded, never fatal
            status, reason = classify(exc, task)
            result = Result(status, reason, sdpa_backend=label)
        fn = leaves = grad_out = None  # noqa: F841 - drop this task's tensors before the next one
        if bench.cp is not None:
            bench.cp.release()
            result = cp.agree(result, bench.cp)  # every rank takes the same branch below
        free_memory(bench.device)
        if result.status != "ok" and not device_ok(bench.device):  # a sticky CUDA error poisons every later task
            result.status = "error"
            break
        if result.status != "unsupported" or task.kind == "dense":
            break  # a Lighthouse or floor SDPA call that cuDNN cannot do falls back to PyTorch's choice
    return result
