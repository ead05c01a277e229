"""What a new user hit on the command line (issue 11): torn rows, usage errors, exit codes, provenance."""

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lighthouse.harness.tables import SWEEP, read_rows
from lighthouse.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]

#: The smallest sweep there is: one N, one Lighthouse point, the math baseline, forward only (seconds on a CPU).
TINY = [
    "--suite",
    "quick",
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
    "--kv-heads",
    "1",
    "--head-dim",
    "8",
    "--pass",
    "fwd",
    "--impl",
    "torch",
    "--baseline",
    "math",
    "--warmup",
    "1",
    "--rep",
    "2",
    "--min-rep",
    "1",
    "--no-floor",
    "--no-plot",
]


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
    _usage_error(
        invoke("profile", "--seq", "256", "--topk", "128", "--levels", "2", "--pooling", "2", "--out", target),
        "--out",
        "is a file, not a folder",
    )


def test_read_only_out_is_a_usage_error_before_any_work(tiny_sweep, read_only_dir, tmp_path):
    """Catches a read-only --out failing with an OSError traceback, in `profile` only after measuring
    everything (and in sweep, plot and report)."""
    _usage_error(invoke("sweep", *TINY, "--out", read_only_dir / "s"), "--out", "cannot write to the folder")
    result = invoke(
        "profile",
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
        "8",
        "--out",
        read_only_dir,
    )
    _usage_error(result, "--out", "cannot write to the folder")
    assert "peaks" not in result.output and "profiling" not in result.output  # nothing measured first
    _usage_error(invoke("plot", tiny_sweep / "results.csv", "--out", read_only_dir), "--out", "cannot write")
    _usage_error(invoke("report", tiny_sweep, "--out", read_only_dir), "--out", "cannot write")


@pytest.mark.parametrize(
    "content,why",
    [
        (b"", "is empty"),
        (b"\x00\x01\x02\xff binary", "is binary"),
        (b"\xff\xfe\xfa not utf-8", "is not UTF-8 text"),
        (b"a,b,status\n1,2,ok\n", "lacks the columns"),
        (
            b"n,topk,levels,pooling,scorer,dtype,batch,heads,kv_heads,head_dim,impl,s_sel,pass,stage,ms\n",
            "is a profile",
        ),
    ],
)
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
    assert (
        "(best configuration there: k=128 L=2 p=2 norm)" in result.output and "CPU figures are noisy" in result.output
    )


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


# ------------------------------------------------------------------ item 1: presets before paths


def test_folder_named_like_a_preset_does_not_hide_it(tmp_path, monkeypatch):
    """Catches load_suite looking for a path before the preset: after `sweep --suite quick --out quick`,
    the documented `--resume` (and a bare sweep in any folder holding quick/) failed with "no such file"."""
    from lighthouse.harness.options import load_suite

    monkeypatch.chdir(tmp_path)
    (tmp_path / "quick").mkdir()
    assert "CPU smoke" in load_suite("quick")["top"]["description"]
    assert invoke("sweep", *TINY, "--out", "quick").exit_code == 0
    result = invoke("sweep", *TINY, "--out", "quick", "--resume")
    assert result.exit_code == 0, result.output
    (tmp_path / "mine.toml").write_text('seq = "256"\ntopk = 128\n')
    assert load_suite("mine.toml")["top"]["topk"] == 128
    assert load_suite("./mine.toml")["top"]["topk"] == 128
    _usage_error(invoke("sweep", "--suite", "mine", "--dry-run"), "--suite", "unknown suite 'mine'", "quick")


# ------------------------------------------------------------------ item 8: one validation path


def _error_line(result) -> str:
    return next(line for line in result.output.splitlines() if line.startswith("Error:"))


