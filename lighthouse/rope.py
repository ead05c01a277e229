"""RoPE of the post placement (docs/rope.md): the model's inverse frequencies, and which position each entry of
the sub-sequence is rotated at. Shared by every implementation, so both paths rotate by the same numbers.

The inverse frequencies follow transformers' formulas for the rope types LighthouseConfig accepts (default,
linear, llama3), computed as transformers computes them (float32 on the CPU), so a model's own RoPE and
Lighthouse's rotate by bitwise the same frequencies. The rotation pairs dimension j with j + D/2 ("rotate
half", transformers' and Llama's convention).
"""

from __future__ import annotations

import functools
import math
from typing import Optional

import torch

from .config import LighthouseConfig
from .plan import LighthousePlan


@functools.lru_cache(maxsize=32)
def _inverse_frequencies(head_dim: int, theta: float, scaling: Optional[tuple]) -> torch.Tensor:
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).to(torch.float32) / head_dim))
    params = dict(scaling or ())
    kind = params.get("rope_type", "default")
    if kind == "linear":
        inv_freq = inv_freq / params["factor"]
    elif kind == "llama3":
        factor, low, high = params["factor"], params["low_freq_factor"], params["high_freq_factor"]
        context = params["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > context / low, inv_freq / factor, inv_freq)
        smooth = (context / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        between = ~(wavelen < context / high) & ~(wavelen > context / low)
        inv_freq = torch.where(between, smoothed, scaled)
    return inv_freq.contiguous()


def inverse_frequencies(config: LighthouseConfig, head_dim: int) -> torch.Tensor:
    """(D/2,) float32 on the CPU: the angle of pair j at position m is m * inv_freq[j]."""
    return _inverse_frequencies(head_dim, config.rope_theta, config.rope_scaling)


def last_token_table(plan: LighthousePlan, device) -> torch.Tensor:
    """(P,) int64: the last token each pyramid entry covers, (i + 1) * f_l - 1 for entry i of level l, held at
    N - 1 for entries that end in the padding (their rows never reach a real token's output)."""
    parts = [(torch.arange(n, device=device) + 1) * f - 1 for n, f in zip(plan.level_sizes, plan.spans)]
    return torch.cat(parts).clamp(max=plan.seq_len - 1)


def positions_for(cfg: LighthouseConfig, positions, q: torch.Tensor) -> Optional[torch.Tensor]:
    """positions= of a Lighthouse call, checked and as (1 or B, N) int64; only rope='post' reads them (a warning
    otherwise, so a caller who expected them to matter hears it)."""
    import warnings

    if positions is not None and cfg.rope != "post":
        warnings.warn("positions= is used only by rope='post'; rope='pre' ignores it", UserWarning, stacklevel=4)
        return None
    return check_positions(positions, q.shape[0], q.shape[2], q.device)


def check_positions(positions, batch: int, seq_len: int, device) -> Optional[torch.Tensor]:
    """`positions=` of the public functions -> (1 or B, N) int64 on q's device, or None (0, 1, ..., N-1)."""
    if positions is None:
        return None
    if (
        not isinstance(positions, torch.Tensor)
        or positions.dtype.is_floating_point
        or positions.dtype == torch.bool
        or positions.is_complex()
    ):
        raise ValueError(
            f"positions must be an integer tensor of token positions (N,) or (B, N), "
            f"got {type(positions).__name__} {getattr(positions, 'dtype', '')}"
        )
    if positions.dim() == 1:
        positions = positions[None]
    if positions.dim() != 2 or positions.shape[1] != seq_len or positions.shape[0] not in (1, batch):
        raise ValueError(f"positions must have shape (N,) or (B, N) = {(batch, seq_len)}, got {tuple(positions.shape)}")
    if positions.device != torch.device(device):
        raise ValueError(f"positions must be on q's device {device}, got {positions.device}")
    return positions.long().contiguous()
