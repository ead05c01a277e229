"""Output allocation for the kernels, with an optional poison fill.

With LIGHTHOUSE_POISON=1 (or `alloc.POISON = True`) every buffer a kernel is meant to overwrite starts as
NaN (floats) or -7 (integers), so an element a kernel forgets to write shows up instead of hiding as a
plausible zero. The tests run the kernels this way.
"""

from __future__ import annotations

import os

import torch

POISON = os.environ.get("LIGHTHOUSE_POISON", "0") not in ("", "0")


def empty(*shape, dtype, device) -> torch.Tensor:
    if not POISON:
        return torch.empty(*shape, dtype=dtype, device=device)
    fill = float("nan") if dtype.is_floating_point else -7
    return torch.full(shape, fill, dtype=dtype, device=device)
