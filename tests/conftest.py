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
# Every kernel output starts as NaN / -7 (lighthouse.kernels.alloc), in every test that runs a kernel: an
# element a kernel forgets to write fails the comparison instead of passing as a plausible zero.
os.environ.setdefault("LIGHTHOUSE_POISON", "1")

import pytest


def _fast_interpreted_builtin_patching() -> bool:
    """The interpreter re-patches triton.language before every call of a @triton.jit helper, listing every
    member of tl, tl.core, tl.math and tl.tensor with inspect.getmembers each time (~1 ms a call, tens of
    thousands of calls per test: a third of the interpreted time). The builtins it looks for are a fixed set
    of names: list them once, here, before any kernel has run, and look only at those names afterwards.
    The same attributes get the same wrappers; where Triton's internals differ nothing is changed."""
    try:
        import inspect

        import triton.language as tl
        from triton.runtime import interpreter
    except Exception:  # noqa: BLE001
        return False
    original = getattr(interpreter, "_patch_builtin", None)
    patch_attr = getattr(interpreter, "_patch_attr", None)
    is_builtin = getattr(getattr(tl, "core", None), "is_builtin", None)
    if original is None or patch_attr is None or is_builtin is None or getattr(original, "_lighthouse_fast", False):
        return False
    pkgs = [tl, tl.core, tl.math, tl.tensor, tl.core.tensor, getattr(tl.core, "tensor_descriptor_base", None)]
    names = {id(pkg): [n for n, m in inspect.getmembers(pkg) if is_builtin(m)] for pkg in pkgs if pkg is not None}

    def _patch_builtin(pkg, builder, scope):
        known = names.get(id(pkg))
        if known is None:
            return original(pkg, builder, scope)
        for name in known:
            member = getattr(pkg, name, None)
            if is_builtin(member):
                patch_attr(pkg, name, member, builder, scope)

    _patch_builtin._lighthouse_fast = True
    interpreter._patch_builtin = _patch_builtin
    return True


if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
    FAST_PATCHING = _fast_interpreted_builtin_patching()


@pytest.fixture(autouse=True, scope="module")
def _frozen_heap():
    """The sweep, check and train loops call gc.collect() before every row (free_memory) to measure each row's
    own peak; in one pytest process that walks every object the earlier test modules left (imported modules,
    Triton interpreter caches, pytest's reports): the quick sweep test took 61 s in the whole suite, 24 s alone
    (14 s with this). Collect once per module and move what survives to the permanent generation (gc.freeze), so a
    collection walks only this module's objects. What a test frees is still collected; nothing a test checks
    changes."""
    import gc

    gc.collect()
    gc.freeze()
    yield


def pytest_sessionfinish(session, exitstatus):
    """Hand the frozen objects back before the interpreter exits, so that they are freed in order (left
    frozen, triton's nanobind bindings report them as leaked)."""
    import gc

    gc.unfreeze()
    gc.collect()


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
