"""The break-even point: per configuration, the smallest sequence length N from which Lighthouse beats dense.

It is the first figure a user asks for, and the one published sparse-attention benchmarks state. From a sweep's
rows, per configuration (everything that names a Lighthouse point but N and k: a suite such as `paper` grows k
with N, so each N is judged by its best k there, as the report's headline does) and per clock, the speedups over
the dense baseline at the measured N are joined: the break-even N is where the speedup crosses 1.0 for the last
time (above it Lighthouse wins at every measured N), interpolated linearly in log N between the two measured N
around the crossing. Below the shortest N measured, or past the longest, it is not known and is said so.
Pure functions of CSV row dicts (no drawing, no torch), so they are tested on hand-made rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from ..harness import tables

#: What a configuration is: a point without N and k, per implementation and pass.
CONFIG_COLUMNS = ("impl", "pass", *tables.SHAPE_COLUMNS, *(c for c in tables.CONFIG_COLUMNS if c != "topk"))
INTERPOLATED, BELOW, NOT_REACHED = "interpolated", "below the shortest N", "not reached"


@dataclass(frozen=True)
class BreakEven:
    """status INTERPOLATED: n lies between lo and hi (measured N, speedup <= 1 at lo, > 1 at hi). BELOW: faster
    at every N measured (n None, hi the shortest). NOT_REACHED: not faster at the longest N (lo the longest)."""

    status: str
    n: Optional[float] = None
    lo: Optional[int] = None
    hi: Optional[int] = None

    def describe(self) -> str:
        if self.status == INTERPOLATED:
            return (
                f"{tables.fmt_size(round(self.n)) if self.n >= 1024 else round(self.n)} "
                f"(between {tables.fmt_size(self.lo)} and {tables.fmt_size(self.hi)})"
            )
        if self.status == BELOW:
            return f"below {tables.fmt_size(self.hi)} (faster at every N measured)"
        return f"not reached by {tables.fmt_size(self.lo)}"


def break_even(speedups: Mapping[int, float]) -> Optional[BreakEven]:
    """The break-even of one configuration from its speedup at each measured N (None: nothing measured)."""
    ns = sorted(n for n, s in speedups.items() if s is not None and s > 0)
    if not ns:
        return None
    if speedups[ns[-1]] <= 1.0:
        return BreakEven(NOT_REACHED, lo=ns[-1])
    i = len(ns) - 1
    while i > 0 and speedups[ns[i - 1]] > 1.0:
        i -= 1
    if i == 0:
        return BreakEven(BELOW, hi=ns[0])
    lo, hi = ns[i - 1], ns[i]
    s_lo, s_hi = speedups[lo], speedups[hi]
    t = (1.0 - s_lo) / (s_hi - s_lo)
    return BreakEven(INTERPOLATED, math.exp(math.log(lo) + t * (math.log(hi) - math.log(lo))), lo, hi)


def configurations(rows: Sequence[dict], baseline: str, clock: str) -> Dict[Tuple[str, ...], Dict[int, float]]:
    """Per configuration, its best speedup over `baseline` (CSV impl, e.g. sdpa_cudnn) at each N on `clock`."""
    col = tables.clock_column(f"speedup_vs_{baseline}", clock)
    out: Dict[Tuple[str, ...], Dict[int, float]] = {}
    for r in rows:
        if r.get("kind") != "lighthouse" or r.get("status") != "ok":
            continue
        s, n = tables.num(r.get(col)), tables.num(r.get("n"))
        if s is None or n is None:
            continue
        per_n = out.setdefault(tuple(tables.norm(r.get(c)) for c in CONFIG_COLUMNS), {})
        per_n[int(n)] = max(s, per_n.get(int(n), s))
    return out


def break_even_rows(rows: Sequence[dict], baseline: str) -> List[dict]:
    """One dict per configuration: its columns, the N measured, and per clock the BreakEven (None where that clock
    has no speedup: an older file has no host-ahead column)."""
    per_clock = {clock: configurations(rows, baseline, clock) for clock in tables.CLOCKS}
    keys = sorted(set().union(*per_clock.values()), key=_order)
    out = []
    for key in keys:
        measured = sorted(set().union(*(per_clock[c].get(key, {}) for c in tables.CLOCKS)))
        out.append(
            {
                **dict(zip(CONFIG_COLUMNS, key)),
                "n_measured": measured,
                **{clock: break_even(per_clock[clock].get(key, {})) for clock in tables.CLOCKS},
            }
        )
    return out


def _order(key: Tuple[str, ...]):
    return tuple(int(x) if x.isdigit() else 0 for x in key[2:]) + key
