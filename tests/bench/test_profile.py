"""lighthouse-bench profile on the CPU: stages, shares, the cost model, the peaks cache and the command."""

import csv
import json

import pytest
import torch
from typer.testing import CliRunner

import lighthouse
from lighthouse import LighthouseConfig
from lighthouse.bench import peaks
from lighthouse.harness.points import Point, Shape
from lighthouse.bench.profile import (
    MEASURED,
    TOTAL,
    StageTiming,
    profile_point,
    stage_costs,
    tokens_read_per_tensor,
)
from lighthouse.cli import app
from lighthouse.plan import make_plan


@pytest.fixture(autouse=True)
def peaks_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(peaks.CACHE_ENV, str(tmp_path / "cache"))


FAKE_PEAKS = {"copy_gb_s": 100.0, "matmul_tflops": 1.0}
QUICK = StageTiming(warmup=1, rep=3, max_seconds=0.5)


def test_cost_model_counts_the_paper_point_by_hand():
    q = torch.empty(1, 8, 98304, 128, dtype=torch.bfloat16, device="meta")
    plan = make_plan(LighthouseConfig(levels=3, pooling=4, topk=1536), q, q, q)
    # 12 tiles; coarsest level read whole (98304 tokens) + per tile 512 level-1 rows and 512 level-2 rows of 4
    assert tokens_read_per_tensor(plan) == 98304 + 12 * (512 * 1 + 512 * 4)
    costs = stage_costs(plan, 2)
    row = 128 * 2
    assert costs["gather"][0] == 3 * 8 * (129024 + 18432) * row + 2 * 8 * 18432 * 8
    assert costs["pool_bwd"][0] == 3 * 8 * (18432 + 98304) * row + 2 * 8 * 3 * 98304 * 4
    assert costs["sdpa"][1] == 4 * 8 * 18432**2 * 128 / 2
    assert costs["sdpa_bwd"][1] == 2.5 * costs["sdpa"][1]


def test_profile_of_the_torch_path_has_every_stage_and_shares_that_sum_to_one():
    point = Point(
        Shape(n=2048, batch=1, heads=2, kv_heads=1, head_dim=16, dtype="fp32"),
        levels=3,
        pooling=4,
        topk=128,
        scorer="norm",
    )
    rows = profile_point(point, "torch", torch.device("cpu"), FAKE_PEAKS, sdpa_backend="math", timing=QUICK)
    by = {(r["pass"], r["stage"]): r for r in rows}
    assert {s for p, s in by if p == "fwd"} == {"scores", "select", "gather", "sdpa", "scatter", TOTAL, MEASURED}
    assert {s for p, s in by if p == "bwd"} == {"scatter_bwd", "sdpa_bwd", "gather_bwd", TOTAL, MEASURED}
    for pass_ in ("fwd", "bwd"):
        stages = [r for (p, s), r in by.items() if p == pass_ and s not in (TOTAL, MEASURED)]
        assert all(r["ms"] > 0 and r["floor_ms"] > 0 for r in stages)
        assert sum(r["share"] for r in stages) == pytest.approx(1.0, abs=1e-9)
        assert by[(pass_, TOTAL)]["ms"] == pytest.approx(sum(r["ms"] for r in stages))
        assert by[(pass_, MEASURED)]["ms"] > 0
    assert by[("fwd", "sdpa")]["floor_kind"] == "compute" and by[("fwd", "gather")]["floor_kind"] == "bandwidth"
    assert all(r["s_sel"] == 1152 for r in rows)


def test_peaks_are_measured_once_then_cached(tmp_path):
    path = tmp_path / "peaks.json"
    first = peaks.get_peaks(torch.device("cpu"), torch.float32, path=path)
    again = peaks.get_peaks(torch.device("cpu"), torch.float32, path=path)
    assert not first["cached"] and again["cached"]
    assert again["copy_gb_s"] == first["copy_gb_s"] > 0 and first["matmul_tflops"] > 0
    assert not peaks.get_peaks(torch.device("cpu"), torch.float32, remeasure=True, path=path)["cached"]


