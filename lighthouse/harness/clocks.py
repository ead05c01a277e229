"""The two clocks of a timed repetition, and the host's own time per call.

As launched: CUDA events around the step as the host issues it. The begin event fires as soon as the GPU is
free, so any gap in which the GPU waits for the host to launch the next kernel counts. That is what a caller
that synchronises every step pays, and it hides a kernel that got slower inside those gaps.

Host ahead: before the begin event a one-thread kernel holds the GPU, spinning on a flag in pinned host memory
that the host sets only once it has queued the whole step and the end event (NVBench's blocking kernel). The
GPU then runs the step's kernels back to back: the time is the kernels' own, as in a training loop where the
host runs ahead. The hold has a timeout, so a step that waits on the GPU before it has queued everything (a
host read of a device value inside the step, or more launches than the launch queue holds) cannot hang: the
hold lets go after `hold_ms`, the repetition counts as a timeout, and its time is host-ahead only up to the
step's first wait (the rest runs as launched).

Host time per call: the wall time the host spends issuing the step while the GPU is held, i.e. the CPU's own
share with no wait on the GPU in it. Repetitions that timed out waited on the GPU, so they give none.

The GPU side is a `Backend` (events, the hold, the flush, the host clock), so the loop here is tested on the
CPU against a simulated GPU timeline (tests/bench/test_clocks.py).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, List, Protocol

#: The hold lets go after max(MIN_HOLD_MS, HOLD_FACTOR x the longest host time of an as-launched repetition so
#: far): long enough for the host to queue any step that does not wait on the GPU, short enough that a step
#: that does wait costs little wall time.
MIN_HOLD_MS, HOLD_FACTOR, MAX_HOLD_MS = 2.0, 2.0, 2000.0


class Event(Protocol):
    def record(self) -> None: ...

    def synchronize(self) -> None: ...

    def elapsed_time(self, end: "Event") -> float: ...


class Hold(Protocol):
    def release(self) -> None:
        """The host has queued everything: let the GPU go."""

    def timed_out(self) -> bool:
        """After the end event has completed: did the hold let go by its timeout rather than by release()?"""


class Backend(Protocol):
    def now(self) -> float:
        """Host clock, seconds."""

    def flush(self) -> None:
        """Queue the L2 flush (outside the timed region)."""

    def event(self) -> Event: ...

    def hold(self, timeout_ms: float) -> Hold:
        """Queue the kernel that holds the GPU until release() or `timeout_ms`. Raises HoldUnavailable."""

    def synchronize(self) -> None: ...


class HoldUnavailable(RuntimeError):
    """The blocking kernel cannot run here (no Triton, a launch failure): only the as-launched clock is timed."""


@dataclass
class Repetitions:
    """The samples of one timed task, milliseconds."""

    launched: List[float] = field(default_factory=list)
    host_ahead: List[float] = field(default_factory=list)
    host: List[float] = field(default_factory=list)  # from host-ahead repetitions that did not time out
    timeouts: int = 0
    note: str = ""


def hold_timeout_ms(launched_host_ms: List[float]) -> float:
    """The hold's timeout for the next repetition (see MIN_HOLD_MS)."""
    longest = max(launched_host_ms, default=0.0)
    return min(MAX_HOLD_MS, max(MIN_HOLD_MS, HOLD_FACTOR * longest))


def time_both(
    step: Callable[[], None], backend: Backend, rep: int, min_rep: int, max_seconds: float, host_ahead: bool = True
) -> Repetitions:
    """Alternate one as-launched and one host-ahead repetition (same conditions for both clocks) until `rep`
    pairs, or `max_seconds` once `min_rep` are done. host_ahead=False: the as-launched clock alone."""
    out = Repetitions()
    launched_host: List[float] = []
    start = backend.now()
    while len(out.launched) < rep and not (len(out.launched) >= min_rep and backend.now() - start >= max_seconds):
        backend.flush()
        begin, end = backend.event(), backend.event()
        begin.record()
        t0 = backend.now()
        step()
        launched_host.append((backend.now() - t0) * 1e3)
        end.record()
        end.synchronize()
        out.launched.append(begin.elapsed_time(end))
        if not host_ahead:
            continue
        backend.flush()
        try:
            hold = backend.hold(hold_timeout_ms(launched_host))
        except HoldUnavailable as err:
            host_ahead, out.note = False, f"host-ahead clock unavailable: {err}"
            warnings.warn(out.note, stacklevel=2)
            continue
        begin, end = backend.event(), backend.event()
        begin.record()
        t0 = backend.now()
        step()
        host_ms = (backend.now() - t0) * 1e3
        end.record()
        hold.release()
        end.synchronize()
        out.host_ahead.append(begin.elapsed_time(end))
        if hold.timed_out():
            out.timeouts += 1
        else:
            out.host.append(host_ms)
    return out


# ------------------------------------------------------------------------------------------- CUDA
class CudaBackend:
    """CUDA events on the current stream, the L2 flush of timing.py and the Triton hold kernel."""

    def __init__(self, device, flush: Callable[[], None]):
        self.device = device
        self._flush = flush
        self._flag = None

    def now(self) -> float:
        return time.perf_counter()

    def flush(self) -> None:
        self._flush()

    def event(self):
        import torch

        return torch.cuda.Event(enable_timing=True)

    def synchronize(self) -> None:
        import torch

        torch.cuda.synchronize(self.device)

    def hold(self, timeout_ms: float) -> "_CudaHold":
        import torch

        try:
            from .blocking import launch_hold
        except ImportError as err:
            raise HoldUnavailable(f"triton cannot be imported ({err})") from None
        if self._flag is None:
            # word 0: set by the host to release; word 1: set by the kernel when it let go by its timeout
            self._flag = torch.zeros(2, dtype=torch.int32, pin_memory=True)
        self._flag.zero_()  # the previous repetition's end event has completed: no kernel reads it now
        try:
            with torch.cuda.device(self.device):
                launch_hold(self._flag, int(timeout_ms * 1e6))
        except Exception as err:  # noqa: BLE001 - any launch failure leaves the as-launched clock alone
            raise HoldUnavailable(f"{type(err).__name__}: {err}") from None
        return _CudaHold(self._flag)


class _CudaHold:
    def __init__(self, flag):
        self.flag = flag

    def release(self) -> None:
        self.flag[0] = 1  # a plain host store into pinned memory, which the spinning kernel reads

    def timed_out(self) -> bool:
        return bool(self.flag[1].item())
