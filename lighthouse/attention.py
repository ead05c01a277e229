"""The public functions: lighthouse_attention and select, dispatching to an implementation."""

from __future__ import annotations

import os
import warnings
from typing import Optional, Union

import torch

from .config import LighthouseConfig, as_config
from .plan import make_plan
from .rope import check_positions
from .reference import lighthouse_attention_torch, select_torch


#: Environment switch that overrides every impl choice ("torch" or "triton"). Meant for the regression gate's
#: own test (a deliberately slow layer must fail `lighthouse-bench check`) and for bisecting a wrong result.
FORCE_IMPL_ENV = "LIGHTHOUSE_FORCE_IMPL"
#: The keyword defaults below are LighthouseConfig's (the one place they are set).
_D = LighthouseConfig()

#: TEST-ONLY switch: plant a known slowdown in the layer, so the regression gate's sensitivity can be measured
#: (scripts/gate_slowdowns.py). Microseconds added per layer call: one number for every call, or per sequence
#: length N as `16384=230,98304=540` (other N: none). Never set it outside such a test.
TEST_SLOWDOWN_ENV = "LIGHTHOUSE_TEST_SLOWDOWN_US"
#: Where the planted delay is spent: "gpu" (default; a spin queued on the stream, which slows a point bound by
#: the GPU) or "host" (a busy-wait of the thread issuing the launches, autograd's worker in the backward, which
#: slows a point bound by the host, such as N = 16K at batch 1 on an H200, where a GPU spin only fills idle time; a host
#: wait is not captured into a CUDA graph).
TEST_SLOWDOWN_WHERE_ENV = "LIGHTHOUSE_TEST_SLOWDOWN_WHERE"


def _forced_impl() -> Optional[str]:
    forced = os.environ.get(FORCE_IMPL_ENV, "").strip()
    if not forced:
        return None
    if forced not in ("torch", "triton"):
        raise ValueError(f"{FORCE_IMPL_ENV} must be 'torch' or 'triton' (or unset), got {forced!r}")
    warnings.warn(f"{FORCE_IMPL_ENV}={forced}: every Lighthouse call runs the {forced} path", stacklevel=3)
    return forced


def _resolve_impl(impl: str, q: torch.Tensor) -> str:
    impl = _forced_impl() or impl
    if impl == "auto":
        from . import kernels

        return "triton" if q.is_cuda and kernels.available(q.device) else "torch"
    if impl == "triton":
        from . import kernels

        reason = kernels.unavailable_reason(q.device)
        if reason:
            raise ValueError(f"impl='triton' is not available here: {reason}; use impl='torch'")
    return impl


def _planted_delay_us(n: int) -> float:
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
        raise ValueError(f"{TEST_SLOWDOWN_ENV} must be microseconds (250) or N=microseconds pairs "
                         f"(16384=230,98304=540), got {text!r}") from None
    if not us >= 0:
        raise ValueError(f"{TEST_SLOWDOWN_ENV}: microseconds must be >= 0, got {text!r}")
    return us


_SLEEP_CYCLES_PER_US: dict = {}


def _planted_where() -> str:
    where = os.environ.get(TEST_SLOWDOWN_WHERE_ENV, "gpu").strip() or "gpu"
    if where not in ("gpu", "host"):
        raise ValueError(f"{TEST_SLOWDOWN_WHERE_ENV} must be gpu or host, got {where!r}")
    return where


def _host_wait(us: float) -> None:
    """Busy-wait `us` microseconds on this thread (time.sleep overshoots by tens of microseconds)."""
    import time

    end = time.perf_counter() + us * 1e-6
    while time.perf_counter() < end:
        pass


def _delay(device: torch.device, us: float) -> None:
    """Spend `us` microseconds: by default a GPU spin (torch.cuda._sleep) queued on the current stream, so the
    delay adds to the device timeline like a slower kernel; with LIGHTHOUSE_TEST_SLOWDOWN_WHERE=host, or on the
    CPU, a busy-wait of the thread that runs it (autograd's worker in the backward), like slower host code."""
    if us <= 0:
        return
    if device.type != "cuda" or _planted_where() == "host":
        _host_wait(us)
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
        _delay(ref.device, ctx.us)
        return None, dq, dk, dv


def _plant(q, k, v):
    """TEST-ONLY (TEST_SLOWDOWN_ENV): the delay goes at the end of the backward when the call records a graph
    (a training step: fwd+bwd or bwd), else at the end of the forward. Returns (q, k, v, delay after forward)."""
    us = _planted_delay_us(q.shape[2])
    if us <= 0:
        return q, k, v, 0.0
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        q, k, v = _PlantedDelay.apply(us, q, k, v)
        return q, k, v, 0.0
    return q, k, v, us


