"""Judge: compare the figures measured now with the baseline's, one verdict per gated figure of every baseline
point, plus the Triton/PyTorch parity verdicts; and the exit code those verdicts give.

Noise (`tolerance_for`): each figure is judged against max(--tolerance, SPREAD_FACTOR x the spread its baseline
runs showed), so a noisy point gets the room its own runs showed and a steady one stays tight. A point that looks
regressed is measured again (`remeasure`) up to REPEATS times and judged on the best of its measurements: a noisy
neighbour on the GPU should not fail a pull request, a real regression fails every repeat. Zero gated figures
judged is never a pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

from ...harness.tables import PARITY_FIGURES
from ..parity import PARITY_TOL
from .figures import (
    BASELINE_IMPL,
    GATED,
    SHAPE_COLUMNS,
    SHOWN_TIMES,
    SPREAD,
    SPREAD_FACTOR,
    Remeasure,
    Row,
    fmt,
    lighthouse_rows,
    norm,
    num,
    point_key,
    point_name,
    with_derived,
)

#: The verdicts, and the exit codes they give (exit_code): 0 every gated figure holds, 1 a regression, 2 a figure
#: could not be judged.
OK, REGRESSED, MISSING, NOT_MEASURED, NOT_GATED, SKIPPED = (
    "ok",
    "REGRESSED",
    "missing",
    "not measured",
    "not gated",
    "skipped",
)
EXIT_OK, EXIT_REGRESSED, EXIT_UNMEASURED = 0, 1, 2
#: How many times a point that looks regressed is measured again before it is judged.
REPEATS = 2


@dataclass
class Verdict:
    point: str
    figure: str
    baseline: Optional[float] = None
    now: Optional[float] = None
    verdict: str = OK
    note: str = ""
    baseline_text: str = ""
    now_text: str = ""

    @property
    def change_pct(self) -> Optional[float]:
        if self.baseline is None or self.now is None or self.baseline == 0:
            return None
        return (self.now / self.baseline - 1.0) * 100.0

    def as_row(self) -> dict:
        return {
            "point": self.point,
            "figure": self.figure,
            "baseline": self.baseline_text or fmt(self.baseline),
            "now": self.now_text or fmt(self.now),
            "change_pct": fmt(self.change_pct, "+.1f"),
            "verdict": self.verdict,
            "note": self.note,
        }


def _regressed(figure: str, base: float, now: float, tolerance: float) -> bool:
    if GATED[figure]:
        return now < base * (1.0 - tolerance)
    return now > base * (1.0 + tolerance)


def tolerance_for(base: Row, figure: str, tolerance: float) -> float:
    """The tolerance of one figure of one baseline point: max(tolerance, SPREAD_FACTOR x its recorded spread)."""
    spread = num(base.get(SPREAD[figure]))
    return max(tolerance, SPREAD_FACTOR * spread) if spread is not None else tolerance


def _limit_note(base: Row, figure: str, tolerance: float) -> str:
    tol = tolerance_for(base, figure, tolerance)
    note = f"limit {'-' if GATED[figure] else '+'}{tol * 100:.3g}%"
    spread, runs = num(base.get(SPREAD[figure])), norm(base.get("runs"))
    if spread is not None:
        note += f" (baseline: median of {runs or '?'} runs, spread {spread * 100:.3g}%)"
    return note


@dataclass
class _Point:
    """One baseline point being judged: its baseline record and every measurement of it so far."""

    base: Row
    measurements: List[Row] = field(default_factory=list)

    def best(self, figure: str) -> Optional[float]:
        values = [v for v in (num(m.get(figure)) for m in self.measurements) if v is not None]
        if not values:
            return None
        return max(values) if GATED[figure] else min(values)

    def looks_regressed(self, tolerance: float) -> bool:
        for figure in GATED:
            base, now = num(self.base.get(figure)), self.best(figure)
            if (
                base is not None
                and now is not None
                and _regressed(figure, base, now, tolerance_for(self.base, figure, tolerance))
            ):
                return True
        return False


def _related_rows(rows: Sequence[Row], point: Row) -> List[Row]:
    """The rows a point's figures come from: its Lighthouse row, the dense cuDNN row of its shape and pass,
    and its floor row."""
    shape = tuple(norm(point.get(c)) for c in SHAPE_COLUMNS)
    lh_cfg = tuple(norm(point.get(c)) for c in ("levels", "pooling", "topk", "scorer"))
    out = [point]
    for r in rows:
        if r is point or tuple(norm(r.get(c)) for c in SHAPE_COLUMNS) != shape:
            continue
        if r.get("impl") == BASELINE_IMPL or (
            r.get("kind") == "floor"
            and tuple(norm(r.get(c)) for c in ("levels", "pooling", "topk", "scorer")) == lh_cfg
        ):
            out.append(r)
    return out


def _ok_row_of(rows: Sequence[dict], key: Tuple[str, ...]) -> Optional[dict]:
    hits = [
        r
        for r in rows
        if r.get("kind", "lighthouse") == "lighthouse" and point_key(r) == key and r.get("status") == "ok"
    ]
    return hits[-1] if hits else None


def judge(
    baseline: Sequence[Row],
    results: Sequence[Row],
    tolerance: float,
    remeasure: Optional[Remeasure] = None,
    repeats: int = REPEATS,
) -> List[Verdict]:
    """Every gated figure of every baseline point, with its verdict (plus the not-gated median ms)."""
    found = lighthouse_rows(with_derived(results))
    verdicts: List[Verdict] = []
    for base in baseline:
        key, name = point_key(base), point_name(base)
        row = found.get(key)
        # a figure is judged when the baseline or the results hold it: a baseline recorded before a figure
        # existed cannot silently leave it unjudged
        figures = [
            f for f in GATED if num(base.get(f)) is not None or (row is not None and num(row.get(f)) is not None)
        ]
        if row is None:
            verdicts += [
                Verdict(name, f, num(base.get(f)), verdict=MISSING, note="point not in the results") for f in figures
            ]
            continue
        if row.get("status") != "ok":
            reason = f"status {row.get('status') or '?'}" + (f": {row.get('reason')}" if row.get("reason") else "")
            verdicts += [Verdict(name, f, num(base.get(f)), verdict=NOT_MEASURED, note=reason) for f in figures]
            continue
        point = _Point(base, [row])
        repeated, repeat_failures = 0, []
        if remeasure is not None:
            while repeated < repeats and point.looks_regressed(tolerance):
                repeated += 1
                try:
                    again = _ok_row_of(with_derived(remeasure(_related_rows(results, row))), key)
                except Exception as err:  # noqa: BLE001 - a failed repeat leaves the first measurement standing
                    again, why = None, f"{type(err).__name__}: {err}"
                else:
                    why = "no ok row"
                if again is None:
                    repeat_failures.append(why)
                else:
                    point.measurements.append(again)
        for figure in figures:
            b, now = num(base.get(figure)), point.best(figure)
            notes = []
            if repeated:
                notes.append(
                    f"best of {len(point.measurements)} measurements ({repeated} repeat{'s' if repeated > 1 else ''})"
                )
            if repeat_failures:
                notes.append("repeat failed: " + "; ".join(repeat_failures))
            if b is None:
                verdicts.append(
                    Verdict(
                        name,
                        figure,
                        None,
                        now,
                        NOT_MEASURED,
                        f"{figure} is not in the baseline (recorded before it was gated): record it again",
                    )
                )
                continue
            if now is None:
                verdicts.append(Verdict(name, figure, b, verdict=NOT_MEASURED, note=f"no {figure} in the results row"))
                continue
            verdict = REGRESSED if _regressed(figure, b, now, tolerance_for(base, figure, tolerance)) else OK
            verdicts.append(
                Verdict(name, figure, b, now, verdict, "; ".join([_limit_note(base, figure, tolerance)] + notes))
            )
        for shown in SHOWN_TIMES:
            values = [v for v in (num(m.get(shown)) for m in point.measurements) if v is not None]
            verdicts.append(
                Verdict(
                    name,
                    shown,
                    num(base.get(shown)),
                    min(values) if values else None,
                    NOT_GATED,
                    "absolute time: shown, not gated (differs across machines)",
                )
            )
    return verdicts


def parity_verdicts(rows: Sequence[dict], tol: float = PARITY_TOL) -> List[Verdict]:
    out = []
    for r in rows:
        name = point_name(r)
        if r.get("status") != "ok":
            out.append(
                Verdict(name, "parity", verdict=NOT_MEASURED, note=f"status {r.get('status')}: {r.get('reason')}")
            )
            continue
        same = r.get("same_selection")
        out.append(
            Verdict(
                name,
                "parity: selection",
                verdict=OK if same else REGRESSED,
                baseline_text="identical",
                now_text="identical" if same else "DIFFERENT",
                note=r.get("reason") or "",
            )
        )
        for f in PARITY_FIGURES:
            v = r.get(f"rel_{f}")
            out.append(
                Verdict(
                    name,
                    f"parity: rel err {f}",
                    verdict=OK if v is not None and v <= tol else REGRESSED,
                    baseline_text=f"<= {tol:g}",
                    now_text=fmt(v, ".3g"),
                )
            )
    return out


def exit_code(verdicts: Sequence[Verdict]) -> int:
    """1 when anything regressed (a definite finding wins), else 2 when anything could not be judged, else 0."""
    kinds = {v.verdict for v in verdicts}
    if REGRESSED in kinds:
        return EXIT_REGRESSED
    if kinds & {MISSING, NOT_MEASURED} or gated_count(verdicts) == 0:
        return EXIT_UNMEASURED
    return EXIT_OK


def gated_count(verdicts: Sequence[Verdict]) -> int:
    """How many performance figures were actually judged (ok or regressed): 0 is never a pass."""
    return sum(1 for v in verdicts if v.figure in GATED and v.verdict in (OK, REGRESSED))
