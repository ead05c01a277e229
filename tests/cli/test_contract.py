"""One contract for every command that writes (issue 23), held by the harness's row loop: each defect of the
issue as a test, run against every command that has the option."""

import json
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lighthouse.cli import app

runner = CliRunner()
UNWRITABLE = Path("/sys/lighthouse-bench-out")  # no process may create a folder there, root included

#: One small grid, as every command that takes a grid spells it.
GRID = "--seq 256,512 --topk 128 --levels 2 --pooling 2 --heads 1".split()
TINY_SWEEP = [
    "sweep",
    "--suite",
    "quick",
    *GRID,
    *"--kv-heads 1 --head-dim 8 --pass fwd --impl torch".split(),
    *"--baseline math --warmup 1 --rep 2 --min-rep 1 --no-floor --no-plot".split(),
]
TINY_QUALITY = ["quality", "--device", "cpu", *GRID, *"--kv-heads 1 --head-dim 16 --inputs random --no-plot".split()]
TINY_PROFILE = ["profile", "--device", "cpu", *GRID, *"--head-dim 8 --warmup 1 --rep 1 --max-seconds 0.1".split()]
TINY_VALIDATE = ["validate", "--device", "cpu", *GRID, "--head-dim", "8"]
TINY_TRAIN = "train --preset tiny --seq 128,256 --steps 1 --warmup 0 --attention dense --no-plot".split()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def usage_error(result, *needles):
    """Exit 2, an `Error` line naming the problem, no traceback."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert any(line.startswith("Error") or "Invalid value" in line for line in result.output.splitlines()), (
        result.output
    )
    for needle in needles:
        assert needle in " ".join(result.output.split()), (needle, result.output)


@pytest.fixture
def fake_model(tmp_path):
    """A folder `passkey` accepts as a model before loading it (its --out is checked before any load)."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"max_position_embeddings": 2048}))
    return model


def command_args(command, tmp_path, fake_model):
    return {
        "sweep": TINY_SWEEP,
        "quality": TINY_QUALITY,
        "profile": TINY_PROFILE,
        "train": TINY_TRAIN,
        "validate": TINY_VALIDATE,
        "passkey": ["passkey", fake_model, "--device", "cpu", "--no-plot"],
        "recommend": ["recommend", tmp_path, "--seq", "256", "--max-out-err", "0.1"],
    }[command]


WRITERS = ["sweep", "quality", "profile", "train", "passkey", "validate"]


# ------------------------------------------------------------------ 1. a bad --out: one Error line, exit 2


@pytest.mark.parametrize("command", WRITERS + ["recommend"])
@pytest.mark.parametrize("bad", ["a file", "an unwritable folder"])
def test_a_bad_out_is_a_usage_error_naming_out(command, bad, tmp_path, fake_model):
    """Catches `train`, `quality` and `recommend --out` ending in a traceback and exit 1 (a file where a folder
    goes, a folder where a file goes, or a place nobody can write)."""
    if bad == "a file":
        target = tmp_path / "taken"
        if command == "recommend":  # its --out is a file: a folder is what is in the way
            target.mkdir()
        else:
            target.write_text("x")
    else:
        target = UNWRITABLE / ("r.md" if command == "recommend" else "out")
    usage_error(invoke(*command_args(command, tmp_path, fake_model), "--out", target), "--out")


# ------------------------------------------------------------------ 3. never overwrite; Ctrl-C keeps rows, exit 130


@pytest.mark.parametrize("command", ["sweep", "quality", "profile", "train"])
def test_an_existing_run_is_never_overwritten(command, tmp_path, fake_model):
    """Catches `profile --out` silently overwriting an existing profile.csv: a second run into the same --out
    without --resume is refused and the first run's rows stay."""
    out = tmp_path / "run"
    args = command_args(command, tmp_path, fake_model)
    first = invoke(*args, "--out", out)
    assert first.exit_code == 0, first.output
    table = next(out.glob("*.csv"))
    before = table.read_text()
    usage_error(invoke(*args, "--out", out), "--out", "already exists", "--resume")
    assert table.read_text() == before


