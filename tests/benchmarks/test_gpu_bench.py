"""pytest-benchmark: Lighthouse (Triton) and dense cuDNN SDPA, forward + backward, on the GPU.

    pytest -q tests/benchmarks -m gpu --benchmark-autosave            # save a run under .benchmarks/
    pytest -q tests/benchmarks -m gpu --benchmark-compare --benchmark-compare-fail=median:10%

Each benchmark times one forward + backward call ending in torch.cuda.synchronize() (wall clock, so launch
overhead counts, as in a training step). The GPU workflow compares the medians with the run committed for the
runner's GPU model (reports/baselines/pytest-benchmark/<gpu>.json, `--benchmark-compare=FILE`), and each
Lighthouse benchmark asserts that the layer beats dense cuDNN at its point in this session (the suite's claim).
extra_info carries the dense-equivalent TFLOP/s (causal FLOPs at N over
the median, lighthouse/harness/flops.py), S for Lighthouse and, once both of a point's benchmarks have run, the
speedup dense median / Lighthouse median measured in this session. Skipped (but collected) without CUDA.
"""

from __future__ import annotations

from typing import Dict, Tuple

import pytest
import torch

from lighthouse import LighthouseConfig, lighthouse_attention
from lighthouse.plan import plan_for
from lighthouse.harness import flops
from lighthouse.bench.inputs import random_inputs
from lighthouse.harness.points import Shape
from lighthouse.sdpa import dense_attention

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="GPU benchmarks need a CUDA device"),
]

B, H, D, LEVELS, POOLING, DTYPE, PASS = 1, 8, 128, 3, 4, "bf16", "fwdbwd"
#: (N, k): the short-context point and the training operating point.
POINTS = [(16384, 1024), (98304, 1536)]
IDS = [f"N{n // 1024}k-k{k}" for n, k in POINTS]

#: Medians and extra_info dicts of this session, per ("dense" | "lighthouse", N): once both of a point have run,
#: the speedup goes into both (pytest-benchmark serialises extra_info at the end of the session).
_MEDIANS: Dict[Tuple[str, int], float] = {}
_EXTRA: Dict[Tuple[str, int], dict] = {}


@pytest.fixture(scope="module")
def device():
    return torch.device("cuda", torch.cuda.current_device())


def _inputs(n, device):
    return random_inputs(Shape(n, B, H, H, D, DTYPE), device, seed=0)


def _step(fn, x):
    def run():
        for t in x.leaves:
            t.grad = None
        fn().backward(x.grad_out)
        torch.cuda.synchronize()

    return run


def _bench(benchmark, name, n, fn, x, extra):
    run = _step(fn, x)
    run()  # compile / autotune outside the timed rounds
    benchmark.pedantic(run, rounds=20, warmup_rounds=3, iterations=1)
    median_ms = benchmark.stats.stats.median * 1e3
    info = benchmark.extra_info
    info.update(
        extra,
        n=n,
        batch=B,
        heads=H,
        head_dim=D,
        dtype=DTYPE,
        median_ms=median_ms,
        dense_tflops=flops.dense_equivalent_tflops(n, B, H, D, PASS, median_ms),
        **{"pass": PASS},
    )
    info["eff_tflops"] = flops.effective_tflops(info["s_sel"], B, H, D, PASS, median_ms)
    _MEDIANS[(name, n)], _EXTRA[(name, n)] = median_ms, info
    lh, dense = _MEDIANS.get(("lighthouse", n)), _MEDIANS.get(("dense", n))
    if lh and dense:
        for key in ("lighthouse", "dense"):
            _EXTRA[(key, n)]["dense_speedup"] = dense / lh
    return median_ms


@pytest.mark.parametrize("n,topk", POINTS, ids=IDS)
def test_dense_cudnn_fwdbwd(benchmark, device, n, topk):
    x = _inputs(n, device)
    _bench(
        benchmark, "dense", n, lambda: dense_attention(x.q, x.k, x.v, "cudnn"), x, {"impl": "sdpa_cudnn", "s_sel": n}
    )


@pytest.mark.parametrize("n,topk", POINTS, ids=IDS)
def test_lighthouse_triton_fwdbwd(benchmark, device, n, topk):
    x = _inputs(n, device)
    s_sel = plan_for(LighthouseConfig(LEVELS, POOLING, topk), B, H, H, n, D).selected_len

    def fn():
        return lighthouse_attention(
            x.q, x.k, x.v, levels=LEVELS, pooling=POOLING, topk=topk, impl="triton", sdpa_backend="cudnn"
        )

    lh_ms = _bench(
        benchmark,
        "lighthouse",
        n,
        fn,
        x,
        {"impl": "lighthouse_triton", "topk": topk, "levels": LEVELS, "pooling": POOLING, "s_sel": s_sel},
    )
    dense_ms = _MEDIANS.get(("dense", n)) or _quick_median_ms(lambda: dense_attention(x.q, x.k, x.v, "cudnn"), x)
    assert lh_ms < dense_ms, (
        f"N={n} k={topk}: Lighthouse {lh_ms:.3f} ms is not faster than dense cuDNN {dense_ms:.3f} ms"
    )


def _quick_median_ms(fn, x, reps: int = 10) -> float:
    """Median wall-clock ms of fwd+bwd calls of `fn` (when the dense benchmark of this N did not run)."""
    import statistics
    import time

    run = _step(fn, x)
    run()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        run()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)
