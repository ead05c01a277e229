"""TFLOP/s and speedup arithmetic on hand-computed numbers, and on a whole CSV row."""

import pytest

from lighthouse.harness import flops
from lighthouse.harness.points import Point, Shape, Task
from lighthouse.bench.result import Result
from lighthouse.bench.sweep import Medians, make_row
from lighthouse.harness.timing import Timing, percentile


def test_causal_flops():
    # 4 * B * H * N^2 * D / 2 with B=1, H=8, N=65536, D=128
    fwd = 4 * 1 * 8 * 65536**2 * 128 / 2
    assert flops.causal_attention_flops(65536, 1, 8, 128, "fwd") == fwd == 8796093022208
    assert flops.causal_attention_flops(65536, 1, 8, 128, "bwd") == 2.5 * fwd
    assert flops.causal_attention_flops(65536, 1, 8, 128, "fwdbwd") == 3.5 * fwd


def test_tflops_and_speedup():
    # 8.796 TFLOP in 20 ms = 439.8 TFLOP/s
    assert flops.dense_equivalent_tflops(65536, 1, 8, 128, "fwd", 20.0) == pytest.approx(439.8046511104)
    # effective: the same at S = 36864 over the same time
    assert flops.effective_tflops(36864, 1, 8, 128, "fwd", 20.0) == pytest.approx(
        4 * 8 * 36864**2 * 128 / 2 / 0.02 / 1e12
    )
    assert flops.speedup(30.0, 7.5) == 4.0
    assert flops.floor_ratio(7.5, 5.0) == 1.5
    assert flops.speedup(None, 7.5) is None and flops.tflops(1e12, 0.0) is None


def test_percentiles_interpolate():
    xs = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(xs, 50) == 3.0
    assert percentile(xs, 20) == pytest.approx(1.8)
    assert percentile(xs, 80) == pytest.approx(4.2)


def test_row_derived_numbers():
    shape = Shape(65536, 1, 8, 8, 128, "bf16")
    point = Point(shape, 3, 4, 4096, "norm")
    medians = Medians()
    base = dict(
        kind="dense",
        status="ok",
        device="cuda",
        dtype="bf16",
        n="65536",
        batch="1",
        heads="8",
        kv_heads="8",
        head_dim="128",
        levels="",
        pooling="",
        topk="",
        scorer="",
    )
    medians.add({**base, "impl": "sdpa_cudnn", "pass": "fwdbwd", "median_ms": "80.0"})
    medians.add({**base, "impl": "sdpa_flash", "pass": "fwdbwd", "median_ms": "120.0"})
    medians.add({**base, "impl": "sdpa_flash", "pass": "fwd", "median_ms": "1000.0"})  # other pass: not used
    medians.add(
        {
            **base,
            "kind": "floor",
            "impl": "floor",
            "pass": "fwdbwd",
            "median_ms": "16.0",
            "levels": "3",
            "pooling": "4",
            "topk": "4096",
            "scorer": "norm",
        }
    )
    task = Task("lighthouse", "lighthouse_torch", "fwdbwd", shape, point, s_sel=36864)
    timing = Timing([19.0, 20.0, 24.0], first_call_ms=900.0, peak_bytes=3 * 2**30)
    row = make_row(task, "cuda", 0, Result("ok", timing=timing, sdpa_backend="cudnn"), medians)
    assert row["median_ms"] == 20.0 and row["reps"] == 3 and row["peak_mem_gib"] == 3.0
    assert row["speedup_vs_sdpa_cudnn"] == 4.0
    assert row["speedup_vs_sdpa_flash"] == 6.0
    assert row["speedup_vs_sdpa_math"] is None
    assert row["floor_ratio"] == 1.25
    assert row["dense_tflops"] == pytest.approx(3.5 * 8796093022208 / 0.020 / 1e12)
    assert row["eff_tflops"] == pytest.approx(3.5 * 4 * 8 * 36864**2 * 128 / 2 / 0.020 / 1e12)
