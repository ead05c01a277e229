"""One kernel launch, described before it is made.

Each wrapper builds its Launch (kernel, grid, arguments, compile-time arguments) and then makes it; the layer's
`planned_launches` builds the same Launches on stand-in tensors, so that kernels/precompile.py compiles exactly
what the call will launch, before it launches anything.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Launch(NamedTuple):
    kernel: object  # a @triton.jit function
    grid: tuple
    args: tuple
    kwargs: dict  # the compile-time arguments and launch options (num_warps)

    def __call__(self):
        return self.kernel[self.grid](*self.args, **self.kwargs)


def stand_in(x: torch.Tensor) -> torch.Tensor:
    """A meta tensor (no memory) with x's shape, strides, dtype and address modulo 16 bytes: what Triton's
    launcher specialises a tensor argument on (its dtype and whether its address is 16-byte aligned)."""
    offset = (x.data_ptr() % 16) // x.element_size()
    extent = 1 + sum((n - 1) * s for n, s in zip(x.shape, x.stride()))
    return torch.empty(offset + extent, dtype=x.dtype, device="meta").as_strided(x.shape, x.stride(), offset)