@pytest.mark.parametrize("flag,value", [("--rep", "0"), ("--warmup", "0"), ("--max-seconds", "-1")])
def test_profile_validates_timing_flags_as_sweep_does(flag, value, tmp_path):
    """Catches `profile --rep 0` failing per point with exit 1, and `--warmup 0` and `--max-seconds -1`
    being accepted, where `sweep` refuses each as a usage error."""
    sweep = invoke("sweep", *TINY, flag, value, "--out", tmp_path / "s")
    profile = invoke(
        "profile",
        "--seq",
        "256",
        "--topk",
        "128",
        "--levels",
        "2",
        "--pooling",
        "2",
        flag,
        value,
        "--out",
        tmp_path / "p",
    )
    _usage_error(sweep, flag)
    _usage_error(profile, flag)
    assert _error_line(profile) == _error_line(sweep)
    assert not (tmp_path / "p").exists()


def test_profile_refuses_triton_where_it_cannot_run(monkeypatch, tmp_path):
    """Catches `profile --impl triton` on a CPU without the interpreter failing inside Triton ("0 active
    drivers") instead of saying why it cannot run here."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    result = invoke(
        "profile",
        "--seq",
        "256",
        "--topk",
        "128",
        "--levels",
        "2",
        "--pooling",
        "2",
        "--impl",
        "triton",
        "--device",
        "cpu",
        "--out",
        tmp_path / "p",
    )
    _usage_error(result, "--impl triton", "CUDA")


# ------------------------------------------------------------------ item 9: exit codes and --resume


def test_a_grid_where_no_row_can_run_is_an_error(tmp_path):
    """Catches `sweep --heads 3 --kv-heads 2`: every row invalid, exit 0 and empty charts."""
    args = [a for a in TINY]
    args[args.index("--heads") + 1], args[args.index("--kv-heads") + 1] = "3", "2"
    result = invoke("sweep", *args, "--out", tmp_path / "s")
    _usage_error(result, "no row of this sweep can run", "heads=3 must be a multiple of kv_heads=2")


def test_no_row_that_could_run_is_a_non_zero_exit(tmp_path, monkeypatch):
    """Catches a sweep whose every row came out unsupported (nothing measured) exiting 0."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    args = [a for a in TINY]
    args[args.index("--impl") + 1], args[args.index("--baseline") + 1] = "triton", "cudnn"
    result = invoke("sweep", *args, "--out", tmp_path / "s")
    assert result.exit_code == 2, result.output
    assert "no row ran" in result.output and "unsupported=2" in result.output


def test_resume_with_other_flags_is_refused(tiny_sweep, tmp_path):
    """Catches --resume with different grid flags silently appending another grid to the same CSV."""
    out = _copy(tiny_sweep, tmp_path / "s")
    args = [a for a in TINY]
    args[args.index("--seq") + 1] = "512"
    result = invoke("sweep", *args, "--out", out, "--resume")
    _usage_error(result, "--resume", "seq")
    assert len(read_rows(out / "results.csv", SWEEP)[0]) == len(read_rows(tiny_sweep / "results.csv", SWEEP)[0])


def test_min_rep_above_rep_is_refused(tmp_path):
    """Catches `--min-rep 5 --rep 2` being changed silently (to min_rep 2)."""
    args = [a for a in TINY]
    args[args.index("--rep") + 1], args[args.index("--min-rep") + 1] = "2", "5"
    _usage_error(invoke("sweep", *args, "--out", tmp_path / "s"), "--min-rep", "--rep")


