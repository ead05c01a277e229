"""RoPE of the post placement inside the gather and pull kernels (spec section 5a): the angle of an entry
from the last token it covers, computed in registers, never stored.

The gather rotates a pooled q or k row right after pooling it (forward), and the pull of the pooling backward
turns each sub-sequence gradient row back by the same angle before it spreads it over the entry's tokens,
so neither pass touches the sub-sequence once more. In post mode both kernels hold every row as its two
halves (dimension j pairs with j + D/2), each loaded directly from memory: no register shuffle.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import torch
import triton
import triton.language as tl

from lighthouse.plan import LighthousePlan
from lighthouse.rope import inverse_frequencies

# 2*pi as three float32 parts (Cody-Waite): the angle is reduced to [-pi, pi] with fused multiply-adds before
# cos/sin, so the hardware's fast sine stays accurate (about 1e-6) at the large angles of long sequences.
_TWO_PI_HI = tl.constexpr(6.2831854820251465)
_TWO_PI_MID = tl.constexpr(-1.7484555314695172e-07)
_TWO_PI_LO = tl.constexpr(-7.105427357601002e-15)
_INV_TWO_PI = tl.constexpr(0.15915494309189535)


class RopeArgs(NamedTuple):
    """What the kernels need to rotate: inverse frequencies (D/2,) float32 on the device, the token positions
    (1 or B, N) int64 or None (then position = offset + token index)."""

    inv_freq: torch.Tensor
    positions: Optional[torch.Tensor]
    offset: int


@functools.lru_cache(maxsize=32)
def _device_inv_freq(theta, scaling, head_dim, device):
    from lighthouse.config import LighthouseConfig

    cfg = LighthouseConfig(rope_theta=theta, rope_scaling=scaling)
    return inverse_frequencies(cfg, head_dim).to(device)


def rope_args(plan: LighthousePlan, device, positions: Optional[torch.Tensor] = None, offset: int = 0):
    """RopeArgs of a call in post mode, None in pre mode (the kernels then rotate nothing)."""
    if plan.config.rope != "post":
        return None
    c = plan.config
    return RopeArgs(
        _device_inv_freq(c.rope_theta, c.rope_scaling, plan.head_dim, torch.device(device)), positions, int(offset)
    )


def launch_args(rope: Optional[RopeArgs], like: torch.Tensor):
    """(INV_FREQ, POS, pos batch stride, pos offset, HAS_POS) of a kernel launch; dummies without RoPE."""
    if rope is None:
        return like, like, 0, 0, False
    pos = rope.positions
    if pos is None:
        return rope.inv_freq, rope.inv_freq, 0, rope.offset, False
    return rope.inv_freq, pos, pos.stride(0) if pos.shape[0] > 1 else 0, 0, True


class KernelRope(NamedTuple):
    """RopeArgs inside a kernel program: the inverse frequencies, the positions row of the program's batch
    (read only with HAS_POS) and the position offset."""

    inv_freq: tl.tensor
    positions: tl.tensor
    offset: tl.tensor


@triton.jit
def kernel_rope(INV_FREQ, POS, pos_bstride, pos_offset, b):
    """KernelRope of batch b from the launch_args."""
    return KernelRope(INV_FREQ, POS + b.to(tl.int64) * pos_bstride, pos_offset)


@triton.jit
def token_position(last, valid, rope, seq_len, HAS_POS: tl.constexpr):
    """Rotation position of entries whose last covered token is `last` (held at N - 1 in the padding)."""
    last = tl.minimum(tl.maximum(last, 0), seq_len - 1)
    if HAS_POS:
        return tl.load(rope.positions + last, mask=valid, other=0)
    return last + rope.offset


@triton.jit
def entry_angles(last, valid, rope, seq_len, half, HAS_POS: tl.constexpr, BLOCK_H: tl.constexpr):
    """cos and sin (rows, BLOCK_H) of the entries whose last covered token is `last`."""
    return cos_sin(token_position(last, valid, rope, seq_len, HAS_POS), rope.inv_freq, half, BLOCK_H)


@triton.jit
def cos_sin(pos, INV_FREQ, half, BLOCK_H: tl.constexpr):
    """cos and sin (rows, BLOCK_H) of the angles pos * inv_freq[j], the angle rounded to float32 as a model's
    RoPE computes it, then reduced exactly enough to [-pi, pi]."""
    j = tl.arange(0, BLOCK_H)
    w = tl.load(INV_FREQ + j, mask=j < half, other=0.0)
    a = pos.to(tl.float32)[:, None] * w[None, :]
    n = tl.floor(a * _INV_TWO_PI + 0.5)
    r = tl.fma(-n, _TWO_PI_HI, a)
    r = tl.fma(-n, _TWO_PI_MID, r)
    r = tl.fma(-n, _TWO_PI_LO, r)
    return tl.cos(r), tl.sin(r)
