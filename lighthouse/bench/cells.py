"""Reading results CSVs back: one rule for every reader (report, check)."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Dict, List, Optional


def num(x) -> Optional[float]:
    """CSV cell -> float; empty, unparsable or NaN -> None (a missing number is not a zero)."""
    try:
        v = float(x) if x not in (None, "") else None
    except (TypeError, ValueError):
        return None
    return None if v is None or math.isnan(v) else v


def key(x) -> str:
    """A key cell in one spelling: '8192', '8192.0' and 8192 compare equal; text stays text."""
    v = num(x)
    if v is not None and v == int(v):
        return str(int(v))
    return "" if x is None else str(x).strip()


def read_csv(path: Path) -> List[Dict[str, str]]:
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))
