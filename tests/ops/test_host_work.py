"""scripts/host_work.py: the count of what the host issues per fwd+bwd (issue 24), on the CPU at a tiny shape."""

import csv
import importlib.util
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def host_work():
    spec = importlib.util.spec_from_file_location("host_work", ROOT / "scripts" / "host_work.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_counter_sees_syncs_allocations_and_views(host_work):
    """The instruments themselves, on code whose counts are known: a factory, a view, a compute op, and the
    host reads .item(), bool(), .tolist(), nonzero and torch.tensor(list)."""
    counts = host_work.Counts()
    x = torch.arange(6.0)
    with host_work.counting(counts):
        y = torch.empty(3)
        z = x.view(2, 3)
        w = z + 1
        w.sum().item()
        bool(w[0, 0] > 0)
        w.tolist()
        w.nonzero()
        torch.tensor([1, 2])
    assert counts.total("allocs") == 1
    assert counts.total("host_data") == 1
    assert counts.total("syncs") == 4  # item, bool, tolist, nonzero
    assert counts.total("views") >= 2  # view and the indexing w[0, 0]
    assert counts.total("compute") >= 4  # add, sum, gt, nonzero
    assert counts.total("launches") == 0
    del y


def test_host_work_counts_do_not_depend_on_n(host_work, tmp_path):
    """Two N at the same config: every count positive where the path issues work, and the same at both N;
    one Triton launch per kernel stage (scores, select, gather, scatter; fan_in, pool_bwd)."""
    rc = host_work.main(
        [
            "--seq",
            "512,1024",
            "--topk",
            "128",
            "--levels",
            "2",
            "--heads",
            "1",
            "--head-dim",
            "16",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 0
    rows = list(csv.DictReader((tmp_path / "host_work.csv").open()))
    by_n = {}
    for r in rows:
        by_n.setdefault(r["n"], {})[(r["pass"], r["stage"])] = {k: int(r[k]) for k in host_work.KINDS}
    assert set(by_n) == {"512", "1024"}
    assert by_n["512"] == by_n["1024"]
    counts = by_n["512"]
    for stage in ("scores", "select", "gather", "scatter", "fan_in", "pool_bwd"):
        pass_ = "fwd" if stage in host_work.layer.STAGES["fwd"] else "bwd"
        assert counts[(pass_, stage)]["launches"] == 1, stage
        assert counts[(pass_, stage)]["allocs"] >= 1, stage
    assert counts[("fwd", "total")]["launches"] == 4 and counts[("bwd", "total")]["launches"] == 2
    assert counts[("fwd", "sdpa")]["compute"] >= 1 and counts[("bwd", "sdpa_bwd")]["compute"] >= 1
    total = counts[("fwd+bwd", "total")]
    assert total["launches"] == 6 and total["allocs"] > 0 and total["compute"] > 0


def test_host_work_refuses_mismatched_topk(host_work, capsys):
    assert host_work.main(["--seq", "2048,4096", "--topk", "128,256,384"]) == 2
    assert capsys.readouterr().err.startswith("Error:")


def test_stage_clocks_cover_every_stage(host_work, monkeypatch):
    """The CUDA timing loop (run here with synchronize stubbed): a host time for every stage of both passes,
    and each pass's total at least the sum of its stages (`other` is the rest, never negative)."""
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    args = host_work.argparse.Namespace(
        levels=3, pooling=4, sdpa_backend=None, batch=1, heads=1, kv_heads=None, head_dim=16, warmup=0, reps=1
    )
    times = host_work.time_point(2048, 128, args, torch.device("cpu"), torch.float32)
    for pass_, stages in host_work.layer.STAGES.items():
        assert all(times[(pass_, s)] > 0 for s in stages)
        assert times[(pass_, "other")] >= 0
        assert times[(pass_, "total")] >= sum(times[(pass_, s)] for s in stages)
    assert times[("fwd+bwd", "total")] >= times[("fwd", "total")] + times[("bwd", "total")] * 0.99


def test_stub_kernels_times_every_stage_and_restores_the_kernels(host_work, tmp_path):
    """--stub-kernels: a host time per stage of both passes (the per-pass total the sum of its stages and `other`),
    the same counts as a real run (the stubs sit behind Triton's launch proxy), and nothing stubbed afterwards."""
    from lighthouse.kernels import layer

    sdpa, runs = layer.causal_sdpa, [cls.run for cls in host_work._launch_classes()]
    args = ["--seq", "512", "--topk", "128", "--levels", "2", "--heads", "1", "--head-dim", "16"]
    assert host_work.main([*args, "--stub-kernels", "--reps", "5", "--warmup", "1", "--out", str(tmp_path)]) == 0
    assert layer.causal_sdpa is sdpa and [cls.run for cls in host_work._launch_classes()] == runs
    times = {(r["pass"], r["stage"]): float(r["host_ms"]) for r in csv.DictReader((tmp_path / "host_time.csv").open())}
    for pass_, names in host_work.layer.STAGES.items():
        assert all(times[(pass_, s)] > 0 for s in names), pass_
        staged = sum(times[(pass_, s)] for s in (*names, "other"))
        assert staged == pytest.approx(times[(pass_, "total")], rel=0.5), pass_  # medians of each: not exact
    counts = {(r["pass"], r["stage"]): r["launches"] for r in csv.DictReader((tmp_path / "host_work.csv").open())}
    assert counts[("fwd+bwd", "total")] == "6"
