"""The public functions: lighthouse_attention and select, dispatching to an implementation."""

from __future__ import annotations

import functools
from typing import Optional, Union

import torch

from .config import LighthouseConfig, as_config
from .dispatch import resolve_impl
from .plan import make_plan
from .rope import positions_for
from .reference import lighthouse_attention_torch, select_torch


#: The keyword defaults below are LighthouseConfig's (the one place they are set).
_D = LighthouseConfig()

#: Wrapper around every single-device call, for instrumentation outside the public API (None: no cost but one
#: attribute read). hook(q, k, v) -> (q, k, v, after), and after(out) runs on the output. The regression
#: gate's planted slowdown (lighthouse.testing.slowdown) is the one user.
call_hook = None


def _keyword_config(*fields) -> LighthouseConfig:
    """The LighthouseConfig of a call's keyword parameters, validated once per distinct set (a call's host time
    is the layer's front: reports/PERF_NOTES.md step 23). Keyed by each value and its type, so that a value that
    only compares equal (4.0 for 4, True for 1) is validated for itself; a dict (rope_scaling) is not cached."""
    try:
        return _cached_config(fields, tuple(map(type, fields)))
    except TypeError:  # an unhashable field
        return LighthouseConfig(*fields)


@functools.lru_cache(maxsize=64)
def _cached_config(fields: tuple, types: tuple) -> LighthouseConfig:
    return LighthouseConfig(*fields)


_LAYER = []


def _triton_layer():
    """The Triton path's module, imported at its first call (the package imports without Triton); its entry is
    looked up at each call, so that a test can replace it."""
    if not _LAYER:
        from .kernels import layer

        _LAYER.append(layer)
    return _LAYER[0]


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
    cfg = (
        _keyword_config(levels, pooling, topk, scorer, dilation, impl, sdpa_backend, rope, rope_theta, rope_scaling)
        if config is None
        else as_config(config)
    )
    if cp_group is not None:
        from .distributed import context_parallel_lighthouse_attention

        return context_parallel_lighthouse_attention(q, k, v, cp_group, cfg, gate, positions)
    plan = make_plan(cfg, q, k, v, gate)
    positions = positions_for(cfg, positions, q)
    after = None
    if call_hook is not None:
        q, k, v, after = call_hook(q, k, v)
    if resolve_impl(cfg.impl, q) == "triton":
        out = _triton_layer().lighthouse_attention_triton(q, k, v, plan, gate, positions)
    else:
        out = lighthouse_attention_torch(q, k, v, plan, gate, positions=positions)
    if after is not None:
        after(out)
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
    cfg = (
        LighthouseConfig(levels, pooling, topk, scorer, dilation, impl, sdpa_backend, rope, rope_theta, rope_scaling)
        if config is None
        else as_config(config)
    )
    if cp_group is not None:
        from .distributed import context_parallel_select

        return context_parallel_select(q, k, v, cp_group, cfg, gate)
    plan = make_plan(cfg, q, k, v, gate)
    if resolve_impl(cfg.impl, q) == "triton":
        from .kernels import select_triton

        return select_triton(q, k, v, plan, gate)
    return select_torch(q, k, v, plan, gate)
