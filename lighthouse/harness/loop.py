"""The one resumable row loop under every command that measures: sweep, quality, passkey, train, profile.

A command hands the loop items (a point, a group of points sharing a dense reference, a model, an arm, a
seed); each item yields finished rows, and each row is appended to the command's table the moment it is
yielded (tables.append_row: fsynced; a torn row is set apart on reading). Everything around the rows is
the loop's, so every command keeps the same contract:

- --out is claimed before any work: a file, an unwritable folder or another run's table is a RunError (a
  ValueError naming --out; the CLI prints one `Error:` line and exits 2);
- --resume: the options recorded in machine.json must match (the error names the option that differs);
  rows of a final status are kept, oom, error and torn rows run again;
- an item that raises becomes rows of the status one classifier gives (failures.classify: oom on the CPU
  as on CUDA); one item never stops the run;
- a lost CUDA context stops the run (exit 1), Ctrl-C stops it (exit 130); both keep every finished row and
  print the exact command that continues the run;
- machine.json records where, from what code and with which options; the summary and the charts come last
  (a chart that fails never loses the rows).
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from rich.markup import escape

from . import machine
from .console import make_console
from .device import device_ok, free_memory
from .failures import classify as default_classify
from .outdir import writable_folder
from .tables import Table, append_row, cell, claim_results_file, keep_final, read_rows, row_key

MACHINE_FILE = "machine.json"
#: Exit codes: all done; rows failed (or the CUDA context was lost); nothing could run at all (every row
#: invalid or unsupported: the options, a usage error); interrupted (Ctrl-C, as a shell reports SIGINT).
EXIT_OK, EXIT_FAILED, EXIT_NOTHING_RAN, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_DEVICE_LOST = EXIT_FAILED
#: Option keys that say where the output goes, not what is measured: --resume ignores them.
RESUME_IGNORES = ("out", "resume")

Row = Dict[str, object]


class RunError(ValueError):
    """The run cannot start (--out in the way, nothing to resume, other options than the run recorded)."""


@dataclass
class Item:
    """One unit of work. `rows()` yields finished rows (written as they come); when it raises, the rows of
    `on_failure(status, reason)` are written instead (default: one row of `cells` with the status)."""

    label: str
    rows: Callable[[], Iterable[Row]]
    cells: Row = field(default_factory=dict)
    on_failure: Optional[Callable[[str, str], Iterable[Row]]] = None
    weight: float = 1.0


@dataclass
class Outcome:
    """What a run did: rows per status, and whether it stopped early (and why)."""

    counts: Dict[str, int] = field(default_factory=dict)
    interrupted: bool = False
    lost: Optional[str] = None
    failed: List[Tuple[str, str, str]] = field(default_factory=list)  # (item label, status, reason)

    @property
    def written(self) -> int:
        return sum(self.counts.values())


def counts_text(counts: Dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(counts.items()))


def status_counts(rows: Iterable[Row]) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for r in rows:
        counts[str(r.get("status") or "?")] = counts.get(str(r.get("status") or "?"), 0) + 1
    return counts


def resume_command(command_line: Sequence[str], out: Path) -> str:
    """The exact command that continues a run: the options as given, with --out OUT and --resume."""
    kept, skip = [], False
    for a in command_line:
        if skip:
            skip = False
        elif a == "--out":
            skip = True
        elif a != "--resume" and not a.startswith("--out="):
            kept.append(a)
    return shlex.join(kept + ["--out", str(out), "--resume"])


def _show(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _short(value, limit: int = 60) -> str:
    """An option value as it is written on the command line (lists comma-separated), cut to `limit`."""
    text = ",".join(_short(v, limit) for v in value) if isinstance(value, (list, tuple)) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def option_differences(recorded: dict, options: dict) -> List[str]:
    """The options that differ, each as `--name now (recorded: was)`; a grid (a list of option tables, as a
    suite gives) is compared key by key, so the message names the option and never dumps the grids."""
    out: List[str] = []
    for key in sorted(set(options) | set(recorded)):
        if key in RESUME_IGNORES or key not in recorded or _show(options.get(key)) == _show(recorded.get(key)):
            continue
        now, was = options.get(key), recorded.get(key)
        if isinstance(now, list) and isinstance(was, list) and all(isinstance(t, dict) for t in now + was):
            keys = sorted({k for t in now + was for k in t})
            for k in keys:
                a, b = [t.get(k) for t in now], [t.get(k) for t in was]
                if _show(a) != _show(b):
                    out.append(
                        f"--{k.replace('_', '-')} {_short([x for x in a if x is not None])} "
                        f"(recorded: {_short([x for x in b if x is not None])})"
                    )
            if not any(k for k in keys if _show([t.get(k) for t in now]) != _show([t.get(k) for t in was])):
                out.append(f"the number of grids of --suite ({len(now)}, recorded: {len(was)})")
        else:
            out.append(f"--{key.replace('_', '-')} {_short(now)} (recorded: {_short(was)})")
    return out


class RowLoop:
    """One run of a command into `out`: prepare() claims --out and reads what --resume keeps, run(items)
    measures, finish(outcome) reports and returns the exit code.

    command: the command's name (messages). table, filename: the table its rows go to (out/filename).
    options: the resolved option values (machine.json; --resume compares them). command_line: the command as
    given (argv-like; default: command_line.as_given()). resumable=False: the run is part of another command
    (check runs sweeps), which has no --resume: no resume command is printed. writer: False on the ranks of
    `sweep --cp` that do not write. show(row): a line to print per row (None: the progress bar alone).
    classify: exception -> (status, reason).
    """

    def __init__(
        self,
        command: str,
        out,
        table: Table,
        filename: str,
        *,
        resume: bool = False,
        options: Optional[dict] = None,
        argv: Optional[Sequence[str]] = None,
        command_line: Optional[Sequence[str]] = None,
        resumable: bool = True,
        console=None,
        writer: bool = True,
        show: Optional[Callable[[Row], Optional[str]]] = None,
        classify: Callable[[BaseException], Tuple[str, str]] = default_classify,
    ):
        from rich.console import Console

        self.command, self.out, self.table, self.resume = command, Path(out), table, resume
        self.path = self.out / filename
        self.machine_path = self.out / MACHINE_FILE
        self.options = {**(options or {}), "out": str(out), "resume": resume}
        if command_line is None and resumable:
            from .command_line import as_given

            command_line = as_given(argv=argv)
        self.argv, self.command_line = argv, list(command_line) if command_line else None
        self.resumable = resumable
        self.writer = writer
        self.console = (console or make_console()) if writer else Console(quiet=True)
        self.show, self.classify = show, classify
        self.previous: Optional[dict] = None
        self.info: Optional[dict] = None
        self._started = 0.0

    # ------------------------------------------------------------------------------ before any work
    def prepare(self, keep: Optional[Callable[[Row], bool]] = None) -> Dict[Tuple[str, ...], Row]:
        """Claim --out; with --resume check the options against machine.json and keep the rows of a final
        status (and, when given, for which keep(row) holds). Returns the kept rows by key. Raises RunError
        (or outdir.OutputFolderError), both ValueErrors naming the option."""
        if not self.writer:
            return {}
        if self.resume:
            self.previous = machine.read(self.machine_path)
            self.check_same_options()
        claim_results_file(self.out, self.path.name, self.resume, RunError)
        writable_folder(self.out)
        if not self.resume:
            return {}
        kept = keep_final(self.path, self.table)
        if keep is not None and not all(keep(r) for r in kept.values()):
            kept = {k: r for k, r in kept.items() if keep(r)}
            from .tables import write_rows

            write_rows(self.path, self.table, kept.values())
        return kept

    def check_same_options(self) -> None:
        """--resume continues the run recorded in machine.json: refuse options that would plan another one
        (its rows would land in the same table)."""
        recorded = (self.previous or {}).get("options") or {}
        differ = option_differences(recorded, self.options) if recorded else []
        if differ:
            raise RunError(
                f"--resume: the options differ from the run recorded in {self.out}: {'; '.join(differ)}. "
                "Resume with the recorded options or use another --out"
            )

    def key(self, cells: Row) -> Tuple[str, ...]:
        """The key a row of these cells has once written (what prepare()'s kept rows are keyed by)."""
        return row_key({k: cell(v) for k, v in cells.items()}, self.table)

    def begin(self, extra: Optional[dict] = None) -> dict:
        """machine.json at the start (the machine, the code, the options); `extra` is recorded with them."""
        if self.info is None:
            self.info = machine.collect(self.argv, self.options, self.command_line)
            self._started = time.perf_counter()
        self.info.update(extra or {})
        if self.writer:
            machine.write(self.machine_path, self.info, self.previous)
        return self.info

    # ------------------------------------------------------------------------------ the rows
    def write(self, row: Row, outcome: Outcome) -> None:
        if self.writer:
            append_row(self.path, self.table, row)
        status = str(row.get("status") or "ok")
        outcome.counts[status] = outcome.counts.get(status, 0) + 1
        line = self.show(row) if self.show else None
        if line:
            self.console.print(line, highlight=False, markup=False, soft_wrap=True)

    def run(self, items: Iterable[Item], *, total: Optional[float] = None, device=None, eta: bool = False) -> Outcome:
        """Measure every item (a generator is fine: items may be planned lazily). `total`: the sum of the
        items' weights (progress and ETA); `device`: checked after every failed row, so that a lost CUDA
        context stops the run instead of failing every later row."""
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.begin()
        outcome = Outcome()
        columns = [
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[rows]}"),
            TimeElapsedColumn(),
        ] + ([TextColumn("ETA"), TimeRemainingColumn()] if eta else [])
        progress = Progress(*columns, console=self.console, transient=False)
        try:
            with progress:
                bar = progress.add_task("starting", total=total or 1.0, rows="")
                for item in items:
                    progress.update(bar, description=item.label)
                    failed = self._run_item(item, outcome, device)
                    progress.update(bar, advance=item.weight, rows=counts_text(outcome.counts))
                    if failed and device is not None and not device_ok(device):
                        outcome.lost = f"the CUDA context is lost after {item.label}: {failed}"
                        break
        except KeyboardInterrupt:
            outcome.interrupted = True
        finally:
            if self.writer:
                machine.write(
                    self.machine_path,
                    machine.finish(self.info, time.perf_counter() - self._started, outcome.interrupted),
                    self.previous,
                )
        return outcome

    def _run_item(self, item: Item, outcome: Outcome, device) -> Optional[str]:
        """Run one item; returns the reason of its last failed row (None when every row is ok)."""
        failed = None
        try:
            for row in item.rows():
                self.write(row, outcome)
                if row.get("status") not in (None, "ok"):
                    failed = str(row.get("reason") or row.get("status"))
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - classified, recorded, never fatal
            status, reason = self.classify(exc)
            outcome.failed.append((item.label, status, reason))
            rows = (
                item.on_failure(status, reason)
                if item.on_failure
                else [{**item.cells, "status": status, "reason": reason}]
            )
            for row in rows:
                self.write(row, outcome)
            failed = reason
            if device is not None:
                free_memory(device)
        return failed

    # ------------------------------------------------------------------------------ after the rows
    def rows(self) -> List[Row]:
        """Every finished row of the table (this run's and the resumed ones; torn rows left out)."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return []
        return read_rows(self.path, self.table)[0]

    def continue_hint(self) -> str:
        return resume_command(self.command_line, self.out) if self.command_line and self.resumable else ""

    def finish(
        self,
        outcome: Outcome,
        *,
        summary: Optional[Callable[[List[Row]], None]] = None,
        charts: Optional[Callable[[Path], Iterable[Path]]] = None,
        ran: Optional[Callable[[List[Row]], bool]] = None,
    ) -> int:
        """Say how the run ended and return its exit code. summary(rows) prints the command's tables;
        charts(path) draws (not after a stop, nor when nothing ran); ran(rows) says whether anything that
        counts was measured (default: an ok row): else exit 2 when every row is invalid or unsupported
        (the options cannot run here), 1 when rows failed."""
        if not self.writer:
            return EXIT_DEVICE_LOST if outcome.lost else EXIT_INTERRUPTED if outcome.interrupted else EXIT_OK
        rows = self.rows()
        if summary is not None:
            summary(rows)
        every = status_counts(rows)
        new = f"; {outcome.written} new this run" if self.resume else ""
        hint = self.continue_hint()
        if outcome.lost or outcome.interrupted:
            head = f"[red]Stopped: {escape(outcome.lost)}[/]" if outcome.lost else "[yellow]Interrupted.[/]"
            self.console.print(
                f"{head} {outcome.written} rows written this run; every finished row is in "
                f"{self.path}" + ("; continue with:" if hint else "."),
                soft_wrap=True,
            )
            if hint:
                self.console.print(hint, soft_wrap=True, markup=False, highlight=False)
            return EXIT_DEVICE_LOST if outcome.lost else EXIT_INTERRUPTED
        if not (ran or _any_ok)(rows):
            reasons = sorted({str(r.get("reason") or r.get("status")) for r in rows if r.get("status") != "ok"})
            self.console.print(
                f"[red]no row ran ({counts_text(every) or 'no rows'}): {escape('; '.join(reasons[:3]))}[/]",
                soft_wrap=True,
            )
            self.console.print(f"results: {self.path}  ({counts_text(every) or 'no rows'}{new})", soft_wrap=True)
            return EXIT_NOTHING_RAN if rows and set(every) <= {"invalid", "unsupported"} else EXIT_FAILED
        if charts is not None:
            try:
                for path in charts(self.path):
                    self.console.print(f"chart: {path}", soft_wrap=True)
            except Exception as err:  # noqa: BLE001 - the rows are safe on disk; say so and carry on
                self.console.print(
                    f"[red]charts failed ({type(err).__name__}: {escape(str(err))}); the results are complete[/]",
                    soft_wrap=True,
                )
        self.console.print(f"results: {self.path}  ({counts_text(every) or 'no rows'}{new})", soft_wrap=True)
        return EXIT_OK


def _any_ok(rows: Sequence[Row]) -> bool:
    return any(r.get("status") in (None, "", "ok") for r in rows)
