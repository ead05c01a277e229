"""The two-stage recipe: same init and data for both arms, the switch where asked, curves, summary, save."""

import json

import pytest
import torch

pytest.importorskip("transformers")

from lighthouse.harness.tables import TRAIN_CURVE, append_row, read_rows  # noqa: E402
from lighthouse.train import data  # noqa: E402
from lighthouse.train.presets import get_preset  # noqa: E402
from lighthouse.train.recipe import RecipeOptions, run_recipe  # noqa: E402
from lighthouse.train.report import recipe_rows, recipe_summary, train_section  # noqa: E402
from lighthouse.train.throughput import RunOptions  # noqa: E402


@pytest.fixture
def corpus(tmp_path):
    src = tmp_path / "src"
    for i in range(30):
        (src / f"p{i % 3}").mkdir(parents=True, exist_ok=True)
        (src / f"p{i % 3}" / f"m{i}.py").write_text("".join(f"def f{j}(x):\n    return x * {j}\n" for j in range(40)))
    return data.build_corpus(src, val_fraction=0.3)


def test_two_stage_runs_both_arms_switches_and_saves(tmp_path, corpus):
    """Catches a switch at the wrong step, arms with different budgets, a lost curve row, or a checkpoint
    without its Lighthouse settings."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = run_recipe(
            get_preset("tiny"),
            RunOptions(device=torch.device("cpu"), dtype="fp32"),
            RecipeOptions(steps=4, dense_from=0.5, eval_every=2, val_windows=1),
            tmp_path / "r",
            corpus=corpus,
            save=tmp_path / "ckpt",
        )
    finally:
        torch.set_num_threads(threads)
    rows, torn = read_rows(tmp_path / "r" / "curve.csv", TRAIN_CURVE)
    assert not torn and len(rows) == 8
    two = [r for r in rows if r["arm"] == "lighthouse-then-dense"]
    assert [r["attention"] for r in two] == ["lighthouse", "lighthouse", "dense", "dense"]
    assert all(r["attention"] == "dense" for r in rows if r["arm"] == "dense")
    assert [r["tokens"] for r in two] == [r["tokens"] for r in rows if r["arm"] == "dense"]
    assert [bool(r["val_loss"]) for r in two] == [False, True, False, True]
    summaries = {s["arm"]: s for s in recipe_summary(tmp_path / "r" / "curve.csv")}
    assert code == 0
    assert summaries["lighthouse-then-dense"]["switch_step"] == 2
    assert summaries["lighthouse-then-dense"]["steps"] == summaries["dense"]["steps"] == 4
    assert summaries["lighthouse-then-dense"]["final_val_loss"] == pytest.approx(float(two[-1]["val_loss"]), rel=1e-5)
    config = json.loads((tmp_path / "ckpt" / "lighthouse-then-dense" / "config.json").read_text())
    assert config["lighthouse"]["topk"] == 128 and config["lighthouse"]["dense"] is True
    assert (tmp_path / "r" / "train_loss.png").exists() and (tmp_path / "r" / "machine.json").exists()
    assert "### Two-stage recipe" in train_section(tmp_path / "r").markdown


def test_summary_and_gap_by_hand(tmp_path):
    """Catches a final loss taken from a step without validation, or a gap with the wrong sign or base."""
    curve = tmp_path / "curve.csv"
    for arm, attn, vals in (
        ("lighthouse-then-dense", ["lighthouse", "dense"], [2.2, 2.02]),
        ("dense", ["dense", "dense"], [2.1, 2.0]),
    ):
        for step in (1, 2, 3):
            append_row(
                curve,
                TRAIN_CURVE,
                {
                    "arm": arm,
                    "step": step,
                    "attention": attn[min(step - 1, 1)],
                    "tokens": 10 * step,
                    "train_loss": 3.0,
                    "elapsed_s": 1.5 * step,
                    "val_loss": vals[0] if step == 1 else (vals[1] if step == 3 else None),
                },
            )
    summary = {s["arm"]: s for s in recipe_summary(curve)}
    assert summary["dense"]["final_val_loss"] == 2.0 and summary["dense"]["wall_s"] == 4.5
    assert summary["lighthouse-then-dense"]["switch_step"] == 1
    rows = recipe_rows(list(summary.values()))
    assert rows[0][2] == "+1.00%" and rows[1][2] == ""


def test_recipe_options_and_schedule():
    """Catches a dense phase of zero steps, or a learning rate that never warms up or decays."""
    assert RecipeOptions(steps=10, dense_from=0.9).switch_step(10) == 9
    assert RecipeOptions(steps=2, dense_from=0.99).switch_step(2) == 1
    with pytest.raises(ValueError, match="dense-from"):
        RecipeOptions(dense_from=1.0)
    cosine = RecipeOptions(schedule="cosine").lr_schedule(1.0, 100)
    lrs = [cosine.lr(s) for s in range(100)]
    assert lrs[0] < lrs[4] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.1, abs=1e-3)
    with pytest.raises(ValueError, match="schedule"):
        RecipeOptions(schedule="linear")


def test_two_stage_refuses_an_unwritable_save_before_training(tmp_path, corpus):
    """Catches defect 2 of issue 23: --save to an unwritable place trained the first arm, then crashed."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="--save"):
        run_recipe(
            get_preset("tiny"),
            RunOptions(device=torch.device("cpu"), dtype="fp32"),
            RecipeOptions(steps=4, dense_from=0.5, eval_every=2, val_windows=1),
            tmp_path / "r",
            corpus=corpus,
            save=blocker / "ckpt",
        )
    assert not (tmp_path / "r" / "curve.csv").exists()


def test_two_stage_ctrl_c_keeps_rows_prints_resume_and_resume_finishes(tmp_path, corpus, monkeypatch, capsys):
    """Catches defect 3 of issue 23 (Ctrl-C exited 130 silently) and a resume that re-trains a finished arm or
    keeps half an arm."""
    from lighthouse.train import arm as arm_module

    real = arm_module.arm_rows
    calls = []

    def interrupted(plan, *a, **k):
        calls.append(plan.arm)
        for row in real(plan, *a, **k):
            if plan.arm == "dense" and row["step"] == 2:
                raise KeyboardInterrupt
            yield row

    monkeypatch.setattr(arm_module, "arm_rows", interrupted)
    opts = RunOptions(device=torch.device("cpu"), dtype="fp32")
    recipe = RecipeOptions(steps=4, dense_from=0.5, eval_every=2, val_windows=1)
    out = tmp_path / "r"
    code = run_recipe(get_preset("tiny"), opts, recipe, out, corpus=corpus, argv=["lighthouse-bench", "train"])
    assert code == 130
    text = capsys.readouterr().out
    assert "--resume" in text and str(out) in text
    rows = read_rows(out / "curve.csv", TRAIN_CURVE)[0]
    assert {r["arm"] for r in rows} == {"lighthouse-then-dense", "dense"}
    monkeypatch.setattr(arm_module, "arm_rows", real)
    calls.clear()
    code = run_recipe(get_preset("tiny"), opts, recipe, out, corpus=corpus, resume=True)
    assert code == 0
    rows = read_rows(out / "curve.csv", TRAIN_CURVE)[0]
    assert sorted((r["arm"], int(r["step"])) for r in rows) == sorted(
        [(a, s) for a in ("lighthouse-then-dense", "dense") for s in (1, 2, 3, 4)]
    )
