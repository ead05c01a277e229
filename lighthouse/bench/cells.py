"""Reading numbers back from results CSVs: one rule for every reader (report, check, summary)."""

from __future__ import annotations

import math
from typing import Optional


def num(x) -> Optional[float]:
    """CSV cell -> float; empty, unparsable or NaN -> None (a missing number is not a zero)."""
    try:
        v = float(x) if x not in (None, "") else None
    except (TypeError, ValueError):
        return None
    return None if v is None or math.isnan(v) else v