#: The function each command measures with, and where it is looked up at run time.
MEASURE = {
    "sweep": ("lighthouse.bench.runner", "execute"),
    "quality": ("lighthouse.quality.evaluate", "measure_point"),
    "profile": ("lighthouse.bench.profile", "profile_point"),
    "train": ("lighthouse.train.benchmark", "measure_point"),
}


@pytest.mark.parametrize("command", ["sweep", "quality", "profile", "train"])
def test_ctrl_c_keeps_the_rows_and_prints_the_exact_resume_command(command, tmp_path, monkeypatch, fake_model):
    """Catches Ctrl-C losing the finished points (profile), printing nothing, or printing a partial resume hint
    (`--resume --out DIR` without the options): the printed command, run as printed, finishes the run."""
    import importlib

    module, name = MEASURE[command]
    module = importlib.import_module(module)
    real, calls = getattr(module, name), []

    def interrupt_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, interrupt_second)
    out = tmp_path / "run"
    result = invoke(*command_args(command, tmp_path, fake_model), "--out", out)
    assert result.exit_code == 130, result.output
    assert "Interrupted" in result.output
    kept = next(out.glob("*.csv")).read_text().splitlines()
    assert len(kept) >= 2  # the header and the first item's rows
    line = next(line for line in result.output.splitlines() if "--resume" in line)
    printed = line[line.index("lighthouse-bench") :].strip()
    assert "..." not in printed and f"--out {out}" in printed
    monkeypatch.setattr(module, name, real)
    again = invoke(*shlex.split(printed)[1:])
    assert again.exit_code == 0, again.output
    assert next(out.glob("*.csv")).read_text().splitlines()[: len(kept)] == kept


# ------------------------------------------------------------------ 4. resume: the option that differs; check has none


@pytest.mark.parametrize("command", ["sweep", "quality"])
def test_a_resume_with_other_options_names_the_option_and_the_folder(command, tmp_path, fake_model):
    """Catches a resume mismatch naming the wrong folder and dumping two JSON grids instead of the option."""
    out = tmp_path / "run"
    args = command_args(command, tmp_path, fake_model)
    assert invoke(*args, "--out", out).exit_code == 0
    changed = list(args)
    changed[changed.index("--heads") + 1] = "2"
    result = invoke(*changed, "--out", out, "--resume")
    usage_error(result, "--resume", "--heads 2 (recorded: 1)", str(out))
    assert "[{" not in result.output and '{"' not in result.output


def test_check_never_suggests_a_resume_it_does_not_have(tmp_path, monkeypatch):
    """Catches `check` printing `... --resume` (an option it does not have) when its sweep is interrupted."""
    from lighthouse.bench import sweep
    from lighthouse.harness import points

    spec = points.resolve(
        "quick",
        {
            "seq": "256",
            "topk": "128",
            "levels": "2",
            "pooling": "2",
            "heads": "1",
            "kv_heads": "1",
            "head_dim": "8",
            "pass": "fwd",
            "impl": "torch",
            "baseline": "math",
            "floor": False,
            "rep": "1",
            "min_rep": "1",
        },
        False,
    )
    from rich.console import Console

    console = Console(record=True, width=200)
    monkeypatch.setattr("lighthouse.bench.runner.execute", lambda task, bench: (_ for _ in ()).throw(KeyboardInterrupt))
    assert sweep.run(spec, tmp_path / "s", console=console, plot=False, resumable=False) == 130
    text = console.export_text()
    assert "Interrupted" in text and "--resume" not in text


# ------------------------------------------------------------------ 5. nothing can run: exit 2 before anything runs


@pytest.mark.parametrize("command", ["sweep", "quality", "validate"])
def test_a_grid_of_invalid_points_is_refused_before_anything_runs(command, tmp_path, fake_model):
    """Catches `sweep --topk 100` timing the dense baseline for nothing and exiting 1 (docs/cli.md says 2)."""
    args = list(command_args(command, tmp_path, fake_model))
    args[args.index("--topk") + 1] = "100"
    usage_error(invoke(*args, "--out", tmp_path / "x"), "topk")
    assert not any((tmp_path / "x").glob("*.csv"))


@pytest.mark.parametrize("command", ["sweep", "quality", "profile", "validate"])
def test_an_absurd_sequence_length_is_refused(command, tmp_path, fake_model):
    """Catches `--seq 99999999999999999999` being accepted (and run)."""
    args = list(command_args(command, tmp_path, fake_model))
    args[args.index("--seq") + 1] = "99999999999999999999"
    usage_error(invoke(*args, "--out", tmp_path / "x"), "--seq", "2**30")


