"""The documentation stays true: docs/cli.md names every command and option of `lighthouse-bench`, docs/results.md
every column of every table, the README stays short and every link in it and in docs/ resolves."""

import re
from pathlib import Path

import typer.main

from lighthouse.cli import app
from lighthouse.harness import tables

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README_LINES = 250  # issue 23: a README of at most 250 lines, the reference in docs/


def _named(text: str, word: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


def test_every_command_and_option_is_in_the_cli_reference():
    reference = (DOCS / "cli.md").read_text()
    group = typer.main.get_command(app)
    missing = []
    for name, command in group.commands.items():
        if f"lighthouse-bench {name}" not in reference:
            missing.append(f"command {name}")
        for param in command.params:
            for opt in getattr(param, "opts", []) + getattr(param, "secondary_opts", []):
                if opt.startswith("--") and opt != "--help" and not _named(reference, opt):
                    missing.append(f"{name} {opt}")
    assert not missing, f"undocumented in docs/cli.md: {missing}"


def test_every_column_of_every_table_is_in_the_results_reference():
    reference = (DOCS / "results.md").read_text()
    declared = {name: t for name, t in vars(tables).items() if isinstance(t, tables.Table)}
    assert len(declared) >= 10, sorted(declared)  # the reader below would pass vacuously without them
    missing = sorted({f"{name}.{c}" for name, t in declared.items() for c in t.columns if f"`{c}`" not in reference})
    assert not missing, f"columns not named (in backticks) in docs/results.md: {missing}"


def test_readme_is_short_and_has_a_table_of_contents_into_docs():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= README_LINES
    pages = sorted(p.name for p in DOCS.glob("*.md"))
    unlinked = [p for p in pages if f"(docs/{p}" not in readme]
    assert pages and not unlinked, f"docs pages the README does not link: {unlinked}"


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, flags=re.M)}


def test_slug_matches_github_on_known_headings():
    assert _slug("The gate (lighthouse/bench/check.py)") == "the-gate-lighthousebenchcheckpy"
    assert (
        _slug("`lighthouse-bench sweep --cp W` (launched with torchrun)")
        == "lighthouse-bench-sweep---cp-w-launched-with-torchrun"
    )
    assert _slug("Headline figures (one H200)") == "headline-figures-one-h200"


def test_every_link_in_the_readme_and_docs_resolves():
    broken = []
    for page in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            file, _, anchor = target.partition("#")
            dest = (page.parent / file).resolve() if file else page
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, broken
