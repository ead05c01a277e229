"""Render: the verdicts as the console table, the problem lines and the final line, and as out/check.csv (one
row per figure, for CI to upload) and out/check.md (the same table in Markdown, for a pull-request comment);
and the lines that report a recorded baseline.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Sequence, Tuple

from rich.markup import escape
from rich.table import Table

from ...harness.tables import CHECK, write_rows
from .figures import GATED, SPREAD, Row, point_name
from .judge import (
    EXIT_OK,
    EXIT_REGRESSED,
    MISSING,
    NOT_GATED,
    NOT_MEASURED,
    OK,
    REGRESSED,
    SKIPPED,
    Verdict,
    gated_count,
)


def check_table(verdicts: Sequence[Verdict], title: str) -> Table:
    table = Table(title=title)
    for col, just in (
        ("point", "left"),
        ("figure", "left"),
        ("baseline", "right"),
        ("now", "right"),
        ("change %", "right"),
        ("verdict", "left"),
        ("note", "left"),
    ):
        table.add_column(col, justify=just)
    style = {
        OK: "green",
        REGRESSED: "bold red",
        MISSING: "red",
        NOT_MEASURED: "red",
        NOT_GATED: "dim",
        SKIPPED: "yellow",
    }
    for v in verdicts:
        r = v.as_row()
        table.add_row(
            *(escape(r[c]) for c in ("point", "figure", "baseline", "now", "change_pct")),
            f"[{style.get(v.verdict, '')}]{escape(v.verdict)}[/]",
            escape(r["note"]),
        )
    return table


def markdown(verdicts: Sequence[Verdict], final: str) -> str:
    def cell(x: str) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    icon = {
        OK: "✅ ok",
        REGRESSED: "❌ **REGRESSED**",
        MISSING: "⚠️ missing",
        NOT_MEASURED: "⚠️ not measured",
        NOT_GATED: "not gated",
        SKIPPED: "skipped",
    }
    lines = [
        "## lighthouse-bench check",
        "",
        final,
        "",
        "| point | figure | baseline | now | change % | verdict | note |",
        "| --- | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for v in verdicts:
        r = v.as_row()
        lines.append(
            "| "
            + " | ".join(
                cell(x)
                for x in (
                    r["point"],
                    r["figure"],
                    r["baseline"],
                    r["now"],
                    r["change_pct"],
                    icon.get(v.verdict, v.verdict),
                    r["note"],
                )
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def final_line(code: int, verdicts: Sequence[Verdict], tolerance: float) -> str:
    gated = [v for v in verdicts if v.verdict not in (NOT_GATED, SKIPPED)]
    if code == EXIT_OK:
        return f"check: PASSED - all {len(gated)} gated figures hold (tolerance {tolerance * 100:g}%)"
    bad = [v for v in gated if v.verdict == REGRESSED]
    if code == EXIT_REGRESSED:
        return f"check: FAILED - {len(bad)} of {len(gated)} gated figures regressed (tolerance {tolerance * 100:g}%)"
    bad = [v for v in gated if v.verdict in (MISSING, NOT_MEASURED)]
    if not bad and gated_count(verdicts) == 0:
        return f"check: COULD NOT MEASURE - no gated figure ({', '.join(GATED)}) was judged: nothing was checked"
    return f"check: COULD NOT MEASURE - {len(bad)} of {len(gated)} gated figures have no measurement"


def problem_lines(verdicts: Sequence[Verdict]) -> List[str]:
    out = []
    for v in verdicts:
        if v.verdict == REGRESSED:
            out.append(
                f"REGRESSED: {v.point} {v.figure}: baseline {v.as_row()['baseline']} -> now {v.as_row()['now']}"
                + (f" ({v.change_pct:+.1f}%)" if v.change_pct is not None else "")
                + (f"; {v.note}" if v.note else "")
            )
        elif v.verdict in (MISSING, NOT_MEASURED):
            out.append(f"{v.verdict.upper()}: {v.point} {v.figure}: {v.note}")
    return list(dict.fromkeys(out))


def write_outputs(out: Path, verdicts: Sequence[Verdict], final: str) -> Tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / "check.csv", out / "check.md"
    write_rows(csv_path, CHECK, [v.as_row() for v in verdicts])
    md_path.write_text(markdown(verdicts, final))
    return csv_path, md_path


def recorded_lines(recorded: Sequence[Row]) -> List[str]:
    """One line per recorded baseline point: its gated figures (with their spread) and its median ms."""
    out = []
    for r in recorded:
        figures = " ".join(
            f"{f}={r[f] or '-'}" + (f" (spread {float(r[SPREAD[f]]) * 100:.3g}%)" if r[SPREAD[f]] else "")
            for f in GATED
        )
        out.append(f"  {point_name(r)}: {figures} median_ms={r['median_ms'] or '-'}")
    return out
