"""Dense causal SDPA with an explicit backend: the one quadratic step, on a stock kernel."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

BACKENDS = {
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
}


#: Backends PyTorch implements for CUDA only (flash and math also run on the CPU).
CUDA_ONLY = ("cudnn", "efficient")


class BackendUnavailable(ValueError):
    """The forced SDPA backend cannot run this call here (device, dtype or shape): not a bug in the call, and
    a benchmark records it as `unsupported` and falls back to PyTorch's choice."""


def check_backend_runs_on(backend: Optional[str], device: torch.device) -> None:
    """Refuse, before anything is computed, a forced backend that has no kernel for this device type."""
    if backend in CUDA_ONLY and device.type != "cuda":
        raise BackendUnavailable(
            f"sdpa_backend={backend!r} cannot run on {device.type}: it needs a CUDA device; "
            "use sdpa_backend=None (PyTorch chooses), 'flash' or 'math'"
        )


def _is_device_failure(err: RuntimeError) -> bool:
    """Out of memory or a CUDA error: a real failure, never "this backend cannot run the call"."""
    accelerator_error = getattr(torch, "AcceleratorError", ())
    out_of_memory = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    return (
        isinstance(err, out_of_memory)
        or (accelerator_error and isinstance(err, accelerator_error))
        or "out of memory" in str(err).lower()
    )


def repeat_kv(x: torch.Tensor, group: int) -> torch.Tensor:
    """(B, Hkv, L, D) -> (B, Hkv * group, L, D): each kv head repeated for its query heads (GQA)."""
    return x if group == 1 else x.repeat_interleave(group, dim=1)


def causal_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: Optional[str] = None) -> torch.Tensor:
    """F.scaled_dot_product_attention(is_causal=True), forced to `backend` unless it is None or "auto"."""
    if backend in (None, "auto"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    if backend not in BACKENDS:
        raise ValueError(f"sdpa_backend must be None or one of auto, {', '.join(BACKENDS)}, got {backend!r}")
    check_backend_runs_on(backend, q.device)
    with sdpa_kernel(BACKENDS[backend]):
        try:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        except RuntimeError as err:
            if _is_device_failure(err):
                raise
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise BackendUnavailable(
                f"sdpa_backend={backend!r} cannot run this call (device {q.device}, dtype {q.dtype}, "
                f"shape {tuple(q.shape)}; PyTorch: {first_line}); use sdpa_backend=None to let PyTorch choose"
            ) from err


def dense_attention(q, k, v, backend: Optional[str] = None) -> torch.Tensor:
    """Dense causal attention with GQA (kv heads repeated): the baseline and the recovery phase."""
    group = q.shape[1] // k.shape[1]
    if group > 1:
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    return causal_sdpa(q, k, v, backend)


def vjp(outputs, inputs, grads, retain: bool = False):
    """torch.autograd.grad(outputs, inputs, grads, retain_graph=retain) without its `_make_grads` step.

    Why: given gradient tensors, `_make_grads` imports torch.fx.experimental.symbolic_shapes (and with it sympy)
    at a process's first call, to compare shapes symbolically: 2.0-4.8 s on the H200 image, held under the GIL
    (reports/h200/coldstart/sdpa-first-profiled/first_bwd.txt), during which the precompile's Triton loads wait too.
    A model's scalar `loss.backward()` never takes that branch, so dense training does not pay it; every
    backward of this layer (its sub-sequence SDPA, the recomputed forward of lighthouse.hf) would, at the first
    training step. What `_make_grads` checks for these callers is kept: each gradient has its output's shape (the
    engine casts a gradient of another real dtype to the output's, as it does under torch.autograd.grad: a
    recomputed backward under a different autocast state hands one). The engine entry is the one
    torch.autograd.grad itself calls (torch.autograd.graph._engine_run_backward, private); where a torch lacks it,
    torch.autograd.grad runs."""
    outputs, inputs, grads = tuple(outputs), tuple(inputs), tuple(grads)
    run = getattr(torch.autograd.graph, "_engine_run_backward", None)
    if run is None:
        return torch.autograd.grad(outputs, inputs, grads, retain_graph=retain)
    for out, grad in zip(outputs, grads):
        if grad.shape != out.shape:
            raise ValueError(
                f"vjp: a gradient must have its output's shape: got {tuple(grad.shape)} for {tuple(out.shape)}"
            )
    return run(outputs, grads, retain, False, inputs, False, accumulate_grad=False)
