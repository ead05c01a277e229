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


def repeat_kv(x: torch.Tensor, group: int) -> torch.Tensor:
    """(B, Hkv, L, D) -> (B, Hkv * group, L, D): each kv head repeated for its query heads (GQA)."""
    return x if group == 1 else x.repeat_interleave(group, dim=1)


def causal_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: Optional[str] = None) -> torch.Tensor:
    """F.scaled_dot_product_attention(is_causal=True), forced to `backend` unless it is None or "auto"."""
    if backend in (None, "auto"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    if backend not in BACKENDS:
        raise ValueError(f"sdpa_backend must be None or one of auto, {', '.join(BACKENDS)}, got {backend!r}")
    with sdpa_kernel(BACKENDS[backend]):
        try:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        except RuntimeError as err:
            raise RuntimeError(
                f"sdpa_backend={backend!r} cannot run this call (device {q.device}, dtype {q.dtype}, "
                f"shape {tuple(q.shape)}): {err}"
            ) from err


def dense_attention(q, k, v, backend: Optional[str] = None) -> torch.Tensor:
    """Dense causal attention with GQA (kv heads repeated): the baseline and the recovery phase."""
    group = q.shape[1] // k.shape[1]
    if group > 1:
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    return causal_sdpa(q, k, v, backend)
