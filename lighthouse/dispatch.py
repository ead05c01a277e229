"""Which path runs a call: the Triton kernels or the PyTorch reference (impl='auto', 'torch', 'triton').

Used by every entry point that runs the layer (lighthouse.attention, lighthouse.distributed, lighthouse.cuda_graph),
so the choice, and the process-wide override below, are made in one place.
"""

from __future__ import annotations

import os
import warnings
from typing import Optional

#: Environment switch that overrides every impl choice ("torch" or "triton"). Meant for the regression gate's
#: own test (a deliberately slow layer must fail `lighthouse-bench check`) and for bisecting a wrong result.
FORCE_IMPL_ENV = "LIGHTHOUSE_FORCE_IMPL"


def forced_impl() -> Optional[str]:
    """The impl LIGHTHOUSE_FORCE_IMPL forces (None when unset), with a warning: it silently changes results."""
    forced = os.environ.get(FORCE_IMPL_ENV, "").strip()
    if not forced:
        return None
    if forced not in ("torch", "triton"):
        raise ValueError(f"{FORCE_IMPL_ENV} must be 'torch' or 'triton' (or unset), got {forced!r}")
    warnings.warn(f"{FORCE_IMPL_ENV}={forced}: every Lighthouse call runs the {forced} path", stacklevel=3)
    return forced


_KERNELS = []


def _kernels():
    """The Triton package, imported at the first call that asks (once: a call's host time counts, PERF_NOTES
    step 23)."""
    if not _KERNELS:
        from . import kernels

        _KERNELS.append(kernels)
    return _KERNELS[0]


def resolve_impl(impl: str, q) -> str:
    """'torch' or 'triton' for a call on q's device: auto picks Triton where it runs; triton where it cannot
    is a ValueError saying why."""
    if os.environ.get(FORCE_IMPL_ENV):
        impl = forced_impl() or impl
    if impl == "auto":
        return "triton" if q.is_cuda and _kernels().available(q.device) else "torch"
    if impl == "triton":
        reason = _kernels().unavailable_reason(q.device)
        if reason:
            raise ValueError(f"impl='triton' is not available here: {reason}; use impl='torch'")
    return impl