def test_resumed_summary_counts_every_row(tiny_sweep, tmp_path):
    """Catches the end summary of a resumed sweep counting only this run's rows ("nothing new to run")."""
    out = _copy(tiny_sweep, tmp_path / "s")
    n = len(read_rows(out / "results.csv", SWEEP)[0])
    result = invoke("sweep", *TINY, "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    assert f"ok={n}" in result.output.splitlines()[-1]


# ------------------------------------------------------------------ item 11: the smaller ones


def test_ctrl_c_prints_the_exact_resume_command(tmp_path, monkeypatch):
    """Catches the interrupt message printing a literal "..." for the options: the printed command,
    run as printed, must resume the sweep."""
    import shlex

    from lighthouse.bench import runner as runner_mod

    out = tmp_path / "s"
    real = runner_mod.execute
    calls = []

    def interrupt_second(task, bench):
        calls.append(task)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(task, bench)

    monkeypatch.setattr(runner_mod, "execute", interrupt_second)
    result = invoke("sweep", *TINY, "--out", out)
    assert result.exit_code == 130, result.output
    line = next(line for line in result.output.splitlines() if "--resume" in line)
    command = line[line.index("lighthouse-bench sweep") :].rstrip(" .")
    assert "..." not in command
    monkeypatch.setattr(runner_mod, "execute", real)
    result = invoke(*shlex.split(command)[1:])
    assert result.exit_code == 0, result.output
    assert {r["status"] for r in read_rows(out / "results.csv", SWEEP)[0]} == {"ok"}


def test_version():
    """Catches a CLI without --version."""
    from lighthouse import __version__

    result = invoke("--version")
    assert result.exit_code == 0 and result.output.strip() == f"lighthouse-bench {__version__}"


@pytest.mark.parametrize(
    "command", ["sweep", "plot", "profile", "report", "check", "suites", "train", "quality", "recommend", "passkey"]
)
def test_help_has_no_placeholders_or_mid_sentence_breaks(command):
    """Catches `--help` showing <bool>/<str> placeholders and breaking the description mid-sentence (the
    docstrings' own line breaks kept)."""
    result = invoke(command, "--help")
    assert result.exit_code == 0, result.output
    assert not re.search(r"<(bool|str|int|float|path|file|list\[\w+\])>", result.output), result.output
    text = result.output.split("Options:")[0].splitlines()
    for line, following in zip(text, text[1:]):
        if line.strip() and following.strip():
            assert len(line) >= 55, f"line broken early: {line!r} / {following!r}"


def test_profile_records_its_options_and_prints_small_peaks(tmp_path, monkeypatch):
    """Catches a CPU profile printing "matmul 0.0 TFLOP/s" and writing machine.json with empty options and
    no equivalent command."""
    from lighthouse.bench import peaks

    monkeypatch.setattr(
        peaks,
        "measure_peaks",
        lambda device, dtype: {
            "device": "cpu",
            "dtype": "float32",
            "copy_gb_s": 12.34,
            "matmul_tflops": 0.0412,
            "measured_at": "",
            "torch": "",
        },
    )
    monkeypatch.setenv("LIGHTHOUSE_BENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "p"
    result = invoke(
        "profile",
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
        "8",
        "--warmup",
        "1",
        "--rep",
        "1",
        "--device",
        "cpu",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    assert "matmul 0.0412 TFLOP/s" in result.output
    info = json.loads((out / "machine.json").read_text())
    assert info["options"]["seq"] == "256" and info["options"]["topk"] == "128" and info["options"]["rep"] == 1
    assert info["equivalent_command"].startswith("lighthouse-bench profile --seq 256 --topk 128")
    assert "--out" in info["equivalent_command"]


def test_cli_reference_has_a_cpu_sized_profile_example(monkeypatch):
    """Catches a CLI reference (docs/cli.md) whose only profile examples are GPU-sized (96k, 256k tokens): a
    newcomer on a CPU needs one that finishes. The example's options must parse (the profile itself is stubbed
    out)."""
    import shlex

    from lighthouse.bench import profile as profile_mod

    reference = (ROOT / "docs" / "cli.md").read_text()
    lines = [
        line.split("#")[0].strip()
        for line in reference.splitlines()
        if line.startswith("lighthouse-bench profile") and "--device cpu" in line
    ]
    assert lines, "no `lighthouse-bench profile ... --device cpu` example in docs/cli.md"
    seen = []
    monkeypatch.setattr(profile_mod, "run_profile", lambda points, *a, **k: seen.extend(points) or 0)
    result = invoke(*shlex.split(lines[0])[1:])
    assert result.exit_code == 0, result.output
    assert seen and all(p.shape.n <= 8192 for p in seen)
