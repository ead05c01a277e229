"""Launch-size arithmetic for the kernels' Python wrappers, in plain ints.

triton.cdiv and triton.next_power_of_2 are constexpr functions in recent Triton: called from Python each
call unwraps its arguments (~5-10 us of host time apiece, a dozen calls per forward + backward). These give
the same ints for the positive sizes the wrappers pass (tests/ops/test_triton_path.py checks them against Triton's).
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

MAX_TENSORS = 3  # tensors one gather or pull launch serves


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) for ints (triton.cdiv)."""
    return -(-a // b)


def next_pow2(n: int) -> int:
    """The smallest power of two >= n, for n >= 1 (triton.next_power_of_2)."""
    return 1 << (n - 1).bit_length()


def parts(tensors: Sequence, rotate: int, most: int = MAX_TENSORS) -> List[Tuple[list, int]]:
    """(part, part_rotate) over consecutive parts of at most `most` tensors, the first `rotate` tensors of the
    whole list rotated (RoPE post mode)."""
    return [(list(tensors[i : i + most]), min(max(0, rotate - i), most)) for i in range(0, len(tensors), most)]


def launches_by_part(tensors: Sequence, rotate: int, make) -> Tuple[list, list]:
    """(every output, the launches) of a wrapper over parts(tensors, rotate): make(part, part_rotate) returns one
    part's (outputs, launch)."""
    outs, launches = [], []
    for part, rot in parts(tensors, rotate):
        o, launch = make(part, rot)
        outs += o
        launches.append(launch)
    return outs, launches


def check_one_shape(name: str, tensors: Sequence) -> None:
    """One launch serves tensors of one shape: ValueError naming the wrapper and the shapes otherwise."""
    shape = tensors[0].shape
    if len(tensors) > 1 and any(t.shape != shape for t in tensors[1:]):
        raise ValueError(f"{name} needs tensors of one shape, got {[tuple(t.shape) for t in tensors]}")


def shared_meta(levels: int, pooling: int, head_dim: int, rotate: int, has_pos: bool, num_warps: int) -> dict:
    """The compile-time arguments the gather and the pull kernels share: the pyramid's shape, the RoPE switches
    (launch_args) and the row blocks (whole rows, or halves in post mode)."""
    return dict(
        LEVELS=levels,
        POOL=pooling,
        ROT=rotate,
        HAS_POS=has_pos,
        BLOCK_D=next_pow2(head_dim),
        BLOCK_H=next_pow2(max(1, head_dim // 2)),
        num_warps=num_warps,
    )
