"""reports/ stays lean: the size budget stated in reports/README.md holds, and no SVG copy of a chart is committed."""

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REPORTS = ROOT / "reports"
UNITS = {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30}


def stated_budget() -> int:
    """Bytes, from the line '**Budget: the whole `reports/` tree at most N MiB**' of reports/README.md."""
    text = (REPORTS / "README.md").read_text()
    found = re.findall(r"\*\*Budget: the whole `reports/` tree at most ([\d.]+) (KiB|MiB|GiB)\*\*", text)
    assert len(found) == 1, "reports/README.md must state the budget once, in the form of its 'Size budget' section"
    number, unit = found[0]
    return int(float(number) * UNITS[unit])


def tree_bytes(folder: Path) -> int:
    """The sum of the sizes of every file under `folder` (what `du -sb` counts, without the folders' own blocks);
    Python's bytecode caches are left out (never committed)."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in filenames)
    return total


def test_tree_bytes_counts_every_file(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.csv").write_bytes(b"1" * 1000)
    (tmp_path / "y.png").write_bytes(b"2" * 24)
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "z.pyc").write_bytes(b"3" * 99)
    assert tree_bytes(tmp_path) == 1024


def test_reports_stay_within_the_stated_budget():
    budget, used = stated_budget(), tree_bytes(REPORTS)
    assert used <= budget, (
        f"reports/ holds {used / 2**20:.1f} MiB, over its budget of {budget / 2**20:.1f} MiB "
        "(reports/README.md, 'Size budget': replace an older run, or raise the budget "
        "with the reason)"
    )


def test_no_svg_is_committed_in_reports():
    svgs = sorted(str(p.relative_to(ROOT)) for p in REPORTS.rglob("*.svg"))
    assert not svgs, f"charts are PNG only (reports/README.md, 'Size budget'): {svgs}"
