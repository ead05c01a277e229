"""Finite inputs: the one check both paths apply to q, k, v and the selection scores.

NaN or Inf in q, k or v silently corrupts the selection and the output, so the layer refuses it. Reading
every element of q, k and v for that on every call would cost a pass over each and, on the GPU, a stall.
Each path instead screens what it has anyway: the scores (NaN/Inf in q or k, or an overflow, reaches them)
and the float32 sum of v (NaN/Inf anywhere in v reaches it; the norm scorer never reads v). Only when a
screen trips does `raise_non_finite` look at the elements: it names the first bad one, or, when q, k and v
are all finite, says that the score overflowed. A false alarm (finite v whose sum overflows) raises nothing.

Under CUDA graph capture (lighthouse.cuda_graph) the host may not read the GPU: the screens stay on the
device, v's screen is its largest magnitude (v_screen_exact) instead of its sum, and `assert_finite_on_device`
stops the replay with a device-side assertion instead (see there).
"""

from __future__ import annotations

from typing import Optional

import torch


def v_screen(v: torch.Tensor) -> torch.Tensor:
    """0-dim float32 that is not finite whenever v holds NaN or Inf (and, harmlessly, when v's sum
    overflows). Any tensor every element of v flows into works as well (the gathered sub-sequence v)."""
    return v.sum(dtype=torch.float32)


def v_screen_exact(v: torch.Tensor) -> torch.Tensor:
    """0-dim float32 that is not finite exactly when v holds NaN or Inf: the largest magnitude never overflows
    (NaN propagates through amax). Used under CUDA graph capture, where a false alarm cannot be looked into on
    the host: it removes the false alarm of a finite v whose float32 sum overflows. Given the gathered v_sub,
    whose pooled rows are float32 sums of p**(l-1) tokens, a finite v with magnitudes near FLT_MAX / p can
    still pool to inf (an edge no real activation reaches)."""
    return v.detach().abs().amax().float()


def screen(sq: torch.Tensor, sk: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """0-dim bool on the inputs' device: True when the scores and v's screen are all finite."""
    return torch.isfinite(sq).all() & torch.isfinite(sk).all() & torch.isfinite(v_screen(v))


#: What a device-side assertion says (CUDA prints it only as "device-side assert triggered" plus this text
#: where it can); the named element needs an eager call.
DEVICE_CHECK_MESSAGE = (
    "lighthouse: q, k or v holds NaN or Inf, or a score overflowed float32, in a CUDA graph "
    "replay; run the same inputs through lighthouse_attention (eager) to name the element"
)


def capturing() -> bool:
    """True while this thread's current CUDA stream is being captured into a CUDA graph (torch.cuda.graph,
    torch.cuda.make_graphed_callables); False without CUDA. During capture nothing may read the GPU from the
    host (.item(), bool(), event.synchronize()): CUDA invalidates the capture."""
    try:
        return bool(torch.cuda.is_current_stream_capturing())
    except (RuntimeError, AssertionError, AttributeError):  # a CPU-only build or no GPU: nothing is captured
        return False


def assert_finite_on_device(flag: torch.Tensor, v_sum: torch.Tensor) -> None:
    """The finiteness check without a host read, for a call being captured into a CUDA graph: a device-side
    assertion that the scoring kernel's flag is 0 and v's screen is finite. Trade-off: NaN/Inf is still refused,
    but as an asynchronous CUDA error ("device-side assert triggered") that the next synchronising call raises;
    it does not name the element, and the CUDA context cannot be used afterwards (the process must restart),
    unlike the eager ValueError, which a caller can catch."""
    torch._assert_async((flag == 0) & torch.isfinite(v_sum), DEVICE_CHECK_MESSAGE)


def raise_non_finite(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    sq: Optional[torch.Tensor] = None,
    sk: Optional[torch.Tensor] = None,
    scorer: str = "",
) -> None:
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
            largest = ", ".join(
                f"max |{n}| = {float(x.detach().abs().max()):.3g}" for n, x in (("q", q), ("k", k), ("v", v))
            )
            raise ValueError(
                f"the {scorer} scorer's {name} score overflowed float32 at batch {b}, kv head {h}, position {t}: "
                f"q, k and v are finite but too large ({largest}); scale the inputs down"
            )