def _rope_positions(cfg: LighthouseConfig, positions, q: torch.Tensor) -> Optional[torch.Tensor]:
    """positions= checked and as (1 or B, N) int64; only rope='post' reads them (a warning otherwise)."""
    if positions is not None and cfg.rope != "post":
        warnings.warn("positions= is used only by rope='post'; rope='pre' ignores it", UserWarning, stacklevel=3)
        return None
    return check_positions(positions, q.shape[0], q.shape[2], q.device)


def lighthouse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    levels: int = _D.levels,
    pooling: int = _D.pooling,
    topk: int = _D.topk,
    scorer: str = _D.scorer,
    dilation: int = _D.dilation,
    impl: str = _D.impl,
    sdpa_backend: Optional[str] = _D.sdpa_backend,
    rope: str = _D.rope,
    rope_theta: float = _D.rope_theta,
    rope_scaling: Optional[dict] = _D.rope_scaling,
    gate: Optional[torch.Tensor] = None,
    config: Union[LighthouseConfig, dict, None] = None,
    cp_group=None,
    positions: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Causal Lighthouse attention. q (B, Hq, N, D); k, v (B, Hkv, N, D), Hq a multiple of Hkv.

    Returns (B, Hq, N, D) in q's dtype. An N that is not a multiple of (topk/128) * pooling**(levels-1)
    is zero-padded at the end internally: real tokens never see the padding (attention is causal and
    padded tokens score -inf, so they are refined only when a tile has nothing else left).
    `config` (a LighthouseConfig or a dict of its fields) overrides the keyword parameters when given.

    Context parallelism: with `cp_group` (a torch.distributed ProcessGroup or 1-D DeviceMesh), q, k, v are
    this rank's contiguous shard of the sequence (see lighthouse.distributed.shard_sequence) and the result
    is this rank's rows of the single-device output; scorer='norm' only.

    RoPE (docs/rope.md): with rope='pre' (default) q and k are used as given (already rotated by the model).
    With rope='post' they must be un-rotated: selection and pooling use them raw, and each selected entry is
    rotated by RoPE (rope_theta, rope_scaling) at the position of the last token it covers. `positions`
    ((N,) or (B, N) integers, the model's position_ids) are the token positions; None means 0..N-1 (under
    cp_group: the shard's global positions, its first token at rank * shard length).
    """
    cfg = (LighthouseConfig(levels, pooling, topk, scorer, dilation, impl, sdpa_backend, rope, rope_theta, rope_scaling)
           if config is None else as_config(config))
    if cp_group is not None:
        from .distributed import context_parallel_lighthouse_attention

        return context_parallel_lighthouse_attention(q, k, v, cp_group, cfg, gate, positions)
    plan = make_plan(cfg, q, k, v, gate)
    positions = _rope_positions(cfg, positions, q)
    planted = 0.0
    if TEST_SLOWDOWN_ENV in os.environ:  # test-only; one dictionary lookup per call otherwise
        q, k, v, planted = _plant(q, k, v)
    if _resolve_impl(cfg.impl, q) == "triton":
        from .kernels import lighthouse_attention_triton

        out = lighthouse_attention_triton(q, k, v, plan, gate, positions)
    else:
        out = lighthouse_attention_torch(q, k, v, plan, gate, positions=positions)
    _delay(out.device, planted)
    return out


def select(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    levels: int = _D.levels,
    pooling: int = _D.pooling,
    topk: int = _D.topk,
    scorer: str = _D.scorer,
    dilation: int = _D.dilation,
    impl: str = _D.impl,
    sdpa_backend: Optional[str] = _D.sdpa_backend,
    rope: str = _D.rope,
    rope_theta: float = _D.rope_theta,
    rope_scaling: Optional[dict] = _D.rope_scaling,
    gate: Optional[torch.Tensor] = None,
    config: Union[LighthouseConfig, dict, None] = None,
    cp_group=None,
) -> torch.Tensor:
    """The selected sub-sequence, (B, Hkv, S) int64 indices into the concatenated pyramid
    (offset(l) + i, offset(l) = sum of n_j for j < l, over the padded length), in causal order.
    With `cp_group`: this rank's block of S/W columns of it, computed from the rank's shard alone."""
    cfg = (LighthouseConfig(levels, pooling, topk, scorer, dilation, impl, sdpa_backend, rope, rope_theta, rope_scaling)
           if config is None else as_config(config))
    if cp_group is not None:
        from .distributed import context_parallel_select

        return context_parallel_select(q, k, v, cp_group, cfg, gate)
    plan = make_plan(cfg, q, k, v, gate)
    if _resolve_impl(cfg.impl, q) == "triton":
        from .kernels import select_triton

        return select_triton(q, k, v, plan, gate)
    return select_torch(q, k, v, plan, gate)
