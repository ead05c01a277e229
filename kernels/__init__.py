"""Triton kernels of the fast path (installed as `lighthouse.kernels`).

One module per stage, named as the PyTorch reference's (`lighthouse.reference`), each kernel with its Python
wrapper: `scores` (norm scorer + score pyramid), `select` (coarse-to-fine selection in causal order), `gather`
(sub-sequence rows, pooled on the fly), `scatter` (pull back to token positions, and the pooling backward,
atomics-free); `layer` runs them as named stage functions inside one autograd.Function.
They run on CUDA, and on the CPU under TRITON_INTERPRET=1 (how the tests check them).
"""

from __future__ import annotations

import os
from typing import Optional

try:
    import triton  # noqa: F401

    _IMPORT_ERROR: Optional[str] = None
except Exception as err:  # pragma: no cover - triton missing on this platform
    _IMPORT_ERROR = f"triton cannot be imported ({err})"


def interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def unavailable_reason(device=None) -> Optional[str]:
    """Why impl='triton' cannot run on `device` (None when it can)."""
    if _IMPORT_ERROR:
        return _IMPORT_ERROR
    if device is not None and getattr(device, "type", device) != "cuda" and not interpreted():
        return "the Triton kernels need CUDA tensors (or TRITON_INTERPRET=1 to interpret them on the CPU)"
    return None


def available(device=None) -> bool:
    return unavailable_reason(device) is None


def lighthouse_attention_triton(*args, **kwargs):
    from .layer import lighthouse_attention_triton as impl

    return impl(*args, **kwargs)


def retain_inner_graph():
    """Context manager: let backward(retain_graph=True) run twice through the Triton path (see layer.py)."""
    from .layer import retain_inner_graph as impl

    return impl()


def select_triton(*args, **kwargs):
    from .layer import select_triton as impl

    return impl(*args, **kwargs)


def raise_pending() -> None:
    """Read every finiteness check that training forwards deferred (waiting for the GPU), and raise ValueError for
    the first bad one (kernels/finite_check.py). Call it where a run must know its inputs were finite: before
    saving a checkpoint, at the end of training."""
    if _IMPORT_ERROR:
        return
    from .finite_check import raise_pending as impl

    impl()
