"""`lighthouse-bench check`: the regression gate.

Compares a results.csv (measured now with the `ci` suite, or given with --results) against a recorded baseline
(reports/baselines/<gpu>.csv) and answers with an exit code:

    0  every gated figure holds
    1  a regression: a gated figure moved past the tolerance (after repeats), or Triton and PyTorch disagree
    2  could not measure or write: no CUDA where the suite must run, no baseline for this GPU (the message
       gives the command that records one) or an unreadable one, a baseline point missing from the results or
       not ok there, zero gated figures judged, an --out that cannot be written (checked before measuring),
       any error while measuring; always one line, never a traceback

Correctness: when the check measures (no --results) it also runs the Triton and the PyTorch path of every
Lighthouse point of the suite on the same inputs (forward + backward) and gates on identical selections and
relative errors of out, dq, dk, dv within PARITY_TOL (`parity.parity_rows`).

One module per job, from the bottom: figures (what is gated, a point's key and name, results read with the plain
figure), record (measure the suite, write the baseline), judge (verdicts, exit code), render (table, check.csv,
check.md) and command (`run_check`). This package's names below are its API (the CLI, scripts/gate_*.py, tests).
"""

from .command import run_check
from .figures import (
    AUTO,
    BASELINE_COLUMNS,
    BASELINES_DIR,
    DEFAULT_TOLERANCE,
    FLOOR_RATIO,
    GATED,
    HOST_MS,
    HOST_RATIO,
    PLAIN,
    POINT_COLUMNS,
    RECORD_RUNS,
    SPEEDUP,
    SPREAD,
    SPREAD_FACTOR,
    machine_info,
    point_key,
    point_name,
    read_results,
    with_derived,
    with_host_ratio,
    with_plain,
)
from .judge import (
    EXIT_OK,
    EXIT_REGRESSED,
    EXIT_UNMEASURED,
    MISSING,
    NOT_GATED,
    NOT_MEASURED,
    OK,
    REGRESSED,
    REPEATS,
    SKIPPED,
    Verdict,
    exit_code,
    gated_count,
    parity_verdicts,
    tolerance_for,
)
from .record import (
    auto_baseline,
    baseline_from_runs,
    baseline_rows,
    baseline_slug,
    point_flags,
    record_baseline,
    record_command,
)
from .render import markdown, write_outputs

__all__ = [
    "AUTO",
    "BASELINE_COLUMNS",
    "BASELINES_DIR",
    "DEFAULT_TOLERANCE",
    "EXIT_OK",
    "EXIT_REGRESSED",
    "EXIT_UNMEASURED",
    "FLOOR_RATIO",
    "GATED",
    "HOST_MS",
    "HOST_RATIO",
    "MISSING",
    "NOT_GATED",
    "NOT_MEASURED",
    "OK",
    "PLAIN",
    "POINT_COLUMNS",
    "RECORD_RUNS",
    "REGRESSED",
    "REPEATS",
    "SKIPPED",
    "SPEEDUP",
    "SPREAD",
    "SPREAD_FACTOR",
    "Verdict",
    "auto_baseline",
    "baseline_from_runs",
    "baseline_rows",
    "baseline_slug",
    "exit_code",
    "gated_count",
    "machine_info",
    "markdown",
    "parity_verdicts",
    "point_flags",
    "point_key",
    "point_name",
    "read_results",
    "record_baseline",
    "record_command",
    "run_check",
    "tolerance_for",
    "with_derived",
    "with_host_ratio",
    "with_plain",
    "write_outputs",
]
