"""Context parallelism (lighthouse.distributed) on the CPU: gloo, W = 2 and 4 spawned processes.

Every rank holds its shard of a sequence that does not divide evenly by W and compares its rows with the
single-device call on the whole input (fp32, 1e-5). One spawn per world size runs all checks
(tests/cp_workers.py); each test below reads its check's verdict from every rank.
"""

import json
import os

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

import cp_workers

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")


@pytest.fixture(scope="module", params=[2, 4], ids=lambda w: f"W{w}")
def findings(request, tmp_path_factory):
    world = request.param
    tmp = tmp_path_factory.mktemp(f"cp{world}")
    # fork: the workers inherit the imported torch (spawn would re-import it, seconds per process)
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(cp_workers.worker, args=(world, str(tmp / "init"), str(tmp)), nprocs=world, start_method=method)
    return [json.loads((tmp / f"rank{r}.json").read_text()) for r in range(world)]


def _verdict(findings, name):
    problems = {r: f[name] for r, f in enumerate(findings) if f.get(name, "not run")}
    assert not problems, f"{name} failed on ranks {problems}"


def test_values_and_gradients_match_single_device(findings):
    """Catches a wrong shard offset, a lost halo (the first p**(l-1)-1 tokens of each shard), a wrong
    all-to-all layout or a missing gradient path through the exchanges (MHA, uneven N)."""
    _verdict(findings, "values_mha")


def test_gqa_values_and_gradients_match_single_device(findings):
    """Catches kv heads split across ranks out of step with their query heads (W=2 splits the kv heads,
    W=4 has fewer kv heads than ranks and sends them repeated)."""
    _verdict(findings, "values_gqa")


def test_post_rope_rotates_at_global_positions(findings):
    """rope='post' under context parallelism: each rank rotates its entries at global positions (rank offset,
    or the given positions' shard), so values and gradients equal the single-device call. Catches local
    positions (every rank from 0), a wrong rank offset, given positions ignored or read unsharded."""
    _verdict(findings, "values_post")
    _verdict(findings, "values_post_positions")


@pytest.mark.skipif(
    not os.environ.get("LIGHTHOUSE_CP_TEST_TRITON"),
    reason="opt-in: LIGHTHOUSE_CP_TEST_TRITON=1 (the interpreted Triton kernels take minutes on the CPU)",
)
def test_triton_path_matches_single_device(findings):
    """impl='triton' around the exchanges, rope pre and post (global positions in the fused gather and pull)."""
    _verdict(findings, "triton")
    _verdict(findings, "triton_post")


def test_selection_matches_single_device(findings):
    """Catches local tiles that differ from the global ones (padding, tile size of the short last shard)
    or a wrong shift of local pyramid indices to global ones."""
    _verdict(findings, "selection_gqa")


def test_module_device_mesh_and_dense_phase(findings):
    """Catches LighthouseAttention ignoring cp_group, a DeviceMesh not turned into its group, and a wrong
    head-parallel dense phase (uneven shards padded in the middle of the sequence), and config= a dict of the
    fields not accepted with cp_group."""
    _verdict(findings, "module_mesh_dense")


def test_bad_groups_and_shards_raise_clear_errors(findings):
    """Catches wrong shard lengths, tiles not divisible by W, unsupported scorers, Hq not divisible by W, a
    non-group cp_group, a 2-D mesh, ranks disagreeing on heads, one rank's bad input hanging the others, and
    NaN/Inf in one rank's q or v (config= a dict there) passing unnoticed or raised on that rank alone."""
    _verdict(findings, "errors")


def test_sweep_cp_needs_torchrun_and_a_valid_world_size(tmp_path, monkeypatch):
    """Catches `sweep --cp` starting a one-process 'parallel' sweep (or a traceback) when it was not launched
    by torchrun, and a world size below 1 being accepted."""
    from typer.testing import CliRunner

    from lighthouse.cli import app

    for var in ("WORLD_SIZE", "RANK"):
        monkeypatch.delenv(var, raising=False)
    runner = CliRunner()
    base = ["sweep", "--device", "cpu", "--seq", "4k", "--topk", "256", "--out", str(tmp_path / "o")]
    res = runner.invoke(app, base + ["--cp", "2"])
    assert res.exit_code == 2 and "torchrun" in res.output, res.output
    assert not (tmp_path / "o" / "results.csv").exists()
    res = runner.invoke(app, base + ["--cp", "0"])
    assert res.exit_code == 2 and "--cp must be an integer >= 1" in res.output, res.output
