"""The GitHub workflows parse, and every `lighthouse-bench` call in them names a command and flags the CLI has."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
FILES = ["gpu-regression.yml", "ci.yml"]
SEPARATORS = {";", "&&", "||", "|", "&", ">", ">>", "2>&1"}


def load(name):
    return yaml.safe_load((WORKFLOWS / name).read_text())


def run_scripts(doc):
    for job in doc["jobs"].values():
        for step in job.get("steps", []):
            if "run" in step:
                yield step["run"]


def lighthouse_calls(script: str):
    """Each `lighthouse-bench ...` call in a shell script: its argument list, up to a shell separator."""
    script = re.sub(r"\\\n", " ", script)
    for line in script.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        tokens = shlex.split(line, comments=True)
        for i, tok in enumerate(tokens):
            if tok == "lighthouse-bench":
                args = []
                for t in tokens[i + 1 :]:
                    if t in SEPARATORS:
                        break
                    args.append(t)
                yield args


def all_calls():
    return [(name, args) for name in FILES for script in run_scripts(load(name)) for args in lighthouse_calls(script)]


def cli_commands():
    import typer.main

    from lighthouse.cli import app

    group = typer.main.get_command(app)
    return {name: cmd for name, cmd in group.commands.items()}


@pytest.mark.parametrize("name", FILES)
def test_workflow_parses(name):
    doc = load(name)
    triggers = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` key as True
    assert triggers, f"{name}: no triggers"
    assert doc["jobs"], f"{name}: no jobs"
    for job in doc["jobs"].values():
        assert job.get("runs-on") and job.get("steps")


def test_gpu_workflow_shape():
    doc = load("gpu-regression.yml")
    triggers = doc.get("on", doc.get(True))
    assert set(triggers) >= {"pull_request", "workflow_dispatch"}
    job = next(iter(doc["jobs"].values()))
    assert job["runs-on"] == ["self-hosted", "gpu"]
    uses = [s.get("uses", "") for s in job["steps"]]
    assert any(u.startswith("actions/upload-artifact@v4") for u in uses)
    assert any("github.event_name == 'pull_request'" in str(s.get("if", "")) for s in job["steps"])
    # the baseline it gates against is in the repository (auto: the file of the runner's GPU model)
    for _, args in all_calls():
        if args[0] == "check" and "--baseline" in args:
            given = args[args.index("--baseline") + 1]
            assert given == "auto" or (ROOT / given).is_file()
    # the last step turns a failed gate into a failed job
    assert "steps.check.outputs.exit_code" in job["steps"][-1]["run"]


def test_the_workflows_call_the_commands_they_need():
    calls = {args[0] for _, args in all_calls() if args}
    assert {"check", "report"} <= calls


def test_every_lighthouse_bench_command_exists():
    from lighthouse.cli import app

    registered = {c.name or c.callback.__name__ for c in app.registered_commands}
    for name, args in all_calls():
        assert args, f"{name}: lighthouse-bench without a command"
        assert args[0] in registered, (
            f"{name}: `lighthouse-bench {args[0]}` is not a command of the CLI ({sorted(registered)})"
        )


def test_every_flag_is_accepted():
    commands = cli_commands()
    for name, args in all_calls():
        cmd = commands.get(args[0])
        if cmd is None:
            pytest.fail(f"{name}: `lighthouse-bench {args[0]}` is not a command of the CLI")
        accepted = {"--help"}
        for p in cmd.params:
            accepted.update(o for o in list(p.opts) + list(p.secondary_opts) if o.startswith("-"))
        for tok in args[1:]:
            if tok.startswith("-"):
                flag = tok.split("=", 1)[0]
                assert flag in accepted, (
                    f"{name}: `lighthouse-bench {args[0]}` does not accept {flag} ({sorted(accepted)})"
                )


def test_pytest_markers_used_by_the_workflows_are_registered():
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        tomllib = pytest.importorskip("tomli")
    markers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"].get("markers", [])
    names = {m.split(":", 1)[0].strip() for m in markers}
    text = re.sub(r"python3?\s+-m\s+\S+", "", (WORKFLOWS / "gpu-regression.yml").read_text())  # `python -m pip`
    used_markers = re.findall(r"\s-m\s+(\w+)", text)
    assert "gpu" in used_markers
    for used in used_markers:
        assert used in names, f"pytest marker {used!r} is not registered in pyproject.toml"
