"""TEST-ONLY: a known slowdown planted in the Lighthouse layer, so that the regression gate's sensitivity can
be measured (scripts/gate_slowdowns.py, `lighthouse-bench check` with LIGHTHOUSE_TEST_SLOWDOWN_US set).

Not part of the public API: the layer knows nothing of it; `install()` puts `plant` on the layer's call hook
(lighthouse.attention.call_hook), and the CLI installs it when the switch is set in its environment.
"""

from __future__ import annotations

import os

import torch

from .switches import TEST_SLOWDOWN_ENV, TEST_SLOWDOWN_WHERE_ENV


def planted_delay_us(n: int) -> float:
    """The test-only delay for a call at sequence length n (0 when the switch is unset)."""
    text = os.environ.get(TEST_SLOWDOWN_ENV, "").strip()
    if not text:
        return 0.0
    try:
        if "=" not in text:
            us = float(text)
        else:
            table = {int(a): float(b) for a, b in (item.split("=") for item in text.split(",") if item.strip())}
            us = table.get(int(n), 0.0)
    except ValueError:
        raise ValueError(
            f"{TEST_SLOWDOWN_ENV} must be microseconds (250) or N=microseconds pairs "
            f"(16384=230,98304=540), got {text!r}"
        ) from None
    if not us >= 0:
        raise ValueError(f"{TEST_SLOWDOWN_ENV}: microseconds must be >= 0, got {text!r}")
    return us


_SLEEP_CYCLES_PER_US: dict = {}


def planted_where() -> str:
    where = os.environ.get(TEST_SLOWDOWN_WHERE_ENV, "gpu").strip() or "gpu"
    if where not in ("gpu", "host"):
        raise ValueError(f"{TEST_SLOWDOWN_WHERE_ENV} must be gpu or host, got {where!r}")
    return where


def host_wait(us: float) -> None:
    """Busy-wait `us` microseconds on this thread (time.sleep overshoots by tens of microseconds)."""
    import time

    end = time.perf_counter() + us * 1e-6
    while time.perf_counter() < end:
        pass


def delay(device: torch.device, us: float) -> None:
    """Spend `us` microseconds: by default a GPU spin (torch.cuda._sleep) queued on the current stream, so the
    delay adds to the device timeline like a slower kernel; with LIGHTHOUSE_TEST_SLOWDOWN_WHERE=host, or on the
    CPU, a busy-wait of the thread that runs it (autograd's worker in the backward), like slower host code."""
    if us <= 0:
        return
    if device.type != "cuda" or planted_where() == "host":
        host_wait(us)
        return
    key = device.index if device.index is not None else torch.cuda.current_device()
    if key not in _SLEEP_CYCLES_PER_US:  # calibrate once: cycles of torch.cuda._sleep per microsecond
        # The spin counts SM clock cycles, and the clock ramps from idle (345 MHz on an H200) to boost (~1980)
        # under load: a rate read at a lower clock plants too short a delay once the benchmark runs at boost
        # (the H200 run of scripts/gate_slowdowns.py measured about half of a planted 10%). Take the fastest
        # of several spins, i.e. the rate at the clock the timed repetitions run at.
        # The second H200 run (reports/h200/check/gate-slowdowns-3x) still measured about half of a planted 10%
        # at 64K: six spins (~35 ms from idle) end before the clock has ramped. Spin for at least 250 ms first.
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        rates, spun_ms = [], 0.0
        while len(rates) < 6 or (spun_ms < 250.0 and len(rates) < 400):
            begin.record()
            torch.cuda._sleep(2_000_000)
            end.record()
            end.synchronize()
            ms = begin.elapsed_time(end)
            spun_ms += ms
            rates.append(2_000_000 / max(ms * 1e3, 1e-3))
        _SLEEP_CYCLES_PER_US[key] = max(rates)
    torch.cuda._sleep(max(1, int(us * _SLEEP_CYCLES_PER_US[key])))


class _PlantedDelay(torch.autograd.Function):
    """Identity on (q, k, v) whose backward queues the delay once all three gradients exist, i.e. after the
    layer's whole backward: a delay there cannot hide behind host-side launch time of later work."""

    @staticmethod
    def forward(ctx, us, q, k, v):
        ctx.us = us
        return q.view_as(q), k.view_as(k), v.view_as(v)

    @staticmethod
    def backward(ctx, dq, dk, dv):
        ref = next(g for g in (dq, dk, dv) if g is not None)
        delay(ref.device, ctx.us)
        return None, dq, dk, dv


def plant(q, k, v):
    """The call hook (lighthouse.attention.call_hook): while TEST_SLOWDOWN_ENV is set, the delay goes at the end
    of the backward when the call records a graph (a training step: fwd+bwd or bwd), else after the forward.
    Returns (q, k, v, after) where after(out) spends the forward's delay (None: nothing to spend)."""
    if TEST_SLOWDOWN_ENV not in os.environ:
        return q, k, v, None
    us = planted_delay_us(q.shape[2])
    if us <= 0:
        return q, k, v, None
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        q, k, v = _PlantedDelay.apply(us, q, k, v)
        return q, k, v, None
    return q, k, v, lambda out: delay(out.device, us)


def install() -> None:
    """Route every single-device Lighthouse call through `plant` (a no-op while the switch is unset)."""
    from .. import attention

    attention.call_hook = plant


def uninstall() -> None:
    from .. import attention

    if attention.call_hook is plant:
        attention.call_hook = None
