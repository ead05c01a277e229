"""CSV files with no lighthouse-bench format of their own (the lab scripts' tables): read whole, written whole.
The formats the commands write, with their keys and torn rows, are lighthouse.harness.tables."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence


def read_csv(path: Path) -> List[Dict[str, str]]:
    """The rows of a CSV, or none when the file is not there (e.g. a check that could not write its table)."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def write_csv(path: Path, rows: Iterable[dict], columns: Optional[Sequence[str]] = None) -> None:
    """The whole table, `columns` in that order (default: the first row's keys; other keys are left out). A
    script that rewrites it after every row keeps its rows when it is killed."""
    rows = list(rows)
    columns = list(columns if columns is not None else rows[0] if rows else [])
    with Path(path).open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