# ------------------------------------------------------------------ 6. out of memory is `oom` on the CPU too


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:121] DefaultCPUAllocator: can't allocate "
            "memory: you tried to allocate 68719476736 bytes. Error code 12 (Cannot "
            "allocate memory)"
        ),
        MemoryError(),
    ],
)
@pytest.mark.parametrize("kind", ["dense", "lighthouse"])
def test_a_cpu_out_of_memory_is_oom_for_every_row_kind(exc, kind):
    """Catches a CPU out-of-memory labelled `unsupported` on dense rows and `error` on Lighthouse rows."""
    from types import SimpleNamespace

    from lighthouse.bench.runner import classify
    from lighthouse.quality.runner import classify as quality_classify

    task = SimpleNamespace(impl="sdpa_math" if kind == "dense" else "lighthouse_torch", kind=kind)
    assert classify(exc, task)[0] == "oom"
    assert quality_classify(exc)[0] == "oom"


# ------------------------------------------------------------------ 9. no empty charts; 10. counts >= their minimum


@pytest.mark.parametrize("command", ["plot", "report"])
def test_a_header_only_csv_draws_nothing(command, tmp_path):
    """Catches `plot` and `report` drawing empty charts from a CSV with a header and no row."""
    from lighthouse.harness.tables import SWEEP

    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "results.csv").write_text(",".join(SWEEP.columns) + "\n")
    target = folder / "results.csv" if command == "plot" else folder
    usage_error(invoke(command, target, "--out", tmp_path / "o"), "no finished row")
    assert not list((tmp_path / "o").glob("*.png")) if (tmp_path / "o").exists() else True


@pytest.mark.parametrize(
    "args,needle",
    [
        (["sweep", "--cp", "0"], "--cp must be an integer >= 1"),
        (["sweep", "--cp", "0", "--dry-run"], "--cp must be an integer >= 1"),
        (["recommend", ".", "--seq", "256", "--max-out-err", "0.1", "--runners-up", "-3"], "--runners-up must be >= 0"),
    ],
)
def test_counts_below_their_minimum_are_refused(args, needle):
    usage_error(invoke(*args), needle)


# ------------------------------------------------------------------ 11. the small ones


def test_a_long_reason_is_cut_with_an_ellipsis_and_an_install_hint_keeps_its_brackets():
    """Catches the sweep summary cutting reasons at 60 characters without an ellipsis, and the console dropping
    `[gla]` from `pip install '.[gla]'` (read as markup)."""
    from rich.console import Console

    from lighthouse.bench.summary import summary_table
    from lighthouse.harness.failures import one_line
    from lighthouse.harness.loop import Outcome, RowLoop
    from lighthouse.harness.tables import SWEEP

    long = "x" * 100
    assert one_line(long, 60) == "x" * 57 + "..." and one_line("short", 60) == "short"
    row = {
        "kind": "lighthouse",
        "impl": "lighthouse_torch",
        "pass": "fwd",
        "status": "error",
        "reason": long,
        "n": "256",
        "topk": "128",
        "levels": "2",
        "pooling": "2",
        "scorer": "norm",
        "dtype": "fp32",
        "batch": "1",
        "heads": "1",
        "kv_heads": "1",
        "head_dim": "8",
        "device": "cpu",
        "cuda_graph": "False",
    }
    console = Console(record=True, width=400)
    console.print(summary_table([row]))
    assert "x" * 57 + "..." in console.export_text()

    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        console = Console(record=True, width=400)
        loop = RowLoop("sweep", Path(folder), SWEEP, "results.csv", console=console, resumable=False)
        loop.prepare()
        loop.path.write_text(",".join(SWEEP.columns) + "\n")
        from lighthouse.harness.tables import append_row

        append_row(
            loop.path,
            SWEEP,
            {**row, "reason": "scorer gla needs flash-linear-attention: pip install '.[gla]'", "status": "unsupported"},
        )
        loop.info = {}
        assert loop.finish(Outcome()) == 2
        assert "pip install '.[gla]'" in console.export_text()
