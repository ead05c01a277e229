"""`lighthouse-bench validate` on the CPU (Triton interpreted) on a tiny shape: it passes where the paths agree,
and fails where the Triton path differs from PyTorch, from itself, or under poisoned buffers."""

import csv

import pytest
import torch
from typer.testing import CliRunner

from lighthouse.bench import parity, validate
from lighthouse.cli import app
from lighthouse.harness import points
from lighthouse.kernels import alloc

TINY = [
    "--device",
    "cpu",
    "--seq",
    "256",
    "--topk",
    "128",
    "--levels",
    "2",
    "--pooling",
    "2",
    "--heads",
    "1",
    "--head-dim",
    "16",
]


def rows(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def test_the_cli_passes_a_tiny_point_and_writes_its_row(tmp_path):
    """Catches a command that does not run both paths, or writes no row, or passes without judging."""
    res = CliRunner().invoke(app, ["validate", *TINY, "--out", str(tmp_path / "v")])
    assert res.exit_code == 0, res.output
    [row] = rows(tmp_path / "v" / "validate.csv")
    assert row["status"] == "ok" and row["ok"] == "True" and row["same_selection"] == "True"
    assert row["bitwise_repeat"] == "True" and row["poisoned_equal"] == "True"
    assert all(float(row[f"rel_{f}"]) <= 1e-5 for f in ("out", "dq", "dk", "dv"))
    assert "validate: PASSED" in res.output


def test_a_kernel_that_skips_an_element_fails(monkeypatch):
    """The Triton path right on clean buffers but leaving one output element unwritten (the poison shows): the
    point is not ok. Catches a poisoned run that is never compared, or compared with itself."""
    real = parity.run_path

    def forgets(impl, *args, **kw):
        got = real(impl, *args, **kw)
        if impl == "triton" and alloc.POISON:
            got[0] = got[0].clone()
            got[0][0, 0, 5, 0] = float("nan")
        return got

    monkeypatch.setattr(parity, "run_path", forgets)
    monkeypatch.setattr(alloc, "POISON", False)  # the tests poison every buffer (conftest): here only one run
    point = points.Point(points.Shape(256, 1, 1, 1, 16, "fp32"), levels=2, pooling=2, topk=128, scorer="norm")
    row = validate.validate_point(point, torch.device("cpu"))
    assert row["status"] == "ok" and row["same_selection"] and row["bitwise_repeat"]
    assert row["poisoned_equal"] is False and row["ok"] is False


def test_a_triton_path_off_the_spec_fails_the_command(tmp_path, monkeypatch):
    """The Triton output off by 1e-3 (relative): exit 1 and FAILED. Catches a tolerance never applied."""
    real = parity.run_path

    def off(impl, *args, **kw):
        got = real(impl, *args, **kw)
        return [got[0] * 1.001, *got[1:]] if impl == "triton" else got

    monkeypatch.setattr(parity, "run_path", off)
    res = CliRunner().invoke(app, ["validate", *TINY, "--out", str(tmp_path / "v")])
    assert res.exit_code == 1, res.output
    [row] = rows(tmp_path / "v" / "validate.csv")
    assert row["ok"] == "False" and float(row["rel_out"]) == pytest.approx(1e-3, rel=1e-3)
    assert "validate: FAILED - 1 point(s)" in res.output


@pytest.mark.parametrize(
    "args,message",
    [(["--dtype", "fp64"], "--dtype"), (["--seq", "0"], "--seq"), (["--levels", "3", "--pooling", "4"], "no row ran")],
)
def test_bad_options_and_invalid_points_are_exit_2(tmp_path, args, message):
    """A bad option names itself before anything runs; a point that cannot exist is invalid, never error.
    Catches a traceback or exit 1 for a usage error."""
    res = CliRunner().invoke(app, ["validate", *TINY, *args, "--out", str(tmp_path / "v")])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, res.output
