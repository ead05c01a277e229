"""Shapes of one Lighthouse call: the config applied to concrete tensor sizes.

Both implementations (torch, triton) read their sizes from here, so padding, level sizes and the
selected length S are computed in exactly one place.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from functools import cached_property
from typing import Tuple

import torch

from .config import TILE, LighthouseConfig
from .sdpa import check_backend_runs_on

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@dataclass(frozen=True)
class LighthousePlan:
    """Sizes of one call. The derived sizes are cached on first use: the kernels' wrappers read them some
    thirty times per forward + backward, which is host time at small N."""

    config: LighthouseConfig
    batch: int
    q_heads: int
    kv_heads: int
    seq_len: int  # N as given
    padded_len: int  # N after zero-padding to a multiple of tiles * p**(L-1)
    head_dim: int

    @cached_property
    def memo(self) -> dict:
        """Derived launch arguments the kernels' wrappers compute once per plan (and device, dtype...) instead of
        per call; a plan is immutable and plan_for hands a training step's calls one plan. Not part of equality."""
        return {}

    @property
    def group(self) -> int:
        """Query heads per kv head (GQA group size)."""
        return self.q_heads // self.kv_heads

    @cached_property
    def spans(self) -> Tuple[int, ...]:
        """f_l = p**(l-1) for l = 1..L."""
        p = self.config.pooling
        return tuple(p**level for level in range(self.config.levels))

    @cached_property
    def level_sizes(self) -> Tuple[int, ...]:
        """n_l = N_pad / f_l for l = 1..L."""
        return tuple(self.padded_len // f for f in self.spans)

    @cached_property
    def offsets(self) -> Tuple[int, ...]:
        """Start of level l in the concatenated pyramid: sum of n_j for j < l."""
        out, acc = [], 0
        for n in self.level_sizes:
            out.append(acc)
            acc += n
        return tuple(out)

    @cached_property
    def pyramid_len(self) -> int:
        return sum(self.level_sizes)

    @property
    def tiles(self) -> int:
        return self.config.tiles

    @cached_property
    def chunk(self) -> int:
        """Coarsest-level candidates per tile: n_L / (k / 128) (>= 128)."""
        return self.level_sizes[-1] // self.tiles

    @cached_property
    def tile_len(self) -> int:
        """Entries each tile emits: chunk + (L-1) * p * 128."""
        c = self.config
        return self.chunk + (c.levels - 1) * c.pooling * TILE

    @cached_property
    def selected_len(self) -> int:
        """S = N_pad / p**(L-1) + (L-1) * p * k."""
        return self.tiles * self.tile_len


#: (id(config), q/k/v shapes, dtypes, devices) -> (config, plan) of calls without a gate that passed make_plan's
#: checks: a warm call's validation is then one lookup. The checks read only these (and the config), so a call
#: they passed once passes again; the config is kept in the entry so that its id is never reused.
_VALIDATED: dict = {}
_MAX_VALIDATED = 1024


def make_plan(config: LighthouseConfig, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gate=None) -> LighthousePlan:
    """Validate q, k, v (SDPA layout) against each other and the config, and size the call."""
    key = None
    if gate is None and type(q) is torch.Tensor and type(k) is torch.Tensor and type(v) is torch.Tensor:
        key = (id(config), q.shape, k.shape, v.shape, q.dtype, k.dtype, v.dtype, q.device, k.device, v.device)
        hit = _VALIDATED.get(key)
        if hit is not None and hit[0] is config:
            return hit[1]
    plan = _validated_plan(config, q, k, v, gate)
    if key is not None:
        if len(_VALIDATED) >= _MAX_VALIDATED:
            _VALIDATED.clear()
        _VALIDATED[key] = (config, plan)
    return plan


def _validated_plan(config: LighthouseConfig, q, k, v, gate) -> LighthousePlan:
    """make_plan's checks, every one of them, then the plan."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{name} must have 4 dimensions (B, H, N, D), got shape {tuple(t.shape)}")
        if t.dtype not in FLOAT_DTYPES:
            raise ValueError(f"{name} must be float16, bfloat16, float32 or float64, got {t.dtype}")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"q, k, v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if k.device != q.device or v.device != q.device:
        raise ValueError(f"q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")
    if k.shape != v.shape:
        raise ValueError(f"k and v must have the same shape (B, Hkv, N, D), got {tuple(k.shape)} and {tuple(v.shape)}")
    b, hq, n, d = q.shape
    if k.shape[0] != b or k.shape[2] != n or k.shape[3] != d:
        raise ValueError(
            f"k/v shape {tuple(k.shape)} does not match q shape {tuple(q.shape)} in batch, sequence length or head dim"
        )
    hkv = k.shape[1]
    if hkv < 1 or hq % hkv:
        raise ValueError(f"query heads Hq={hq} must be a positive multiple of kv heads Hkv={hkv} (GQA)")
    if b < 1 or d < 1:
        raise ValueError(f"batch and head dim must be >= 1, got shape {tuple(q.shape)}")
    if gate is not None:
        if not isinstance(gate, torch.Tensor) or tuple(gate.shape) != (b, hq, n):
            shape = tuple(gate.shape) if isinstance(gate, torch.Tensor) else type(gate).__name__
            raise ValueError(f"gate must be a tensor of shape (B, Hq, N) = {(b, hq, n)}, got {shape}")
        if gate.device != q.device:
            raise ValueError(f"gate must be on q's device {q.device}, got {gate.device}")
    if config.scorer == "gla" and gate is None:
        raise ValueError("scorer='gla' needs gate=, the per-token log-gate of shape (B, Hq, N)")
    if gate is not None and config.scorer != "gla":
        warnings.warn(
            f"gate= is used only by scorer='gla'; scorer='{config.scorer}' ignores it", UserWarning, stacklevel=3
        )
    check_backend_runs_on(config.sdpa_backend, q.device)
    return plan_for(config, b, hq, hkv, n, d)


@functools.lru_cache(maxsize=256)
def plan_for(
    config: LighthouseConfig, batch: int, q_heads: int, kv_heads: int, seq_len: int, head_dim: int
) -> LighthousePlan:
    """The plan of a call of these sizes, without tensors (a benchmark sizes its grid before allocating).
    Raises ValueError naming the parameter when N is too short for the config (or the dilation too long).
    Cached by its arguments (a plan is immutable): a training step's calls share one plan, whose derived sizes
    are then computed once, not per call. Only this pure sizing is cached; make_plan validates every call's
    tensors, and a refusal raises again at every call (lru_cache keeps no exceptions)."""
    if config.scorer == "dilated" and config.dilation > seq_len:
        raise ValueError(
            f"dilation must be <= the sequence length N={seq_len} (a larger stride leaves one token per strided "
            f"subsequence), got {config.dilation}"
        )
    if config.rope == "post" and head_dim % 2:
        raise ValueError(f"rope='post' needs an even head dim D (RoPE rotates pairs of dimensions), got D={head_dim}")
    return LighthousePlan(config, batch, q_heads, kv_heads, seq_len, config.padded_len(seq_len), head_dim)


def clear_plans() -> None:
    """Forget every cached plan (plan_for's and the validated calls'): each shape's next call gets a fresh plan,
    with an empty memo (tests of what a first call does)."""
    plan_for.cache_clear()
    _VALIDATED.clear()
