"""Launch-size arithmetic for the kernels' Python wrappers, in plain ints.

triton.cdiv and triton.next_power_of_2 are constexpr functions in recent Triton: called from Python each
call unwraps its arguments (~5-10 us of host time apiece, a dozen calls per forward + backward). These give
the same ints for the positive sizes the wrappers pass (tests/ops/test_triton_path.py checks them against Triton's).
"""

from __future__ import annotations


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) for ints (triton.cdiv)."""
    return -(-a // b)


def next_pow2(n: int) -> int:
    """The smallest power of two >= n, for n >= 1 (triton.next_power_of_2)."""
    return 1 << (n - 1).bit_length()
