"""The command line: --help everywhere, bad options, and the quick CPU sweep end to end."""

import csv
import json

import pytest
from typer.testing import CliRunner

from lighthouse.cli import app
from lighthouse.harness.tables import SWEEP

COLUMNS = list(SWEEP.columns)

runner = CliRunner()

DOCUMENTED = [
    "impl",
    "pass",
    "device",
    "dtype",
    "n",
    "batch",
    "heads",
    "kv_heads",
    "head_dim",
    "levels",
    "pooling",
    "topk",
    "scorer",
    "s_sel",
    "median_ms",
    "p20_ms",
    "p80_ms",
    "first_call_ms",
    "peak_mem_gib",
    "dense_tflops",
    "eff_tflops",
    "speedup_vs_sdpa_cudnn",
    "speedup_vs_sdpa_flash",
    "speedup_vs_sdpa_efficient",
    "speedup_vs_sdpa_math",
    "speedup_vs_flex",
    "floor_ratio",
    "status",
    "reason",
]


@pytest.mark.parametrize("args", [["--help"], ["sweep", "--help"], ["plot", "--help"], ["suites", "--help"]])
def test_help(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_bad_option_is_a_usage_error(tmp_path):
    result = runner.invoke(app, ["sweep", "--seq", "8k..4k", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "--seq" in result.output
    assert not (tmp_path / "x").exists()


def test_quick_sweep_writes_csv_machine_json_and_charts(tmp_path):
    out = tmp_path / "quick"
    result = runner.invoke(app, ["sweep", "--suite", "quick", "--floor", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with (out / "results.csv").open() as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS
        rows = list(reader)
    assert set(DOCUMENTED) <= set(COLUMNS)
    # 2 N x 3 passes of the math baseline; 4 points x 3 passes of Lighthouse and of the floor
    kinds = [(r["kind"], r["impl"]) for r in rows]
    assert kinds.count(("dense", "sdpa_math")) == 6
    assert kinds.count(("lighthouse", "lighthouse_torch")) == 12
    assert kinds.count(("floor", "floor")) == 12
    assert {r["status"] for r in rows} == {"ok"}

    dense = {(r["n"], r["pass"]): float(r["median_ms"]) for r in rows if r["kind"] == "dense"}
    floor = {(r["n"], r["levels"], r["pass"]): float(r["median_ms"]) for r in rows if r["kind"] == "floor"}
    for r in rows:
        assert float(r["p20_ms"]) <= float(r["median_ms"]) <= float(r["p80_ms"])
        assert r["peak_mem_gib"] == ""  # CUDA only
        if r["kind"] == "dense":
            assert r["levels"] == r["topk"] == r["scorer"] == r["s_sel"] == ""
            assert r["dense_tflops"] == r["eff_tflops"]
        else:
            assert r["levels"] in ("2", "3") and r["topk"] == "128" and r["s_sel"] != ""
        if r["kind"] == "floor":
            assert (
                r["s_sel"]
                == {"2": {"2048": "1024", "4096": "1536"}, "3": {"2048": "1152", "4096": "1280"}}[r["levels"]][r["n"]]
            )
        if r["kind"] == "lighthouse":
            ms = float(r["median_ms"])
            assert float(r["speedup_vs_sdpa_math"]) == pytest.approx(dense[(r["n"], r["pass"])] / ms, rel=1e-4)
            assert float(r["floor_ratio"]) == pytest.approx(ms / floor[(r["n"], r["levels"], r["pass"])], rel=1e-4)
            assert r["speedup_vs_sdpa_cudnn"] == ""
            s, n = int(r["s_sel"]), int(r["n"])
            assert float(r["dense_tflops"]) / float(r["eff_tflops"]) == pytest.approx(n**2 / s**2, rel=1e-4)

    info = json.loads((out / "machine.json").read_text())
    for key in (
        "gpu",
        "driver",
        "cuda",
        "cudnn",
        "torch",
        "triton",
        "python",
        "platform",
        "cpu",
        "git",
        "command",
        "start_time",
        "end_time",
        "wall_seconds",
    ):
        assert key in info
    assert "commit" in info["git"] and "dirty" in info["git"]
    assert "--suite quick" in info["equivalent_command"]
    assert info["wall_seconds"] > 0 and info["interrupted"] is False

    for name in ("speedup", "latency", "memory"):
        assert (out / f"{name}.png").stat().st_size > 1000
    assert not list(out.glob("*.svg")), "charts are PNG only (reports/README.md: no SVG copy of every PNG)"
    assert (out / "speedup.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Lighthouse vs dense SDPA" in result.output  # the summary table


def test_plot_command_redraws(tmp_path):
    out = tmp_path / "s"
    assert (
        runner.invoke(
            app, ["sweep", "--seq", "2k", "--levels", "2", "--pass", "fwd", "--no-plot", "--out", str(out)]
        ).exit_code
        == 0
    )
    assert not (out / "latency.png").exists()
    result = runner.invoke(app, ["plot", str(out / "results.csv"), "--out", str(tmp_path / "charts")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "charts" / "latency.png").exists() and (tmp_path / "charts" / "speedup.png").exists()
    assert not list((tmp_path / "charts").glob("*.svg"))
