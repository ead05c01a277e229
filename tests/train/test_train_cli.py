"""`lighthouse-bench train` end to end on the CPU: the tiny preset, resume, bad options, the report section."""

import json
import warnings

import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("transformers")

from lighthouse.cli import app  # noqa: E402
from lighthouse.harness.tables import TRAIN, read_rows  # noqa: E402
from lighthouse.train.report import train_section  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp("train") / "tiny"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = runner.invoke(app, ["train", "--preset", "tiny", "--steps", "3", "--out", str(out)])
    torch.set_num_threads(threads)
    return out, result, caught


def test_tiny_preset_runs_and_writes_rows_machine_json_and_chart(tiny_run):
    """Catches a broken train command: both attentions measured, numbers sane, files where documented."""
    out, result, _ = tiny_run
    assert result.exit_code == 0, result.output
    rows, torn = read_rows(out / "train.csv", TRAIN)
    assert not torn and [r["attention"] for r in rows] == ["dense", "lighthouse"]
    for r in rows:
        assert r["status"] == "ok", r
        assert float(r["tokens_per_s"]) == pytest.approx(512 / (float(r["median_step_ms"]) / 1e3), rel=1e-3)
        assert 0 < float(r["attention_share"]) < 1
        assert int(r["steps"]) == 3 and r["loss_impl"] == "chunked"
    assert rows[1]["topk"] == "128" and rows[1]["dense_layers"] == "0" and rows[1]["s_sel"] == "512"
    assert float(rows[1]["speedup_vs_dense"]) == pytest.approx(
        float(rows[1]["tokens_per_s"]) / float(rows[0]["tokens_per_s"]), rel=1e-3
    )
    info = json.loads((out / "machine.json").read_text())
    assert info["options"]["preset"]["name"] == "tiny" and info["wall_seconds"] is not None
    assert (out / "train_tokens_per_s.png").exists() and not (out / "train_tokens_per_s.svg").exists()


def test_no_transformers_warning_or_progress_bar_in_the_output(tiny_run):
    """transformers' warnings (the FutureWarning of gradient_checkpointing_enable) and progress bars are held
    down while the command runs. Catches them leaking into the table and row lines of `train` (defect 11)."""
    _, result, caught = tiny_run
    leaked = [f"{w.category.__name__}: {w.message}" for w in caught if "transformers" in w.filename]
    assert leaked == [] and "Warning" not in result.output and "it/s]" not in result.output, leaked


def test_resume_skips_finished_points(tiny_run):
    """Catches --resume measuring finished points again (duplicate rows, wasted GPU time)."""
    out, _, _ = tiny_run
    result = runner.invoke(
        app, ["train", "--preset", "tiny", "--steps", "3", "--out", str(out), "--resume", "--no-plot"]
    )
    assert result.exit_code == 0, result.output
    assert len(read_rows(out / "train.csv", TRAIN)[0]) == 2
    again = runner.invoke(app, ["train", "--preset", "tiny", "--out", str(out)])
    assert again.exit_code == 2 and "--resume" in again.output


def test_report_section_of_the_run(tiny_run):
    """Catches a report function that cannot read what the command wrote."""
    out, _, _ = tiny_run
    section = train_section(out)
    assert "| tiny | 512 | dense |" in section.markdown and "lighthouse k=128 L=2 p=2 norm" in section.markdown
    assert out / "train_tokens_per_s.png" in section.charts


@pytest.mark.parametrize(
    "args, option",
    [
        (["--preset", "huge"], "preset"),
        (["--topk", "100"], "topk"),
        (["--attention", "sparse"], "--attention"),
        (["--recipe", "two-stage", "--dense-from", "1.5"], "dense-from"),
        (["--seq", "8k..4k"], "--seq"),
        (["--cpu-threads", "0"], "--cpu-threads"),
        (["--save", "ckpt"], "--save"),
    ],
)
def test_bad_options_exit_2_naming_the_option(tmp_path, args, option):
    """Catches a traceback (or a silent default) for a bad value instead of a usage error."""
    result = runner.invoke(app, ["train", *args, "--out", str(tmp_path / "x")])
    assert result.exit_code == 2, result.output
    assert option in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x" / "train.csv").exists()
