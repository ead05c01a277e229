"""Shared fixtures: golden vectors and small random problems."""

from __future__ import annotations

import os
from pathlib import Path

import torch

# Without a GPU the Triton kernels run in Triton's interpreter; this must be set before they are defined.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

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


TIE_KINDS = ("constant", "blocks", "quantized")


def tied_qkv(kind: str, b, hq, hkv, n, d, *, seed=0, device="cpu"):
    """Inputs whose selection scores tie (selection must break ties towards the lower index):
    `constant` = every token of q (and of k) the same vector; `blocks` = one block of 16 random tokens
    repeated along the sequence (ties at every level of the pyramid); `quantized` = entries in {-1, 0, 1}
    (norms take a handful of exact values). v stays random so that outputs still differ per token."""
    g = torch.Generator().manual_seed(seed)
    q, k, v = rand_qkv(b, hq, hkv, n, d, seed=seed)
    if kind == "constant":
        q, k = q[:, :, :1].expand_as(q).contiguous(), k[:, :, :1].expand_as(k).contiguous()
    elif kind == "blocks":
        reps = -(-n // 16)
        q, k = (x[:, :, :16].repeat(1, 1, reps, 1)[:, :, :n].contiguous() for x in (q, k))
    elif kind == "quantized":
        q, k = (torch.randint(-1, 2, x.shape, generator=g).to(x.dtype) for x in (q, k))
    else:
        raise ValueError(kind)
    return tuple(x.to(device) for x in (q, k, v))
