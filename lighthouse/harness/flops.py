"""The arithmetic of the results: FLOP counts, TFLOP/s and speedups, in one place so every row, chart and
later regression check counts the same way.

Convention (as in FlashAttention's benchmarks): dense attention forward is two matmuls, QK^T and PV, each
2*N*N*D multiply-adds per head, so 4*B*Hq*N^2*D FLOPs; causal attention does half of that work. The backward
pass is counted as 2.5x the forward (five matmuls instead of two), forward+backward as 3.5x.
"""

from __future__ import annotations

import math
from typing import Optional

#: FLOPs of a pass relative to the forward.
PASS_FACTOR = {"fwd": 1.0, "bwd": 2.5, "fwdbwd": 3.5}


def causal_attention_flops(n: int, batch: int, heads: int, head_dim: int, pass_: str = "fwd") -> float:
    """FLOPs of dense causal attention over n tokens: 4*B*Hq*n^2*D / 2 for the forward, times PASS_FACTOR."""
    return 4.0 * batch * heads * float(n) ** 2 * head_dim / 2.0 * PASS_FACTOR[pass_]


def tflops(flops: float, ms: Optional[float]) -> Optional[float]:
    """FLOPs done in `ms` milliseconds -> TFLOP/s; None without a (positive) time."""
    if ms is None or not ms > 0 or math.isnan(ms):
        return None
    return flops / (ms * 1e-3) / 1e12


def dense_equivalent_tflops(
    n: int, batch: int, heads: int, head_dim: int, pass_: str, ms: Optional[float]
) -> Optional[float]:
    """The FLOPs dense causal attention needs at N, over this row's time: comparable across implementations
    (a Lighthouse row above the dense rows' number is faster than dense)."""
    return tflops(causal_attention_flops(n, batch, heads, head_dim, pass_), ms)


def effective_tflops(s: int, batch: int, heads: int, head_dim: int, pass_: str, ms: Optional[float]) -> Optional[float]:
    """The attention a Lighthouse row really computes (dense causal over its S selected entries) over its
    time: how well it uses the GPU. For dense rows S = N and it equals the dense-equivalent number."""
    return tflops(causal_attention_flops(s, batch, heads, head_dim, pass_), ms)


def speedup(baseline_ms: Optional[float], ms: Optional[float]) -> Optional[float]:
    """baseline time / our time: > 1 means faster than the baseline. None when either is missing."""
    if baseline_ms is None or ms is None or not ms > 0 or not baseline_ms > 0:
        return None
    return baseline_ms / ms


def floor_ratio(ms: Optional[float], floor_ms: Optional[float]) -> Optional[float]:
    """Lighthouse time / the time of dense SDPA on its S entries alone (>= 1 in practice: the overhead
    of scoring, selecting, gathering and scattering on top of the one call it cannot avoid)."""
    return speedup(ms, floor_ms)
