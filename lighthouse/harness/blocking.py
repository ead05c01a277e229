"""The hold kernel of the host-ahead clock (clocks.py): one thread spins until the host releases it.

It reads word 0 of a pinned host buffer (mapped into the GPU's address space, as every pinned allocation is
under unified addressing) with volatile loads until the host has written 1 there, or until `timeout_ns` of the
GPU's global timer have passed; in that case it writes 1 into word 1, so the host can tell a timed-out
repetition from a released one. One program, one warp: it occupies a single SM slot while it waits.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def globaltimer():
    """The GPU's nanosecond timer (PTX %globaltimer), independent of the SM clock."""
    return tl.inline_asm_elementwise("mov.u64 $0, %globaltimer;", "=l", [], dtype=tl.int64, is_pure=False, pack=1)


@triton.jit
def _hold_kernel(FLAG, timeout_ns):
    start = globaltimer()
    now = start
    released = tl.load(FLAG, volatile=True)
    while (released == 0) & (now - start < timeout_ns):
        released = tl.load(FLAG, volatile=True)
        now = globaltimer()
    if released == 0:
        tl.store(FLAG + 1, 1)


def launch_hold(flag: torch.Tensor, timeout_ns: int) -> None:
    """Queue the hold on the current stream. `flag`: pinned int32 (2,), word 0 zero, word 1 zero."""
    if flag.device.type != "cpu" or not flag.is_pinned() or flag.dtype != torch.int32 or flag.numel() < 2:
        raise ValueError("flag must be a pinned int32 CPU tensor of 2 words")
    _hold_kernel[(1,)](flag, timeout_ns, num_warps=1)
