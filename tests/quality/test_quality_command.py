"""`lighthouse-bench quality` and `recommend` end to end on the CPU (tiny shapes)."""

import pytest
import torch
from typer.testing import CliRunner

from lighthouse.cli import app
from lighthouse.harness.tables import QUALITY, read_rows

ARGS = [
    "quality",
    "--device",
    "cpu",
    "--seq",
    "1k",
    "--topk",
    "128,256",
    "--levels",
    "2,3",
    "--pooling",
    "4",
    "--scorer",
    "norm,gla",
    "--heads",
    "2",
    "--head-dim",
    "32",
    "--dtype",
    "fp32",
    "--needles",
    "1",
]


def test_quality_rows_statuses_resume_and_charts(tmp_path):
    """Catches a run that stops at an invalid or unsupported point, rows missing figures, a --resume that
    measures finished rows again, or charts not drawn."""
    out = tmp_path / "q"
    res = CliRunner().invoke(app, ARGS + ["--out", str(out)])
    assert res.exit_code == 0, res.output
    rows, torn = read_rows(out / "quality.csv", QUALITY)
    assert not torn and len(rows) == 2 * 2 * 2 * 2  # inputs x k x L x scorer
    by = {(r["inputs"], r["levels"], r["topk"], r["scorer"]): r for r in rows}
    assert by[("random", "3", "128", "norm")]["status"] == "invalid"  # N=1K < k * p^2
    gla = by[("needle", "2", "128", "gla")]
    assert gla["status"] == "unsupported" or gla["status"] == "ok"
    ok = by[("needle", "2", "256", "norm")]  # N = k * p: every token seen
    assert ok["status"] == "ok" and float(ok["coverage"]) == pytest.approx(1, abs=1e-4)
    assert float(ok["needle_recall"]) == 1.0 and float(ok["dense_needle_recall"]) == 1.0
    assert ok["recall_d50"] != "" and by[("random", "2", "128", "norm")]["needle_recall"] == ""
    assert (out / "machine.json").exists() and (out / "needle_recall_norm.png").exists()
    again = CliRunner().invoke(app, ARGS + ["--out", str(out), "--resume", "--no-plot"])
    assert again.exit_code == 0 and len(read_rows(out / "quality.csv", QUALITY)[0]) == len(rows)
    clash = CliRunner().invoke(app, ARGS + ["--out", str(out)])
    assert clash.exit_code == 2 and "--resume" in clash.output


def test_bad_options_exit_2_naming_the_option(tmp_path):
    """Catches a traceback instead of a clear usage error; a grid whose every point is invalid (--topk 100) is
    one too, refused before anything runs (as in sweep), naming the parameter."""
    for extra, word in (
        (["--inputs", "noise"], "--inputs"),
        (["--needles", "0"], "--needles"),
        (["--topk", "100"], "topk"),
    ):
        res = CliRunner().invoke(app, ARGS + ["--out", str(tmp_path / "x")] + extra)
        assert res.exit_code == 2 and word in res.output, res.output
        assert not (tmp_path / "x" / "quality.csv").exists()
    dry = CliRunner().invoke(app, ARGS + ["--dry-run"])
    assert dry.exit_code == 0 and "= 16 rows (8 invalid" in " ".join(dry.output.split())
    bad = CliRunner().invoke(app, ["recommend", str(tmp_path), "--seq", "96k"])
    assert bad.exit_code == 2 and "exactly one bar" in bad.output


def test_recommend_on_quality_output_says_speed_is_missing(tmp_path):
    """recommend over a quality run with no sweep: no configuration, names what to run, exit 1."""
    out = tmp_path / "q"
    assert (
        CliRunner()
        .invoke(
            app,
            ARGS[:5]
            + [
                "--topk",
                "256",
                "--levels",
                "2",
                "--pooling",
                "4",
                "--scorer",
                "norm",
                "--heads",
                "2",
                "--head-dim",
                "32",
                "--dtype",
                "fp32",
                "--needles",
                "1",
                "--no-plot",
                "--out",
                str(out),
            ],
        )
        .exit_code
        == 0
    )
    res = CliRunner().invoke(
        app, ["recommend", str(out), "--seq", "1k", "--min-needle-recall", "0.9", "--out", str(tmp_path / "rec.md")]
    )
    assert res.exit_code == 1 and "(no results.csv given): run `lighthouse-bench sweep --seq 1024" in res.output
    assert (tmp_path / "rec.md").read_text().startswith("## Recommendation for N=1K")


def test_checkpoint_inputs_one_row_per_layer(tmp_path):
    """checkpoint:PATH through the command: one row per layer, the model's head shape in the row."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=64,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
    )
    torch.manual_seed(0)
    model_dir = tmp_path / "model"
    transformers.LlamaForCausalLM(cfg).save_pretrained(model_dir)
    torch.save(torch.randint(0, 64, (1024,)), tmp_path / "held.pt")
    out = tmp_path / "q"
    res = CliRunner().invoke(
        app,
        ARGS[:5]
        + [
            "--topk",
            "256",
            "--levels",
            "2",
            "--pooling",
            "4",
            "--scorer",
            "norm",
            "--dtype",
            "fp32",
            "--inputs",
            f"checkpoint:{model_dir}",
            "--heldout",
            str(tmp_path / "held.pt"),
            "--no-plot",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    rows = read_rows(out / "quality.csv", QUALITY)[0]
    assert [(r["layer"], r["heads"], r["kv_heads"], r["head_dim"], r["status"]) for r in rows] == [
        ("0", "2", "1", "32", "ok"),
        ("1", "2", "1", "32", "ok"),
    ]
