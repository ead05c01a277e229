"""The README documents every command and every option of `lighthouse-bench`."""

import re
from pathlib import Path

import typer.main

from lighthouse.cli import app

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_command_and_option_is_in_the_readme():
    group = typer.main.get_command(app)
    missing = []
    for name, command in group.commands.items():
        if f"lighthouse-bench {name}" not in README:
            missing.append(f"command {name}")
        for param in command.params:
            for opt in getattr(param, "opts", []) + getattr(param, "secondary_opts", []):
                if opt.startswith("--") and opt != "--help" and not re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", README):
                    missing.append(f"{name} {opt}")
    assert not missing, f"undocumented in README.md: {missing}"
