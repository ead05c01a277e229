"""The public functions: lighthouse_attention and select, dispatching to an implementation."""

from __future__ import annotations

import os
import warnings
from typing import Optional

import torch

from .config import LighthouseConfig
from .plan import make_plan
from .reference import lighthouse_attention_torch, select_torch


#: Environment switch that overrides every impl choice ("torch" or "triton"). Meant for the regression gate's
#: own test (a deliberately slow layer must fail `lighthouse-bench check`) and for bisecting a wrong result.
FORCE_IMPL_ENV = "LIGHTHOUSE_FORCE_IMPL"
#: The keyword defaults below are LighthouseConfig's (the one place they are set).
_D = LighthouseConfig()


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
    gate: Optional[torch.Tensor] = None,
    config: Optional[LighthouseConfig] = None,
    cp_group=None,
) -> torch.Tensor:
    """Causal Lighthouse attention. q (B, Hq, N, D); k, v (B, Hkv, N, D), Hq a multiple of Hkv.

    Returns (B, Hq, N, D) in q's dtype. An N that is not a multiple of (topk/128) * pooling**(levels-1)
    is zero-padded at the end internally: real tokens never see the padding (attention is causal and
    padded tokens score -inf, so they are refined only when a tile has nothing else left).
    `config` overrides the keyword parameters when given.

    Context parallelism: with `cp_group` (a torch.distributed ProcessGroup or 1-D DeviceMesh), q, k, v are
    this rank's contiguous shard of the sequence (see lighthouse.distributed.shard_sequence) and the result
    is this rank's rows of the single-device output; scorer='norm' only.
    """
    cfg = config or LighthouseConfig(levels, pooling, topk, scorer, dilation, impl, sdpa_backend)
    if cp_group is not None:
        from .distributed import context_parallel_lighthouse_attention

        return context_parallel_lighthouse_attention(q, k, v, cp_group, cfg, gate)
    plan = make_plan(cfg, q, k, v, gate)
    if _resolve_impl(cfg.impl, q) == "triton":
        from .kernels import lighthouse_attention_triton

        return lighthouse_attention_triton(q, k, v, plan, gate)
    return lighthouse_attention_torch(q, k, v, plan, gate)


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
    gate: Optional[torch.Tensor] = None,
    config: Optional[LighthouseConfig] = None,
    cp_group=None,
) -> torch.Tensor:
    """The selected sub-sequence, (B, Hkv, S) int64 indices into the concatenated pyramid
    (offset(l) + i, offset(l) = sum of n_j for j < l, over the padded length), in causal order.
    With `cp_group`: this rank's block of S/W columns of it, computed from the rank's shard alone."""
    cfg = config or LighthouseConfig(levels, pooling, topk, scorer, dilation, impl, sdpa_backend)
    if cp_group is not None:
        from .distributed import context_parallel_select

        return context_parallel_select(q, k, v, cp_group, cfg, gate)
    plan = make_plan(cfg, q, k, v, gate)
    if _resolve_impl(cfg.impl, q) == "triton":
        from .kernels import select_triton

        return select_triton(q, k, v, plan, gate)
    return select_torch(q, k, v, plan, gate)
