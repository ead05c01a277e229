"""Trials of the regression gate against planted slowdowns (scripts/gate_slowdowns.py: the layer slowed by the
test-only switch; scripts/gate_kernel_plant.py: a spin inside one kernel). The plumbing both share: a baseline
recorded by `check --record`, every planted level judged by the check itself, round-robin under a time budget,
and the check's table turned into one trial row per gated figure. What is planted, and how, stays in each script.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

from ..harness.plain_csv import write_csv
from . import check

#: The columns of every trial table, before a script's own and the judgment's seconds (last: not printed).
COLUMNS = (
    "planted_pct",
    "judgment",
    "point",
    "figure",
    "baseline",
    "now",
    "change_pct",
    "limit",
    "verdict",
    "exit_code",
)


def trial_columns(*own: str) -> tuple:
    """A script's trial table: the shared columns, its own, and the seconds each judgment took."""
    return (*COLUMNS, *own, "seconds")


def add_trial_arguments(ap, planted_help: str, budget_s: float) -> None:
    """The command-line options every trial script takes (its --out and what it plants are its own)."""
    ap.add_argument("--suite", default="ci")
    ap.add_argument("--runs", type=int, default=3, help="runs of the suite in the baseline (default 3)")
    ap.add_argument("--judgments", type=int, default=3, help="checks per planted level (default 3)")
    ap.add_argument("--planted", default="0,5,10,20", help=f"{planted_help} in percent (default 0,5,10,20)")
    ap.add_argument("--tolerance", type=float, default=None, help="the check's --tolerance (default: its own)")
    ap.add_argument(
        "--budget-s",
        type=float,
        default=budget_s,
        help="start no new judgment when the time spent plus the slowest judgment so far would pass this",
    )


def trial_rows(check_rows, level: dict, layer_figure: str, layer_column: str, by_point=None) -> List[dict]:
    """The table rows of one judgment: `level`'s columns (planted share, judgment, exit code, ...) on each gated
    figure of the check's table, with its limit, the change the check measured of the layer's own
    `layer_figure` (as `layer_column`) and `by_point`'s columns ({column: {point: value}}) for the point. A check
    that wrote no table gives one 'no table' row, so its exit code is kept."""
    layer = {r["point"]: r["change_pct"] for r in check_rows if r["figure"] == layer_figure}
    out = []
    for r in check_rows:
        if r["figure"] not in check.GATED:
            continue
        limit = r["note"].split(";")[0].removeprefix("limit ").split(" (")[0] if r["note"].startswith("limit") else ""
        out.append(
            {
                **level,
                **{k: r[k] for k in ("point", "figure", "baseline", "now", "change_pct")},
                "limit": limit,
                "verdict": r["verdict"],
                layer_column: layer.get(r["point"], ""),
                **{column: values.get(r["point"], "") for column, values in (by_point or {}).items()},
            }
        )
    if not check_rows:
        out.append({**level, "verdict": "no table"})
    return out


class Trials:
    """One trial run in `out`: the check's console output in OUT/log.txt, the baseline in OUT/baseline.csv, a
    folder per judgment (OUT/planted-<pct>-<j>/)."""

    def __init__(self, out: Path, suite: str, tolerance: Optional[float]):
        from rich.console import Console

        out.mkdir(parents=True, exist_ok=True)
        self.out, self.suite, self.start = out, suite, time.perf_counter()
        self.baseline = out / "baseline.csv"
        self.log = (out / "log.txt").open("w")
        self.console = Console(file=self.log, width=200, color_system=None)
        self.tol = {} if tolerance is None else {"tolerance": tolerance}

    def record(self, runs: int) -> bool:
        """Record the baseline from `runs` runs of the suite (OUT/record/run-<i>/); on failure print the log's
        end and say so."""
        t0 = time.perf_counter()
        code = check.run_check(
            self.baseline,
            None,
            record=True,
            runs=runs,
            suite=self.suite,
            out=self.out / "record",
            console=self.console,
            plot=False,
            **self.tol,
        )
        print(
            f"baseline: {runs} runs of {self.suite} -> {self.baseline}: exit {code} ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
        if code != 0:
            self.log.close()
            print((self.out / "log.txt").read_text()[-3000:])
        return code == 0

    def judge(self, folder: Path) -> int:
        """One check against the baseline (repeats of points that look regressed included; parity, charts and
        the warm-up off): its exit code."""
        return check.run_check(
            self.baseline,
            None,
            suite=self.suite,
            out=folder,
            console=self.console,
            parity=False,
            plot=False,
            warm=False,
            **self.tol,
        )

    def round_robin(
        self,
        levels: Sequence[float],
        judgments: int,
        budget_s: float,
        judge_level: Callable[[float, int], List[dict]],
        table_path: Path,
        columns: Sequence[str],
    ) -> Tuple[List[dict], Optional[str]]:
        """Each level judged `judgments` times, round-robin, so that a run cut short still has every level: no
        judgment starts when the time spent plus the slowest judgment so far would pass `budget_s`.
        judge_level(pct, j) gives a judgment's table rows; the table is rewritten after each. Returns the table
        and, when the budget stopped it, where."""
        table, slowest = [], 0.0
        for j in range(1, judgments + 1):
            for pct in levels:
                spent = time.perf_counter() - self.start
                if spent + slowest > budget_s:
                    self.log.close()
                    return table, (
                        f"stopped at planted {pct:g}% judgment {j}: {spent:.0f} s spent, "
                        f"the slowest judgment took {slowest:.0f} s"
                    )
                t0 = time.perf_counter()
                table += judge_level(pct, j)
                slowest = max(slowest, time.perf_counter() - t0)
                write_csv(table_path, table, columns)
        self.log.close()
        return table, None

    def report(self, table: List[dict], columns: Sequence[str], summary: Sequence[str], stopped: Optional[str]) -> None:
        """Print the table (every column but the seconds), the per-level `summary`, and the totals."""
        print()
        print(" | ".join(columns[:-1]))
        for r in table:
            print(" | ".join(str(r.get(c, "")) for c in columns[:-1]))
        print()
        for line in summary:
            print(line)
        if stopped:
            print(stopped)
        total = time.perf_counter() - self.start
        print(f"total {total:.0f} s; table: {self.out / 'slowdowns.csv'}; baseline: {self.baseline}")


def exit_codes(table: List[dict], pct: float) -> list:
    """The exit codes of the judgments of one planted level, in judgment order."""
    judged = sorted({(r["judgment"], r["exit_code"]) for r in table if r["planted_pct"] == f"{pct:g}"})
    return [c for _, c in judged]
