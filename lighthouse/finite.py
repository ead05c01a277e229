"""Finite inputs: the one check both paths apply to q, k, v and the selection scores.

NaN or Inf in q, k or v silently corrupts the selection and the output, so the layer refuses it. Reading
every element of q, k and v for that on every call would cost a pass over each and, on the GPU, a stall.
Each path instead screens what it has anyway: the scores (NaN/Inf in q or k, or an overflow, reaches them)
and the float32 sum of v (NaN/Inf anywhere in v reaches it; the norm scorer never reads v). Only when a
screen trips does `raise_non_finite` look at the elements: it names the first bad one, or, when q, k and v
are all finite, says that the score overflowed. A false alarm (finite v whose sum overflows) raises nothing.
"""

from __future__ import annotations

from typing import Optional

import torch


def v_screen(v: torch.Tensor) -> torch.Tensor:
    """0-dim float32 that is not finite whenever v holds NaN or Inf (and, harmlessly, when v's sum
    overflows). Any tensor every element of v flows into works as well (the gathered sub-sequence v)."""
    return v.sum(dtype=torch.float32)


def screen(sq: torch.Tensor, sk: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """0-dim bool on the inputs' device: True when the scores and v's screen are all finite."""
    return torch.isfinite(sq).all() & torch.isfinite(sk).all() & torch.isfinite(v_screen(v))


def raise_non_finite(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, sq: Optional[torch.Tensor] = None,
                     sk: Optional[torch.Tensor] = None, scorer: str = "") -> None:
    """Raise ValueError naming the first NaN/Inf element of q, k or v, else the first overflowed score
    ((B, Hkv, N) token scores sq, sk); return when everything is finite (the screen's false alarm)."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        bad = ~torch.isfinite(x)
        if bool(bad.any()):
            b, h, t, _ = (int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"non-finite input at batch {b}, head {h}, position {t}: {name} contains NaN or Inf; "
                "inputs must be finite"
            )
    for name, s in (("query", sq), ("key", sk)):
        if s is None:
            continue
        bad = ~torch.isfinite(s)
        if bool(bad.any()):
            b, h, t = (int(i) for i in bad.nonzero()[0])
            largest = ", ".join(f"max |{n}| = {float(x.detach().abs().max()):.3g}" for n, x in (("q", q), ("k", k), ("v", v)))
            raise ValueError(
                f"the {scorer} scorer's {name} score overflowed float32 at batch {b}, kv head {h}, position {t}: "
                f"q, k and v are finite but too large ({largest}); scale the inputs down"
            )
