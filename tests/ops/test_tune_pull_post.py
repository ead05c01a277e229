"""scripts/tune_pull_post.py end to end at a tiny CPU point (--quick, TRITON_INTERPRET): its files, their columns,
the shapes it launched, and that it leaves kernels/scatter.py's settings as they were."""

import csv
import importlib.util
import json
from pathlib import Path

import pytest

from lighthouse.kernels import scatter

ROOT = Path(__file__).resolve().parents[2]
TINY = ("--n", "256", "--topk", "128", "--levels", "2", "--pooling", "2", "--heads", "1", "--head-dim", "4")


def _script():
    spec = importlib.util.spec_from_file_location("tune_pull_post", ROOT / "scripts" / "tune_pull_post.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_quick_run_writes_every_shape_and_restores_the_settings(tmp_path, capsys):
    tune = _script()
    before = {name: getattr(scatter, name) for name in tune.SETTINGS.values()}
    assert tune.main(["--out", str(tmp_path), *TINY, "--dtype", "float32", "--quick"]) == 0
    assert {name: getattr(scatter, name) for name in tune.SETTINGS.values()} == before
    rows = _rows(tmp_path / "tune_pull_post.csv")
    assert tuple(rows[0]) == tune.COLUMNS
    pulls = [r for r in rows if r["stage"] == "pull"]
    # the default and the quick shape, each next to pre mode's pull
    assert sorted(r["shape"] for r in pulls) == sorted(["pre", "pre", tune.DEFAULT.name, "w4_h1_t32_split1_hoist1"])
    split = next(r for r in pulls if r["shape"] == "w4_h1_t32_split1_hoist1")
    assert (split["warps"], split["block_t"], split["split"], split["hoist"]) == ("4", "32", "True", "True")
    assert split["launches"] == "2"  # dq, dk rotated in one launch, dv in its own (one head: no GQA split)
    assert {r["rope"] for r in rows if r["stage"] == "layer"} == {"pre", "post"}
    assert all(float(r["median_ms"]) > 0 and r["n"] == "256" for r in rows)
    summary = _rows(tmp_path / "summary.csv")
    assert tuple(summary[0]) == tune.SUMMARY and len(summary) == 2
    (winner,) = [r for r in summary if r["winner"] == "True"]
    assert winner["layer_post_over_pre"] and float(winner["layer_post_over_pre"]) > 0
    assert json.loads((tmp_path / "machine.json").read_text())
    assert f"winner   {winner['shape']}" in capsys.readouterr().out


def test_bad_grid_value_is_one_error_line(tmp_path, capsys):
    assert _script().main(["--out", str(tmp_path), *TINY, "--block-t", "24"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: --block-t") and "\n" not in err


def test_the_default_grid_is_accepted_whole():
    """Catches a default option value its own check refuses (0 for --split and --hoist was refused once, on the
    H200, costing a device call): the 64 shapes of the defaults, today's default first, none twice."""
    tune = _script()
    shapes = tune.grid(tune.parser().parse_args(["--out", "x"]))
    assert len(shapes) == len(set(shapes)) == 64 and shapes[0] == tune.DEFAULT
    # at D=128 the kernel caps a program's rows at 64: more would run as 64 and be recorded as asked
    assert tune.grid(tune.parser().parse_args(["--out", "x", "--block-t", "64"]))
    with pytest.raises(ValueError, match="--block-t takes values in \\[16, 32, 64\\]"):
        tune.grid(tune.parser().parse_args(["--out", "x", "--block-t", "128"]))
    assert {(s.split, s.hoist) for s in shapes} == {(False, False), (False, True), (True, False), (True, True)}
