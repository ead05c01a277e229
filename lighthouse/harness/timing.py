"""Timing one callable the same way for every implementation.

CUDA: two clocks per repetition (clocks.py): as launched (one CUDA-event pair around the step as the host
issues it) and host ahead (the GPU held until the host has queued the whole step: the kernels' own time), plus
the host's own time per call; the L2 cache flushed (256 MiB written) before each, outside the timed region.
The first call (compilation, autotuning) is timed separately and never mixed with the repetitions. CPU: a
synchronous wall clock, so host ahead is as launched and the host time per call is the whole call.
Repetitions stop at `rep`, or once `max_seconds` are spent and at least `min_rep` are done, so a 4-second point
does not take a minute.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

import torch

from . import clocks

FLUSH_BYTES = 256 * 1024 * 1024
_flush_buffer: Optional[torch.Tensor] = None


def _percentile_of(samples: str, q: float) -> property:
    """A read-only figure of a Timing: percentile q of one of its sample lists (None when that list is empty and
    optional; the as-launched samples are never empty)."""

    def figure(self) -> Optional[float]:
        xs = getattr(self, samples)
        return percentile(xs, q) if xs or samples == "samples_ms" else None

    return property(figure, doc=f"percentile {q:g} of {samples}")


@dataclass
class Timing:
    samples_ms: List[float]
    first_call_ms: float
    peak_bytes: Optional[int]  # CUDA only: max allocated during the timed repetitions (inputs included)
    host_ahead_ms: List[float] = field(default_factory=list)  # empty where the hold kernel cannot run
    host_ms: List[float] = field(default_factory=list)  # host time to issue one step (repetitions without timeout)
    #: host-ahead repetitions whose hold let go by its timeout: the step waited on the GPU before it had queued
    #: everything, so those are host-ahead only up to that wait (clocks.py)
    host_ahead_timeouts: int = 0

    median_ms = _percentile_of("samples_ms", 50)
    p20_ms = _percentile_of("samples_ms", 20)
    p80_ms = _percentile_of("samples_ms", 80)
    host_ahead_median_ms = _percentile_of("host_ahead_ms", 50)  # None where the hold kernel could not run
    host_ahead_p20_ms = _percentile_of("host_ahead_ms", 20)
    host_ahead_p80_ms = _percentile_of("host_ahead_ms", 80)
    host_ms_per_call = _percentile_of("host_ms", 50)  # None where every repetition waited on the GPU


def percentile(samples: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), without numpy."""
    xs = sorted(samples)
    if not xs:
        raise ValueError("no samples")
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _flush(device: torch.device) -> None:
    """Evict the L2 cache (50 MiB on an H200) so each repetition reads its inputs from HBM, as in training."""
    global _flush_buffer
    if _flush_buffer is None or _flush_buffer.device != device:
        _flush_buffer = torch.empty(FLUSH_BYTES // 4, dtype=torch.int32, device=device)
    _flush_buffer.zero_()


def _flush_bytes(device: torch.device) -> int:
    return FLUSH_BYTES if _flush_buffer is not None and _flush_buffer.device == device else 0


def _clear(leaves: Sequence[torch.Tensor]) -> None:
    for t in leaves:
        t.grad = None


def _retained():
    """Backward alone is timed by repeating it on one graph: the Triton path must keep its inner graph."""
    try:
        from ..kernels import retain_inner_graph

        return retain_inner_graph()
    except ImportError:  # no triton: nothing to retain
        return contextlib.nullcontext()


def measure(
    fn: Callable[[], torch.Tensor],
    pass_: str,
    leaves: Sequence[torch.Tensor],
    grad_out: Optional[torch.Tensor],
    *,
    device: torch.device,
    warmup: int,
    rep: int,
    min_rep: int,
    max_seconds: float,
    host_ahead: bool = True,
    backend: Optional[clocks.Backend] = None,
) -> Timing:
    """Time `fn` (which returns the attention output) for one pass.

    fwd: the forward with autograd recording (as in training). bwd: one forward, then
    `out.backward(grad_out, retain_graph=True)` per repetition, gradients cleared before each.
    fwdbwd: forward + backward per repetition. `leaves` are the inputs whose .grad is cleared.
    host_ahead: also time the host-ahead clock and the host time per call (CUDA). backend: the GPU side of the
    two clocks (clocks.Backend; default CUDA on a CUDA device, none on the CPU; tests inject a simulated one).
    """
    cuda = device.type == "cuda"
    state = {}
    if backend is None and cuda:
        backend = clocks.CudaBackend(device, lambda: _flush(device))

    def sync():
        if backend is not None:
            backend.synchronize()

    if pass_ == "fwd":

        def step():
            fn()
    elif pass_ == "fwdbwd":

        def step():
            _clear(leaves)
            fn().backward(grad_out)
    elif pass_ == "bwd":

        def step():
            _clear(leaves)
            with _retained():
                state["out"].backward(grad_out, retain_graph=True)
    else:
        raise ValueError(f"pass must be one of fwd, bwd, fwdbwd, got {pass_!r}")

    # First call: compilation / autotuning / lazy init, timed apart from everything else.
    sync()
    t0 = time.perf_counter()
    if pass_ == "bwd":
        with _retained():  # the forward records it: CUDA backwards run on autograd's device thread
            state["out"] = fn()
    step()
    sync()
    first_call_ms = (time.perf_counter() - t0) * 1e3

    warm_start = time.perf_counter()
    for _ in range(warmup - 1):
        if time.perf_counter() - warm_start >= max_seconds:
            break
        step()
    sync()

    if cuda:
        _flush(device)
        sync()
        torch.cuda.reset_peak_memory_stats(device)
    if backend is not None:
        reps = clocks.time_both(step, backend, rep, min_rep, max_seconds, host_ahead)
        timing = Timing(reps.launched, first_call_ms, None, reps.host_ahead, reps.host, reps.timeouts)
    else:  # the CPU runs the step synchronously: one clock, and the host's time is the whole call
        samples: List[float] = []
        start = time.perf_counter()
        while len(samples) < rep and not (len(samples) >= min_rep and time.perf_counter() - start >= max_seconds):
            t = time.perf_counter()
            step()
            samples.append((time.perf_counter() - t) * 1e3)
        timing = Timing(samples, first_call_ms, None, list(samples), list(samples))
    if cuda:
        timing.peak_bytes = torch.cuda.max_memory_allocated(device) - _flush_bytes(device)
    state.clear()
    _clear(leaves)
    return timing
