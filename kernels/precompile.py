"""Compile the Triton kernels of a call before its first launch, all at once, in threads (cold start).

Triton compiles a kernel at its first launch, one after the other: at N=96K the layer's six kernels took 4.8 s of
compiling on the H200 plus, in Triton 3.6, a C launcher built with the host's C compiler for every kernel
signature (reports/PERF_NOTES.md, step 18). Most of both runs outside the GIL (ptxas and the C compiler are
subprocesses, the MLIR passes native code), so compiling the launches of a call concurrently (Triton's public
`JITFunction.warmup`, which fills the kernel's own cache exactly as the launch would) and loading each kernel's
module and launcher in the same thread makes the first call wait for about the slowest kernel, not their sum.

While the kernels compile, the calling thread can do other first-call work (`alongside`): the layer runs the stock
SDPA's forward and backward once on the sub-sequence's shape, whose first backward alone took 2.2 s (cuDNN) to 3.0 s
(flash) on the H200, after the Triton kernels were ready (reports/h200/coldstart/first-call-s4/).

Done once per launch configuration (the caller keeps the key); never fails the call: any error leaves the
kernels to Triton's usual compile at their first launch. LIGHTHOUSE_PRECOMPILE=0 turns it off. Nothing to do on the
CPU (the interpreter compiles nothing) or while a CUDA graph is being captured.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, Hashable, Optional, Sequence, Tuple

import torch

from lighthouse.finite import capturing

from .launch import Launch

ENV = "LIGHTHOUSE_PRECOMPILE"
_LOG = logging.getLogger(__name__)
_LOCK = threading.Lock()
#: The configurations precompiled (or tried) in this process: key -> (every kernel ready, seconds it took).
_DONE: Dict[Hashable, Tuple[bool, float]] = {}


def results() -> Dict[Hashable, Tuple[bool, float]]:
    """What this process precompiled: configuration key -> (every kernel ready, seconds); for reports."""
    return dict(_DONE)


def interpreted() -> bool:
    """TRITON_INTERPRET set (as lighthouse.kernels.interpreted, not imported from the package: a cycle)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def wanted(device: torch.device) -> bool:
    """Whether a call on `device` precompiles: CUDA, not interpreted, not capturing a graph, not turned off."""
    if device.type != "cuda" or interpreted() or os.environ.get(ENV, "1").strip() in ("0", ""):
        return False
    return not capturing()


def precompile(
    key: Hashable,
    launches: Callable[[], Sequence[Launch]],
    device: torch.device,
    alongside: Optional[Callable[[], None]] = None,
) -> bool:
    """Compile and load the kernels of `launches()` (built only if needed) concurrently, once per `key` in this
    process, running `alongside()` in this thread meanwhile. True when every kernel is ready to launch; False when
    turned off, done before or anything failed (then those kernels compile at their first launch, as without
    this)."""
    with _LOCK:  # a second thread with the same configuration waits here, then finds it done
        if key in _DONE or not wanted(device):
            return False
        start = time.perf_counter()
        _DONE[key] = (False, 0.0)
        try:
            ok = warm(launches(), device, alongside=alongside)
        except Exception as err:  # never fail the call over an optimisation
            _LOG.debug("precompile skipped: %s: %s", type(err).__name__, err)
            ok = False
        _DONE[key] = (ok, time.perf_counter() - start)
        return ok


def warm(
    launches: Sequence[Launch], device: torch.device, workers: int = 0, alongside: Optional[Callable[[], None]] = None
) -> bool:
    """Compile every launch (JITFunction.warmup: the launch's own specialisation, stored in the kernel's cache)
    and load its module and launcher, in `workers` threads (0: one per launch, at most the CPU count), while this
    thread runs `alongside()` (its failure is logged, never raised: it only warms)."""
    if not launches:
        _run_alongside(alongside)
        return True
    from triton.runtime import driver

    with torch.cuda.device(device):
        # made here, once, not raced by the threads: Triton's driver (and its C helpers), and each kernel's cache for
        # this device (a defaultdict entry: two threads making it at once could each keep their own, one lost)
        index = driver.active.get_current_device()
        for kernel in {id(launch.kernel): launch.kernel for launch in launches}.values():
            caches = getattr(kernel, "device_caches", None)
            if caches is not None:
                caches[index]
    workers = workers or min(len(launches), os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lighthouse-precompile") as pool:
        futures = [pool.submit(_warm_one, launch, device) for launch in launches]
        _run_alongside(alongside)
        return all([f.result() for f in futures])


def _run_alongside(alongside: Optional[Callable[[], None]]) -> None:
    if alongside is None:
        return
    try:
        alongside()
    except Exception as err:
        _LOG.debug("first-call work beside the precompile failed: %s: %s", type(err).__name__, err)


def _warm_one(launch: Launch, device: torch.device) -> bool:
    try:
        with torch.cuda.device(device):  # a thread's current device is its own: Triton caches kernels per device
            compiled = launch.kernel.warmup(*launch.args, grid=launch.grid, **launch.kwargs)
            load = getattr(compiled, "_init_handles", None)  # what the first launch would do: module and launcher
            if load is not None:
                load()
        return True
    except Exception as err:
        _LOG.debug("precompile of %s failed: %s: %s", getattr(launch.kernel, "__name__", "?"), type(err).__name__, err)
        return False
