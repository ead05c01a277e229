"""Shared fixtures: golden vectors and small random problems."""

from __future__ import annotations

import os
from pathlib import Path

import torch

# Without a GPU the Triton kernels run in Triton's interpreter; this must be set before they are defined.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
    try:  # triton reads TRITON_INTERPRET once, when imported: import it now, not first inside a test that sets
        import triton  # noqa: F401  # TRITON_INTERPRET=0 to check the CUDA-only refusal (later kernels would fail)
    except ImportError:  # pragma: no cover - triton missing on this platform
        pass

import pytest

GOLDEN_DIR = Path(__file__).parent / "data" / "golden"
GOLDEN_FILES = sorted(GOLDEN_DIR.glob("*.pt"))


def rand_qkv(b, hq, hkv, n, d, *, dtype=torch.float32, seed=0, device="cpu", requires_grad=False):
    """Random normal q, k, v in SDPA layout; fresh values per seed (never zeros)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, hq, n, d, generator=g, dtype=torch.float64)
    k = torch.randn(b, hkv, n, d, generator=g, dtype=torch.float64)
    v = torch.randn(b, hkv, n, d, generator=g, dtype=torch.float64)
    return tuple(x.to(device=device, dtype=dtype).requires_grad_(requires_grad) for x in (q, k, v))


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float64."""
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm())


@pytest.fixture(params=GOLDEN_FILES, ids=lambda p: p.stem)
def golden(request):
    return torch.load(request.param)
