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

# pi/2 as three float32 parts (Cody-Waite): an angle a = q * pi/2 + r is reduced to r in [-pi/4, pi/4] with fused
# multiply-adds, exact in its first step for |q| < 2**23 (the high part has 24 significant bits), so the angles
# of long sequences (about 1e6 rad at most) keep float32 accuracy.
_HALF_PI_HI = tl.constexpr(1.5707963705062866)
_HALF_PI_MID = tl.constexpr(-4.371138828673793e-08)
_HALF_PI_LO = tl.constexpr(-1.7763568394002505e-15)
_TWO_OVER_PI = tl.constexpr(0.6366197723675814)
# Minimax polynomials of sin and cos on [-pi/4, pi/4] (Cephes sinf/cosf, about 1 ulp).
_S1 = tl.constexpr(-1.6666654611e-1)
_S2 = tl.constexpr(8.3321608736e-3)
_S3 = tl.constexpr(-1.9515295891e-4)
_C1 = tl.constexpr(4.166664568298827e-2)
_C2 = tl.constexpr(-1.388731625493765e-3)
_C3 = tl.constexpr(2.443315711809948e-5)


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
    RoPE computes it. One reduction by pi/2 serves both, then two short polynomials and the quadrant's swap
    and signs: straight-line float32 arithmetic. Not tl.cos / tl.sin: those compile to libdevice's accurate
    __nv_cosf / __nv_sinf, each with its own reduction and a Payne-Hanek branch (float64, local memory), which
    made the pull of the pooling backward 10x longer in instructions and doubled its registers
    (reports/PERF_NOTES.md, step 12)."""
    j = tl.arange(0, BLOCK_H)
    w = tl.load(INV_FREQ + j, mask=j < half, other=0.0)
    a = pos.to(tl.float32)[:, None] * w[None, :]
    qf = tl.floor(a * _TWO_OVER_PI + 0.5)
    r = tl.fma(-qf, _HALF_PI_HI, a)
    r = tl.fma(-qf, _HALF_PI_MID, r)
    r = tl.fma(-qf, _HALF_PI_LO, r)
    r2 = r * r
    sin_r = tl.fma(r * r2, tl.fma(tl.fma(_S3, r2, _S2), r2, _S1), r)
    cos_r = tl.fma(r2 * r2, tl.fma(tl.fma(_C3, r2, _C2), r2, _C1), tl.fma(-0.5, r2, 1.0))
    q = qf.to(tl.int32)
    odd = (q & 1) != 0  # quadrants 1 and 3: sin and cos swap
    sin = tl.where(odd, cos_r, sin_r)
    cos = tl.where(odd, sin_r, cos_r)
    sin = tl.where((q & 2) != 0, -sin, sin)  # quadrants 2 and 3
    cos = tl.where(((q + 1) & 2) != 0, -cos, cos)  # quadrants 1 and 2
    return cos, sin
