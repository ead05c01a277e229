"""What a new user hit on the command line (issue 11): torn rows, usage errors, exit codes, provenance."""

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lighthouse.bench.results import SWEEP, read_rows
from lighthouse.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]

#: The smallest sweep there is: one N, one Lighthouse point, the math baseline, forward only (seconds on a CPU).
TINY = ["--suite", "quick", "--seq", "256", "--topk", "128", "--levels", "2", "--pooling", "2", "--heads", "1",
        "--kv-heads", "1", "--head-dim", "8", "--pass", "fwd", "--impl", "torch", "--baseline", "math",
        "--warmup", "1", "--rep", "2", "--min-rep", "1", "--no-floor", "--no-plot"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    """A finished tiny sweep folder (results.csv + machine.json); tests copy it before changing it."""
    out = tmp_path_factory.mktemp("tiny") / "sweep"
    result = invoke("sweep", *TINY, "--out", out)
    assert result.exit_code == 0, result.output
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _tear_last_row(path: Path) -> None:
    """Cut the last row in the middle, as a crash or a full disk would."""
    text = path.read_text()
    last = text.rstrip("\n").rsplit("\n", 1)[-1]
    path.write_text(text[: len(text.rstrip("\n")) - len(last)] + last[: len(last) // 2])


# ------------------------------------------------------------------ item 4: torn rows

def test_torn_row_is_left_out_of_plot_and_report_with_a_warning(tiny_sweep, tmp_path):
    """Catches `plot` and `report` showing a row cut short by a crash as `ok` (with a cut-off median)."""
    out = _copy(tiny_sweep, tmp_path / "s")
    _tear_last_row(out / "results.csv")
    result = invoke("plot", out / "results.csv", "--out", tmp_path / "charts")
    assert result.exit_code == 0, result.output
    assert "1 incomplete row (cut short by a crash or a full disk) left out" in result.output
    result = invoke("report", out, "--out", tmp_path / "report")
    assert result.exit_code == 0, result.output
    assert "1 incomplete row (cut short by a crash or a full disk) left out" in result.output
    assert "1 incomplete row" in (tmp_path / "report" / "report.md").read_text()
    headline = json.loads((tmp_path / "report" / "headline.json").read_text())
    assert headline["runs"][0]["torn_rows"] == 1


def test_resume_runs_a_torn_row_again(tiny_sweep, tmp_path):
    """Catches --resume taking a torn row for a finished one (never re-running it) or keeping it beside the
    re-run row."""
    out = _copy(tiny_sweep, tmp_path / "s")
    done_before, _ = read_rows(out / "results.csv", SWEEP)
    _tear_last_row(out / "results.csv")
    result = invoke("sweep", *TINY, "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    done, torn = read_rows(out / "results.csv", SWEEP)
    assert torn == []
    key = [tuple(r[c] for c in SWEEP.key) for r in done]
    assert sorted(key) == sorted(tuple(r[c] for c in SWEEP.key) for r in done_before) and len(set(key)) == len(key)


# ------------------------------------------------------------------ items 6, 7: bad --out, foreign files

def _usage_error(result, *needles):
    """Exit 2, one line naming the problem, no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    error = [line for line in result.output.splitlines() if line.startswith("Error:") or "Invalid value" in line]
    assert error, result.output
    for needle in needles:
        assert needle in result.output.replace("\n", " "), (needle, result.output)


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder this process cannot write: chmod 555 (root ignores it, so /sys, read-only to everyone, then)."""
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    try:
        with tempfile.TemporaryFile(dir=d):
            writable = True
    except OSError:
        writable = False
    if not writable:
        yield d
        d.chmod(0o755)
        return
    d.chmod(0o755)
    try:
        with tempfile.TemporaryFile(dir="/sys"):
            pytest.skip("no read-only folder to test with")
    except OSError:
        yield Path("/sys")


def test_out_that_is_a_file_is_a_usage_error(tmp_path):
    """Catches `sweep/profile --out FILE` ending in a FileExistsError traceback."""
    target = tmp_path / "afile"
    target.write_text("x")
    _usage_error(invoke("sweep", *TINY, "--out", target), "--out", "is a file, not a folder")
    _usage_error(invoke("profile", "--seq", "256", "--topk", "128", "--levels", "2", "--pooling", "2", "--out", target),
                 "--out", "is a file, not a folder")


def test_read_only_out_is_a_usage_error_before_any_work(tiny_sweep, read_only_dir, tmp_path):
    """Catches a read-only --out failing with an OSError traceback, in `profile` only after measuring
    everything (and in sweep, plot and report)."""
    _usage_error(invoke("sweep", *TINY, "--out", read_only_dir / "s"), "--out", "cannot write to the folder")
    result = invoke("profile", "--seq", "256", "--topk", "128", "--levels", "2", "--pooling", "2", "--heads", "1",
                    "--head-dim", "8", "--out", read_only_dir)
    _usage_error(result, "--out", "cannot write to the folder")
    assert "peaks" not in result.output and "profiling" not in result.output  # nothing measured first
    _usage_error(invoke("plot", tiny_sweep / "results.csv", "--out", read_only_dir), "--out", "cannot write")
    _usage_error(invoke("report", tiny_sweep, "--out", read_only_dir), "--out", "cannot write")


@pytest.mark.parametrize("content,why", [
    (b"", "is empty"),
    (b"\x00\x01\x02\xff binary", "is binary"),
    (b"\xff\xfe\xfa not utf-8", "is not UTF-8 text"),
    (b"a,b,status\n1,2,ok\n", "lacks the columns"),
    (b"n,topk,levels,pooling,scorer,dtype,batch,heads,kv_heads,head_dim,impl,s_sel,pass,stage,ms\n", "is a profile"),
])
def test_plot_and_report_refuse_a_file_that_is_not_a_results_csv(tmp_path, content, why):
    """Catches `plot` on an empty CSV (EmptyDataError), a foreign CSV or a profile.csv (KeyError: 'status')
    or a binary file (UnicodeDecodeError) ending in a traceback, and `report` exiting 0 on them."""
    path = tmp_path / "results.csv"
    path.write_bytes(content)
    _usage_error(invoke("plot", path), "not a lighthouse-bench", why)
    assert not list(tmp_path.glob("*.png"))
    if why != "is a profile":  # a profile is what `report` reads
        _usage_error(invoke("report", path, "--out", tmp_path / "r"), "not a lighthouse-bench")


# ------------------------------------------------------------------ item 11: provenance and wording

def test_report_names_the_cpu_the_configuration_and_the_noise(tiny_sweep, tmp_path):
    """Catches a CPU run's report with no CPU model in its Runs table, and a headline that picks the best
    configuration per N against the slow math baseline without saying which configuration or that CPU
    figures are noisy."""
    result = invoke("report", tiny_sweep, "--out", tmp_path / "report")
    assert result.exit_code == 0, result.output
    md = (tmp_path / "report" / "report.md").read_text()
    cpu = json.loads((tiny_sweep / "machine.json").read_text())["cpu"]
    assert f"CPU: {cpu}" in md
    assert "in its best configuration there (k=128, L=2, p=2, norm scorer; each N is judged by its best" in md
    assert "sdpa_math is PyTorch's unfused reference attention" in md
    assert "CPU timings are noisy" in md


def test_profile_chart_title_names_device_and_dtype():
    """Catches the profile chart titled "Lighthouse: time per stage" alone (no device, no dtype)."""
    from lighthouse.bench.profile_view import chart_title

    rows = [{"device": "cpu", "dtype": "fp32"}, {"device": "cpu", "dtype": "bf16"}]
    assert chart_title(rows, "AMD EPYC 7B13") == "Lighthouse: time per stage (AMD EPYC 7B13, bf16, fp32)"
    assert chart_title(rows) == "Lighthouse: time per stage (cpu, bf16, fp32)"


def test_venv_is_ignored_by_git():
    """Catches a newcomer's .venv/ making every run `+dirty` (untracked files count as changes)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    for path in (".venv/lib/python3.11/site.py", "venv/bin/python"):
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0, path
