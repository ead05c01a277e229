"""Parity of the two implementations: the Triton path against the PyTorch path (the executable spec) on the
same inputs, forward and backward. Used by `lighthouse-bench check` (its correctness gate, `parity_rows`)
and by `lighthouse-bench validate` (which adds poisoned buffers and bitwise repeats on top).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

from ..harness.tables import PARITY_FIGURES

#: Largest relative error ||triton - torch|| / ||torch|| accepted by the parity gate (bf16 inputs).
PARITY_TOL = 1e-2


def run_path(impl: str, q, k, v, grad_out, config, gate=None) -> List:
    """out, dq, dk, dv of one implementation ("torch" or "triton"): forward, then backward of `grad_out`
    (q, k, v must require grad; their .grad is reset first)."""
    from .. import lighthouse_attention

    for t in (q, k, v):
        t.grad = None
    out = lighthouse_attention(q, k, v, config=config.replace(impl=impl), gate=gate)
    out.backward(grad_out)
    return [out.detach()] + [t.grad.detach() for t in (q, k, v)]


def relative_errors(got: Sequence, want: Sequence) -> Dict[str, float]:
    """rel_<x> = ||got - want|| / ||want|| in float64 per figure (out, dq, dk, dv); the absolute norm where
    `want` is all zeros."""
    out = {}
    for name, a, w in zip(PARITY_FIGURES, got, want):
        a, w = a.double(), w.double()
        denom = float(w.norm())
        diff = float((a - w).norm())
        out[f"rel_{name}"] = diff / denom if denom > 0 else diff
    return out


def same_selection(q, k, v, config, gate=None) -> bool:
    """Whether `lighthouse.select` returns identical indices on both paths."""
    import torch

    from .. import select

    with torch.no_grad():
        ref = select(q, k, v, config=config.replace(impl="torch"), gate=gate)
        tri = select(q, k, v, config=config.replace(impl="triton"), gate=gate)
    return bool(ref.shape == tri.shape and torch.equal(ref, tri))


def parity_rows(points: Sequence, device, seed: int = 0, tol: float = PARITY_TOL) -> List[dict]:
    """Triton against PyTorch on the same random inputs, per Lighthouse point (points.Point): forward and
    backward with one fixed random output gradient; the relative errors of out, dq, dk, dv and whether the
    selections are identical (results.PARITY rows). `ok` = identical selection and every relative error
    <= tol. A point that fails to run gets the status harness.failures.classify gives (oom, invalid,
    unsupported, error) and ok False."""
    from ..dispatch import FORCE_IMPL_ENV, forced_impl
    from ..harness.device import free_memory, resolve_device
    from ..harness.failures import classify
    from .inputs import random_inputs

    dev = resolve_device(str(device))
    out = []
    for p in points:
        row = {
            "impl": "triton vs torch",
            "pass": "fwdbwd",
            **p.cells(),
            "status": "ok",
            "reason": "",
            "ok": False,
            "same_selection": None,
            **{f"rel_{f}": None for f in PARITY_FIGURES},
        }
        x: Optional[object] = None
        try:
            forced = forced_impl()
            if forced:
                row["reason"] = f"{FORCE_IMPL_ENV}={forced}: both calls run the {forced} path"
            x = random_inputs(p.shape, dev, seed)
            cfg = p.config()
            want = run_path("torch", x.q, x.k, x.v, x.grad_out, cfg)
            got = run_path("triton", x.q, x.k, x.v, x.grad_out, cfg)
            row["same_selection"] = same_selection(x.q, x.k, x.v, cfg)
            row.update(relative_errors(got, want))
            row["ok"] = bool(row["same_selection"]) and all(row[f"rel_{f}"] <= tol for f in PARITY_FIGURES)
        except Exception as err:  # noqa: BLE001 - a point that cannot run is reported, not fatal
            row["status"], row["reason"] = classify(err)
        finally:
            x = want = got = None  # noqa: F841
            free_memory(dev)
        out.append(row)
    return out