def test_profile_command_writes_csv_chart_and_machine_info(tmp_path):
    out = tmp_path / "prof"
    res = CliRunner().invoke(
        app,
        [
            "profile",
            "--seq",
            "2048",
            "--topk",
            "128",
            "--heads",
            "2",
            "--head-dim",
            "16",
            "--rep",
            "3",
            "--warmup",
            "1",
            "--max-seconds",
            "0.5",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader((out / "profile.csv").open()))
    assert {r["stage"] for r in rows} >= {"scores", "select", "gather", "sdpa", "scatter", "sdpa_bwd", MEASURED}
    assert (out / "profile.png").stat().st_size > 10_000
    info = json.loads((out / "machine.json").read_text())
    assert info["peaks"]["fp32"]["copy_gb_s"] > 0
    assert "measured" in res.output


def test_profile_command_names_a_bad_parameter(tmp_path):
    res = CliRunner().invoke(app, ["profile", "--seq", "2048", "--topk", "100", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2
    assert "topk" in res.output


def test_a_point_that_cannot_run_is_reported_and_the_others_still_run(tmp_path):
    out = tmp_path / "prof"
    res = CliRunner().invoke(
        app,
        [
            "profile",
            "--seq",
            "1024,2048",
            "--topk",
            "128",
            "--heads",
            "2",
            "--head-dim",
            "16",
            "--rep",
            "3",
            "--warmup",
            "1",
            "--max-seconds",
            "0.5",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 1
    assert "N=1024" in res.output and "too short" in res.output
    rows = list(csv.DictReader((out / "profile.csv").open()))
    assert {r["n"] for r in rows} == {"2048"}
    assert json.loads((out / "machine.json").read_text())["failed_points"][0]["point"].startswith("N=1024")


def test_stage_times_are_summed_per_stage_and_measured_is_the_whole_layer(monkeypatch):
    """With the clock replaced by fixed numbers: total = the sum of the stage rows, a stage timed in parts
    (the three gather backwards) is the sum of its parts, measured = the whole layer's own timing, shares =
    ms / total. Catches a part that overwrites instead of adding, a stage left out of the total, measured taken
    from the stage sum. (Replaces a 0.25x-4x sanity band on real CPU timings that let such bugs through.)"""
    from types import SimpleNamespace

    from lighthouse.bench import profile

    def stage_ms(name):
        return {
            "scores": 1.0,
            "select": 2.0,
            "gather": 4.0,
            "sdpa": 8.0,
            "scatter": 16.0,
            "scatter_bwd": 32.0,
            "sdpa_bwd": 64.0,
        }.get(name, 128.0)  # each gather_bwd part: 128

    def timing(launched, ahead):
        return SimpleNamespace(
            median_ms=launched, host_ahead_median_ms=ahead, host_ms_per_call=0.5, host_ahead_timeouts=1
        )

    monkeypatch.setattr(profile, "_time", lambda st, *a, **kw: profile.Clocks.of(timing(stage_ms(st.name), 1.0)))
    monkeypatch.setattr(
        profile, "measure", lambda fn, mode, *a, **kw: timing(*((1000.0, 900.0) if mode == "fwd" else (3000.0, 2000.0)))
    )
    point = Point(
        Shape(n=512, batch=1, heads=2, kv_heads=1, head_dim=8, dtype="fp32"),
        levels=2,
        pooling=2,
        topk=128,
        scorer="norm",
    )
    rows = profile_point(point, "torch", torch.device("cpu"), FAKE_PEAKS, sdpa_backend="math", timing=QUICK)
    by = {(r["pass"], r["stage"]): r["ms"] for r in rows}
    assert by[("bwd", "gather_bwd")] == 3 * 128.0
    assert by[("fwd", TOTAL)] == 1 + 2 + 4 + 8 + 16
    assert by[("bwd", TOTAL)] == 32 + 64 + 3 * 128
    assert by[("fwd", MEASURED)] == 1000.0 and by[("bwd", MEASURED)] == 3000.0
    shares = {(r["pass"], r["stage"]): r["share"] for r in rows}
    assert shares[("bwd", "sdpa_bwd")] == pytest.approx(64 / 480)
    ahead = {
        (r["pass"], r["stage"]): (r["host_ahead_ms"], r["host_ms_per_call"], r["host_ahead_timeouts"]) for r in rows
    }
    assert ahead[("bwd", "gather_bwd")] == (3.0, 1.5, 3)  # its three parts, each 1.0 ms, 0.5 ms of host, 1 timeout
    assert ahead[("fwd", TOTAL)] == (5.0, 2.5, 5) and ahead[("bwd", TOTAL)] == (5.0, 2.5, 5)
    assert ahead[("fwd", MEASURED)] == (900.0, 0.5, 1) and ahead[("bwd", MEASURED)][0] == 2000.0


@pytest.mark.parametrize("impl", ["torch", "triton"])
def test_profiled_stages_compute_the_layer(impl):
    """The stages the profile times are the layer's own steps on the same inputs: the forward's last stage
    returns the layer's output. Catches a profile that times stand-ins (other tensors, another selection, a
    skipped scatter), whose times would say nothing about the layer."""
    from lighthouse.bench import profile

    cfg = LighthouseConfig(levels=2, pooling=2, topk=128, sdpa_backend="math", impl=impl)
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, h, 256, 8, generator=g) for h in (2, 1, 1))
    go = torch.randn(1, 2, 256, 8, generator=g)
    plan = make_plan(cfg, q, k, v)
    stages = (profile.triton_stages if impl == "triton" else profile.torch_stages)(q, k, v, go, None, plan)
    scatter = next(st for st in stages if st.pass_ == "fwd" and st.name == "scatter")
    want = lighthouse.lighthouse_attention(q, k, v, config=cfg)
    got = scatter.fn()
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)


def test_each_stage_row_has_both_clocks_and_the_host_time(monkeypatch):
    """On a simulated GPU whose L2 flush takes 0.06 ms (tests/fake_gpu.py): a stage whose host takes 0.13 ms to
    launch one 0.2 ms kernel reads 0.27 ms as launched (`ms`) and 0.2 ms host ahead (`host_ahead_ms`); one whose
    host takes 0.05 ms is hidden by the flush (0.1 ms on both); a stage in two parts sums each clock. Catches a
    profile that reports the host's issue time as kernel time on its only clock (the Dec 3 stage shift,
    PERF_NOTES step 14) or drops the second clock."""
    from fake_gpu import FakeGpu

    from lighthouse.bench import profile
    from lighthouse.harness.timing import measure

    gpu = FakeGpu(flush_ms=0.06)

    def stage(pass_, name, host_ms, kernel_ms):
        def fn():
            gpu.work(host_ms)
            gpu.launch(kernel_ms)

        return profile.Stage(pass_, name, fn)

    fake = [
        stage("fwd", "gather", 0.13, 0.2),
        stage("fwd", "scatter", 0.05, 0.1),
        stage("bwd", "gather_bwd.0", 0.16, 0.05),
        stage("bwd", "gather_bwd.1", 0.16, 0.05),
    ]
    monkeypatch.setattr(profile, "torch_stages", lambda *a: fake)
    monkeypatch.setattr(profile, "measure", lambda *a, **kw: measure(*a, backend=gpu, **kw))
    point = Point(Shape(n=512, batch=1, heads=2, kv_heads=1, head_dim=8, dtype="fp32"), 2, 2, 128, "norm")
    rows = profile_point(point, "torch", torch.device("cpu"), FAKE_PEAKS, sdpa_backend="math", timing=QUICK)
    by = {(r["pass"], r["stage"]): r for r in rows}
    want = {  # (ms, host_ahead_ms, host_ms_per_call)
        ("fwd", "gather"): (0.27, 0.2, 0.13),
        ("fwd", "scatter"): (0.1, 0.1, 0.05),
        ("fwd", TOTAL): (0.37, 0.3, 0.18),
        ("bwd", "gather_bwd"): (0.3, 0.1, 0.32),
    }
    for key, (ms, ahead, host) in want.items():
        r = by[key]
        assert (r["ms"], r["host_ahead_ms"], r["host_ms_per_call"]) == pytest.approx((ms, ahead, host)), key
        assert r["host_ahead_timeouts"] == 0
    gather = by[("fwd", "gather")]
    assert gather["host_ahead_floor_ratio"] == pytest.approx(0.2 / gather["floor_ms"])
    assert gather["floor_ratio"] == pytest.approx(0.27 / gather["floor_ms"])


def test_a_profile_written_before_the_second_clock_reads_it_empty():
    """The Nov 29 H200 profile (as-launched `ms` only) reads as it did, the new columns empty."""
    from pathlib import Path

    from lighthouse.harness.tables import PROFILE, PROFILE_CLOCK_COLUMNS, read_rows

    path = Path(__file__).resolve().parents[2] / "reports" / "h200" / "profile" / "n96k-k1536" / "profile.csv"
    rows, torn = read_rows(path, PROFILE)
    assert rows and not torn
    gather = next(r for r in rows if r["stage"] == "gather")
    assert gather["ms"] == "0.219936" and gather["rope"] == "pre"
    assert all(r[c] == "" for r in rows for c in PROFILE_CLOCK_COLUMNS)


def test_trace_files_of_two_points_of_one_run_differ():
    """Catches `--trace` writing one file per (N, k, impl), so that `--rope pre,post` kept only post's trace (as it
    did in the H200 profile of 2026-12-03, third session)."""
    from dataclasses import replace

    from lighthouse.bench.profile import trace_name

    base = Point(Shape(98304, 1, 8, 8, 128, "bf16"), 3, 4, 1536, "norm")
    variants = [
        base,
        replace(base, rope="post"),
        replace(base, scorer="dilated"),
        replace(base, levels=2),
        replace(base, pooling=8),
        replace(base, shape=replace(base.shape, batch=2)),
        replace(base, shape=replace(base.shape, kv_heads=2)),
        replace(base, shape=replace(base.shape, head_dim=64)),
        replace(base, shape=replace(base.shape, dtype="fp16")),
    ]
    names = {trace_name(p, "triton") for p in variants}
    assert len(names) == len(variants)
    assert trace_name(base, "triton") != trace_name(base, "torch")
    assert all(n.startswith("trace-n98304-k1536-") and n.endswith(".json") for n in names)
