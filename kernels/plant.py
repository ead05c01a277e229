"""TEST-ONLY: a slowdown planted inside the layer's own kernels, so the regression gate can be shown to see one.

A planted delay outside the kernels (a GPU sleep queued before the layer) can land in time the GPU would have
spent waiting for the host anyway; a spin inside the selection or the gather kernel cannot: it is kernel time.
Every program of the chosen kernel spins a number of SM clock cycles (%clock64) before its work. The spin is
compiled in only when asked for (`SPIN: tl.constexpr`, False otherwise, so the branch does not exist in the
kernel the layer normally runs) and changes no value the kernel writes.

Switch: the environment variable PLANT_ENV, `<kernel>:<N>=<cycles>,<N>=<cycles>` (kernel `select` or `gather`;
cycles per program at sequence length N; other N and the other kernel: none), so that a gate run planting one
point's share leaves the others alone. scripts/gate_kernel_plant.py turns a requested share of the layer's time
into cycles and measures what it delivered. Not part of the public API; never set it outside such a test.
"""

from __future__ import annotations

import os
from typing import Dict, Tuple

import triton
import triton.language as tl


PLANT_ENV = "LIGHTHOUSE_TEST_KERNEL_SPIN"
KERNELS = ("select", "gather")

_parsed: Dict[str, Tuple[str, Dict[int, int]]] = {}


@triton.jit
def clock64():
    """The SM's cycle counter (PTX %clock64)."""
    return tl.inline_asm_elementwise("mov.u64 $0, %clock64;", "=l", [], dtype=tl.int64, is_pure=False, pack=1)


# as kernels.interpreted(), not imported from there: the package imports the kernels (an import cycle)
if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):

    @triton.jit
    def spin(cycles):
        """Under TRITON_INTERPRET (CPU tests) there is no cycle counter: the spin does nothing."""
        pass
else:

    @triton.jit
    def spin(cycles):
        """Busy-wait `cycles` SM clock cycles."""
        start = clock64()
        now = start
        while now - start < cycles:
            now = clock64()


def parse(text: str) -> Tuple[str, Dict[int, int]]:
    """'select:16384=2000,98304=9000' -> ('select', {16384: 2000, 98304: 9000}); ValueError naming PLANT_ENV."""
    if text in _parsed:
        return _parsed[text]
    kernel, _, table = text.partition(":")
    try:
        cycles = {int(n): int(c) for n, c in (item.split("=") for item in table.split(",") if item.strip())}
    except ValueError:
        cycles = None
    if kernel.strip() not in KERNELS or not cycles or any(c < 0 for c in cycles.values()):
        raise ValueError(
            f"{PLANT_ENV} must be <kernel>:<N>=<cycles>,... with kernel one of {', '.join(KERNELS)} and "
            f"cycles >= 0 (select:16384=2000,98304=9000), got {text!r}"
        )
    _parsed[text] = (kernel.strip(), cycles)
    return _parsed[text]


def spin_cycles(kernel: str, n: int) -> int:
    """Cycles each program of `kernel` spins at sequence length n: 0 unless the test-only switch asks for it."""
    text = os.environ.get(PLANT_ENV)
    if not text:
        return 0
    planted, cycles = parse(text)
    return cycles.get(int(n), 0) if planted == kernel else 0


def switch_value(kernel: str, cycles_by_n: Dict[int, int]) -> str:
    """The PLANT_ENV value that plants `cycles_by_n` in `kernel` ('' when every entry is 0)."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    kept = {int(n): int(c) for n, c in sorted(cycles_by_n.items()) if int(c) > 0}
    return f"{kernel}:" + ",".join(f"{n}={c}" for n, c in kept.items()) if kept else ""
