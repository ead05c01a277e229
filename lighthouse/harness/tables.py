"""The one owner of every results format: CSV schemas, row keys, vocabulary, reading, writing, numbers.

Every command that writes a table (sweep's results.csv, profile.csv, check's check.csv/parity.csv and the
baseline file) declares it here as a `Table` and goes through `append_row` (one row at a time, crash-safe) or
`write_rows` (a whole file at once); every reader goes through `read_rows`, which sets torn rows apart, so a
row a crash cut short is never taken for a finished one. Nothing else declares a column tuple.

Pure Python (csv, os): importing this costs nothing, so the CLI can use it before torch is loaded.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from . import baselines

# ------------------------------------------------------------------------------------------- vocabulary
PASSES = ("fwd", "bwd", "fwdbwd")
#: Lighthouse paths (option value -> CSV `impl`).
IMPLS = {"torch": "lighthouse_torch", "triton": "lighthouse_triton"}
#: Dense baselines (option value -> CSV `impl`), in the order they are measured and charted (harness.baselines).
BASELINES = {b.name: b.csv for b in baselines.REGISTRY}
#: CSV `impl` of dense SDPA on the S selected entries alone (what Lighthouse cannot beat).
FLOOR = "floor"
#: Row kinds (CSV `kind`).
KINDS = ("dense", "floor", "lighthouse")
#: Short dtype names (CSV `dtype`) and accepted spellings.
DTYPES = ("bf16", "fp16", "fp32")
DTYPE_ALIASES = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float32": "fp32", "float": "fp32"}
#: Row statuses (CSV `status`) ...
STATUSES = ("ok", "oom", "invalid", "unsupported", "error")
#: ... and those --resume does not run again (oom and error rows are retried).
FINAL = ("ok", "invalid", "unsupported")

# ------------------------------------------------------------------------------------------- column groups
#: The attention's heads: what a point's tensors are besides N and the dtype.
HEAD_COLUMNS = ("batch", "heads", "kv_heads", "head_dim")
#: What a dense baseline depends on besides N and the pass.
SHAPE_COLUMNS = ("dtype", *HEAD_COLUMNS)
#: A Lighthouse configuration. `rope` (where RoPE is applied, docs/rope.md) came after the first files: a file
#: without it holds `pre` configurations (ROPE_DEFAULT).
CONFIG_COLUMNS = ("levels", "pooling", "topk", "scorer", "rope")
#: A Lighthouse point (N, configuration and shape), as reports and profiles name it.
POINT_COLUMNS = ("n", "topk", "levels", "pooling", "scorer", "rope", *SHAPE_COLUMNS)
#: The same point where it was measured, in the file order of the sweep and quality tables.
MEASURED_POINT_COLUMNS = ("device", "dtype", "n", *HEAD_COLUMNS, *CONFIG_COLUMNS)


def config_cells(config) -> dict:
    """The CONFIG_COLUMNS cells of anything that carries them as attributes (a point, a training preset); all
    empty (None) for a dense row (config None)."""
    return {c: None if config is None else getattr(config, c) for c in CONFIG_COLUMNS}


#: The row of the dense baseline a Lighthouse row is compared with: same pass, N and shape.
DENSE_MATCH_COLUMNS = ("pass", "n", *SHAPE_COLUMNS)
#: A timed row's outcome and its times (median and spread over `reps` repetitions), in file order.
TIMED_COLUMNS = ("status", "reason", "median_ms", "p20_ms", "p80_ms", "reps")
SPEEDUP_COLUMNS = tuple(f"speedup_vs_{name}" for name in BASELINES.values())
FINISHED_AT = "finished_at"
#: What a file written before the `rope` column holds in it: every configuration then was `pre`.
ROPE_DEFAULT = (("rope", "pre"),)

# ------------------------------------------------------------------------------------------- the two clocks
#: Every timed row has two clocks (lighthouse/bench/clocks.py): as launched (CUDA events around the step as the
#: host issues it, the GPU's waits for launches included) and host ahead (the GPU held until the host has queued
#: the whole step: the kernels' own time). The as-launched columns keep their first names (median_ms,
#: speedup_vs_*, floor_ratio), so every older file reads as it did; the host-ahead ones carry the clock's name
#: first. Lighthouse and dense are only ever compared on the same clock.
LAUNCHED, HOST_AHEAD = "launched", "host_ahead"
CLOCKS = {LAUNCHED: "as launched", HOST_AHEAD: "host ahead"}


def clock_column(column: str, clock: str) -> str:
    """The column of `column` (median_ms, p20_ms, speedup_vs_sdpa_cudnn, floor_ratio, ...) on `clock`."""
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    return column if clock == LAUNCHED else f"{clock}_{column}"


#: Host-ahead columns of a sweep row, and the host's own time to issue one step (median over the host-ahead
#: repetitions that did not time out) and how many host-ahead repetitions timed out (the step waited on the GPU).
HOST_AHEAD_TIMES = tuple(clock_column(c, HOST_AHEAD) for c in ("median_ms", "p20_ms", "p80_ms"))
HOST_MS, HOST_AHEAD_TIMEOUTS = "host_ms_per_call", "host_ahead_timeouts"
HOST_AHEAD_FIGURES = tuple(clock_column(c, HOST_AHEAD) for c in (*SPEEDUP_COLUMNS, "floor_ratio"))
#: Added after the first H200 files: those read with these columns empty (not measured then).
CLOCK_COLUMNS = (*HOST_AHEAD_TIMES, HOST_MS, HOST_AHEAD_TIMEOUTS, *HOST_AHEAD_FIGURES)


@dataclass(frozen=True)
class Table:
    """One CSV schema: its name (for messages), its columns in file order, and the columns identifying a row."""

    name: str
    columns: tuple
    key: tuple
    #: (column, value) pairs for columns added after files were written: a file without the column reads as
    #: if every row had the value (an old results.csv, written before `cuda_graph`, was never graphed).
    defaults: tuple = ()
    #: The same for columns of a Lighthouse configuration (`rope`): only a row that holds a configuration (a
    #: `topk`) takes the value; a dense row of such a file reads empty there, as a new dense row is written.
    config_defaults: tuple = ()

    def default_of(self, column: str, row: dict) -> str:
        """The value a row without `column` reads with ("" when the table has no default for it)."""
        for c, value in self.config_defaults:
            if c == column:
                return value if str(row.get("topk") or "").strip() else ""
        return dict(self.defaults).get(column, "")


class ResultsFormatError(ValueError):
    """A file that is not the lighthouse-bench table it should be (empty, binary, another CSV)."""


#: results.csv of `sweep`: long format, one row per (point, implementation, pass), always these columns, so
#: files from different sweeps concatenate and a resumed sweep appends to its own file.
SWEEP = Table(
    "sweep results file",
    columns=(
        "impl",
        "kind",
        "pass",
        *MEASURED_POINT_COLUMNS,
        "s_sel",
        "sdpa_backend",
        "cuda_graph",
        *TIMED_COLUMNS,
        "first_call_ms",
        "peak_mem_gib",
        "dense_tflops",
        "eff_tflops",
        *SPEEDUP_COLUMNS,
        "floor_ratio",
        *CLOCK_COLUMNS,
        "seed",
        FINISHED_AT,
    ),
    key=(
        "impl",
        "pass",
        *MEASURED_POINT_COLUMNS,
        "cuda_graph",
    ),
    # `sweep --cuda-graph`: timed through CUDA graphs (True) or eagerly; the second clock came later (empty)
    defaults=(("cuda_graph", "False"), *((c, "") for c in CLOCK_COLUMNS)),
    config_defaults=ROPE_DEFAULT,
)

#: The profile's `ms` is the as-launched clock (its first meaning); these came later (files before them read them
#: empty): the stage on the host-ahead clock (its kernels alone), its distance to the floor on that clock, the
#: host's own time to issue it, and how many host-ahead repetitions waited on the GPU.
PROFILE_HOST_AHEAD_MS = clock_column("ms", HOST_AHEAD)
PROFILE_HOST_AHEAD_RATIO = clock_column("floor_ratio", HOST_AHEAD)
PROFILE_CLOCK_COLUMNS = (PROFILE_HOST_AHEAD_MS, PROFILE_HOST_AHEAD_RATIO, HOST_MS, HOST_AHEAD_TIMEOUTS)
#: profile.csv of `profile`: per point and pass, one row per stage plus the summary rows (PROFILE_SUMMARY).
PROFILE = Table(
    "profile file",
    columns=(
        *POINT_COLUMNS,
        "impl",
        "s_sel",
        "pass",
        "stage",
        "ms",
        "share",
        "bytes",
        "flops",
        "floor_ms",
        "floor_kind",
        "floor_ratio",
        "device",
        *PROFILE_CLOCK_COLUMNS,
        FINISHED_AT,
    ),
    key=("impl", *POINT_COLUMNS, "pass", "stage"),
    defaults=tuple((c, "") for c in PROFILE_CLOCK_COLUMNS),
    config_defaults=ROPE_DEFAULT,
)
#: Profile rows that summarise a pass rather than time a stage.
PROFILE_TOTAL, PROFILE_MEASURED, PROFILE_GPU_BUSY = "total", "measured", "gpu_busy"
PROFILE_SUMMARY = (PROFILE_TOTAL, PROFILE_MEASURED, PROFILE_GPU_BUSY)

#: The point of a `check` baseline: the sweep key without the device (the baseline comes from another
#: machine of the same GPU model).
CHECK_POINT_COLUMNS = tuple(c for c in SWEEP.key if c not in ("device", "cuda_graph"))  # check times eagerly
#: The clock the gate judges: host ahead, the kernels' own time, so that a slower kernel cannot hide in time the
#: GPU spent waiting for launches; the host's own time per call is gated as a figure of its own (HOST_RATIO).
CHECK_CLOCK = HOST_AHEAD
CHECK_SPEEDUP = clock_column("speedup_vs_sdpa_cudnn", CHECK_CLOCK)
CHECK_FLOOR_RATIO = clock_column("floor_ratio", CHECK_CLOCK)
#: Plain PyTorch dense SDPA ms / Lighthouse ms (REFERENCE rows: no project code in the reference), per clock.
PLAIN_SPEEDUP = "speedup_vs_plain_sdpa"
CHECK_PLAIN = clock_column(PLAIN_SPEEDUP, CHECK_CLOCK)
#: The host's time to issue one Lighthouse step over its time to issue the stock SDPA's two steps of the point (dense
#: cuDNN at N and the floor, alone on the S rows), all measured in the same run by the same timer: the host's own
#: speed, which moves between lent machines and between runs on one (+19-33% in one check,
#: reports/h200/check/check-after-s5-first/), cancels.
HOST_RATIO = "host_ms_ratio_vs_sdpa"
CHECK_GATED = (CHECK_SPEEDUP, CHECK_FLOOR_RATIO, CHECK_PLAIN, HOST_RATIO)
CHECK_MACHINE_COLUMNS = ("gpu", "torch", "triton", "commit", "recorded_at")


def spread_column(figure: str) -> str:
    """Baseline column of a gated figure's relative spread over the recorded runs ((max - min) / median)."""
    return f"{figure}_spread"


#: reports/baselines/<gpu>.csv of `check --record`: per point the median of each gated figure over the
#: recorded runs, its spread, the number of runs, median times (not gated) and the machine.
BASELINE = Table(
    "check baseline",
    columns=(
        *CHECK_POINT_COLUMNS,
        *CHECK_GATED,
        *(spread_column(f) for f in CHECK_GATED),
        "runs",
        "median_ms",
        "dense_median_ms",
        "plain_median_ms",
        "s_sel",
        *CHECK_MACHINE_COLUMNS,
        HOST_AHEAD_TIMES[0],
        HOST_MS,  # shown, not gated: the absolute figure moves with the host (HOST_RATIO is gated)
    ),
    key=CHECK_POINT_COLUMNS,
    config_defaults=ROPE_DEFAULT,  # the baselines recorded before `rope` measured pre
)
#: check.csv of `check`: one row per judged figure.
CHECK = Table(
    "check table",
    columns=("point", "figure", "baseline", "now", "change_pct", "verdict", "note"),
    key=("point", "figure"),
)
#: The figures the parity gate compares (relative errors of the output and the three gradients).
PARITY_FIGURES = ("out", "dq", "dk", "dv")
#: parity.csv of `check`: Triton against PyTorch, one row per point.
PARITY = Table(
    "parity file",
    columns=(*CHECK_POINT_COLUMNS, "status", "reason", "ok", "same_selection", *(f"rel_{f}" for f in PARITY_FIGURES)),
    key=CHECK_POINT_COLUMNS,
    config_defaults=ROPE_DEFAULT,
)
#: validate.csv of `validate`: the parity figures per point and whether the Triton path repeats bit for bit and
#: gives the same result with its output buffers poisoned (NaN where a kernel forgets to write).
VALIDATE = Table(
    "validate file", columns=(*PARITY.columns, "tolerance", "bitwise_repeat", "poisoned_equal"), key=CHECK_POINT_COLUMNS
)


# ------------------------------------------------------------------------------------------- numbers
def num(text) -> Optional[float]:
    """CSV cell -> float; empty, unparsable or NaN -> None (a missing number is not a zero)."""
    try:
        v = float(text) if text not in (None, "") else None
    except (TypeError, ValueError):
        return None
    return None if v is None or math.isnan(v) else v


def norm(x) -> str:
    """A key cell in one spelling: '8192', '8192.0' and 8192 compare equal; text stays text."""
    v = num(x)
    if v is not None and not math.isinf(v) and v == int(v):
        return str(int(v))
    return "" if x is None else str(x).strip()


def fmt(x, digits: int = 3, *, spec: Optional[str] = None, suffix: str = "", missing: str = "-") -> str:
    """One number formatter for tables and reports: `digits` significant digits (or a format `spec`), then
    `suffix`; `missing` for None."""
    if x is None:
        return missing
    return format(x, spec or f".{digits}g") + suffix


def fmt_size(n: int) -> str:
    """8192 -> '8K', 98304 -> '96K', 1048576 -> '1M'."""
    if n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)}M"
    if n % 1024 == 0:
        return f"{n // 1024}K"
    return str(n)


def cell(x) -> str:
    """A value as a CSV cell: floats to 6 significant digits, None empty."""
    if isinstance(x, float):
        return fmt(x, 6)
    return "" if x is None else str(x)


def row_key(row: dict, table: Table = SWEEP) -> Tuple[str, ...]:
    """The identity of a row as the CSV spells it (what --resume matches); a column the row lacks takes the
    table's default, as it does when an older CSV is read."""
    return tuple(table.default_of(c, row) if row.get(c) is None else str(row.get(c)) for c in table.key)


# ------------------------------------------------------------------------------------------- writing
def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def append_row(path, table: Table, row: dict) -> None:
    """Append one row (header first when the file is new or empty); missing columns are written empty and
    `finished_at` is stamped now. Flushed and fsynced, so a crash leaves at most one torn last row; a torn
    last line from an earlier crash is closed first, so it cannot swallow this row."""
    path = Path(path)
    values = {c: cell(row.get(c)) for c in table.columns}
    if FINISHED_AT in table.columns:
        values[FINISHED_AT] = _now()
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a+b") as raw:
        if not new:
            raw.seek(-1, os.SEEK_END)
            if raw.read(1) not in (b"\n", b"\r"):
                raw.write(b"\r\n")
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table.columns))
        if new:
            w.writeheader()
        w.writerow(values)
        f.flush()
        os.fsync(f.fileno())


def claim_results_file(out, name: str, resume: bool, error=ValueError) -> Path:
    """The results file `name` of a run writing into folder `out`: with --resume it must exist, without it it
    must not (or be empty), so a new run never appends to another run's rows. Raises `error` (the command's
    own usage-error class) naming the option."""
    path = Path(out) / name
    if resume and not path.exists():
        raise error(f"--resume: {path} does not exist; give the --out of the run to resume")
    if not resume and path.exists() and path.stat().st_size > 0:
        raise error(f"--out: {path} already exists; add --resume to continue it, or pick another --out")
    return path


def keep_final(path, table: Table) -> Dict[Tuple[str, ...], dict]:
    """For --resume: rewrite `path` with only its rows of a final status (the last one per key), so oom,
    error and torn rows are run again and replaced instead of duplicated. Returns the kept rows by key."""
    rows, _torn = read_rows(path, table)
    statuses = "status" in table.columns  # a table without statuses (profile.csv) holds finished rows only
    kept = {row_key(r, table): r for r in rows if not statuses or r.get("status") in FINAL}
    write_rows(path, table, kept.values())
    return kept


def write_rows(path, table: Table, rows: Iterable[dict]) -> None:
    """Write a whole table at once (header + rows, missing columns empty), atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table.columns), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: cell(r.get(c)) for c in table.columns})
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------- reading
def read_rows(path, table: Table) -> Tuple[List[Dict[str, str]], List[Dict[str, str]]]:
    """(complete rows, torn rows) of a file of `table`. Torn: a field count that differs from the header, or
    an empty `finished_at` where the table has one; callers treat a torn row as not finished. Raises
    ResultsFormatError for an empty or binary file or a CSV without the table's key columns, OSError when
    it cannot be opened. A `.gz` file is read through gzip (finished studies commit their curves packed)."""
    path = Path(path)
    what = f"not a lighthouse-bench {table.name}"
    data = path.read_bytes()
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:  # not gzip, cut short, or a corrupt deflate stream
            raise ResultsFormatError(f"{what}: {path} is not gzip: {err}") from None
    if not data.strip():
        raise ResultsFormatError(f"{what}: {path} is empty")
    if b"\0" in data:
        raise ResultsFormatError(f"{what}: {path} is binary")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ResultsFormatError(f"{what}: {path} is not UTF-8 text") from None
    try:
        lines = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as err:
        raise ResultsFormatError(f"{what}: {path}: {err}") from None
    header = lines[0]
    filled = {c: v for c, v in table.defaults if c not in header}
    by_config = [c for c, _ in table.config_defaults if c not in header]
    absent = [c for c in table.key if c not in header and c not in filled and c not in by_config]
    if absent:
        raise ResultsFormatError(f"{what}: {path} lacks the columns {', '.join(absent)}")
    stamped = FINISHED_AT in table.columns and FINISHED_AT in header
    complete, torn = [], []
    for fields in lines[1:]:
        if not fields:
            continue
        row = {**filled, **dict(zip(header, fields))}
        for c in by_config:
            row[c] = table.default_of(c, row)
        if len(fields) != len(header) or (stamped and not row.get(FINISHED_AT, "").strip()):
            torn.append(row)
        else:
            complete.append(row)
    return complete, torn


def header_of(path) -> List[str]:
    """The first line of a CSV (to tell a sweep from a profile); [] when unreadable."""
    try:
        with Path(path).open(newline="") as f:
            return next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def kind_of_header(header: Sequence[str]) -> Optional[Table]:
    """SWEEP or PROFILE by the columns a header has (a profile has a `stage` column)."""
    if "stage" in header:
        return PROFILE
    if "kind" in header and "median_ms" in header:
        return SWEEP
    return None


# ------------------------------------------------------------------------------------------- check: plain reference
#: reference.csv of `check` (lighthouse/bench/plain_reference.py): dense causal attention by plain PyTorch, one
#: row per (shape, pass) of the Lighthouse rows beside it; the yardstick that shares no project code.
REFERENCE = Table(
    "plain reference file",
    columns=(
        "impl",
        "kind",
        *DENSE_MATCH_COLUMNS,
        "device",
        *TIMED_COLUMNS,
        "torch",
        FINISHED_AT,
        *HOST_AHEAD_TIMES,
    ),
    key=("impl", *DENSE_MATCH_COLUMNS),
    defaults=tuple((c, "") for c in HOST_AHEAD_TIMES),
)


# --- train (`lighthouse-bench train`): one row per throughput point, one per step of the two-stage recipe ------

#: Columns naming one throughput point (preset, shape, attention and its parameters, device, precision).
TRAIN_POINT = (
    "preset",
    "attention",
    "n",
    "batch",
    "hidden",
    "layers",
    "ffn",
    "heads",
    "kv_heads",
    "head_dim",
    "vocab",
    "levels",
    "pooling",
    "topk",
    "scorer",
    "rope",
    "dense_layers",
    "device",
    "dtype",
    "checkpointing",
    "recompute",
)
TRAIN = Table(
    name="train results file",
    columns=TRAIN_POINT
    + (
        "impl",
        "sdpa_backend",
        "loss_impl",
        "clip",
        "s_sel",
        "params_total",
        "params_non_embedding",
        "status",
        "reason",
        "steps",
        "median_step_ms",
        "p20_step_ms",
        "p80_step_ms",
        "tokens_per_s",
        "speedup_vs_dense",
        "first_step_s",
        "attention_ms",
        "attention_share",
        "peak_mem_gib",
        "model_tflop_per_step",
        "mfu",
        "seed",
        FINISHED_AT,
    ),
    key=TRAIN_POINT,
    config_defaults=ROPE_DEFAULT,
)
#: The two-stage recipe's and the study's log, one row per optimizer step of an arm: train loss every step,
#: validation loss every --eval-every steps (empty between). `val_loss` is in the mode the arm trains in at that
#: step; an arm that uses Lighthouse at any point also records both modes (`val_loss_lighthouse`,
#: `val_loss_dense`: the same weights evaluated with each attention). `epochs`: passes over the train split.
TRAIN_CURVE = Table(
    name="train curve file",
    columns=(
        "arm",
        "seed",
        "step",
        "attention",
        "tokens",
        "epochs",
        "train_loss",
        "val_loss",
        "val_loss_lighthouse",
        "val_loss_dense",
        "lr",
        "grad_norm",
        "step_ms",
        "elapsed_s",
        FINISHED_AT,
    ),
    key=("arm", "seed", "step"),
    defaults=(("seed", "0"),),  # curves written before --seeds came from one seed, 0 unless told otherwise
)
#: A study's solo step times (no other process on the GPU): the clock its wall-clock figures use, because the
#: arms themselves run side by side and their own step_ms includes the other arms' work.
STUDY_CLOCK = Table(
    name="study clock file",
    columns=("experiment", "attention", "steps", "median_step_ms", "p20_step_ms", "p80_step_ms", FINISHED_AT),
    key=("experiment", "attention"),
)
#: A study's jobs (one worker process each): how each ended, for --resume and for the reader of a partial study.
STUDY_JOBS = Table(
    name="study jobs file",
    columns=("job_id", "status", "reason", "wall_s", "log", FINISHED_AT),
    key=("job_id",),
)


# ------------------------------------------------------------------------------------------- quality
#: Depth buckets of the needle recall (0-10% ... 90-100%), one column each.
QUALITY_BUCKETS = tuple(f"recall_d{10 * b:02d}" for b in range(10))
#: The figures of a quality row (lighthouse.quality defines them; see docs/quality.md).
QUALITY_FIGURES = ("out_rel_err", "cos_median", "cos_p10", "coverage", "coverage_p10", "needle_recall")
#: Where the output error lies (magnitude or a few tokens); added after the first H200 runs, whose files read
#: with them empty (not measured then).
QUALITY_ERROR_SHAPE = ("norm_ratio_median", "err_top10_share")
#: quality.csv of `quality`: one row per (inputs, layer, point).
QUALITY = Table(
    "quality file",
    columns=(
        "inputs",
        "layer",
        *MEASURED_POINT_COLUMNS,
        "impl",
        "s_sel",
        "status",
        "reason",
        *QUALITY_FIGURES,
        *QUALITY_BUCKETS,
        "needles",
        "dense_needle_recall",
        "seconds",
        "seed",
        FINISHED_AT,
        *QUALITY_ERROR_SHAPE,
    ),
    key=(
        "inputs",
        "layer",
        *MEASURED_POINT_COLUMNS,
    ),
    defaults=tuple((c, "") for c in QUALITY_ERROR_SHAPE),
    config_defaults=ROPE_DEFAULT,
)

#: passkey.csv of `passkey`: one row per (model folder, attention, length, depth) with its trials' accuracy.
PASSKEY = Table(
    "passkey file",
    columns=(
        "model",
        "attention",
        "length",
        "depth",
        "digits",
        "trials",
        "filler",
        "device",
        "dtype",
        "status",
        "reason",
        "exact_acc",
        "digit_acc",
        "digit_hits",
        "chance_digit",
        "chance_exact",
        "p_chance",
        "above_chance",
        "seconds",
        "seed",
        FINISHED_AT,
        "digit_only_acc",
        "digit_only_hits",
    ),
    key=("model", "attention", "length", "depth", "digits", "trials", "filler", "device", "dtype", "seed"),
    #: digit_only_*: added after the first H200 run (its file reads with them empty: not measured then)
    defaults=(("digit_only_acc", ""), ("digit_only_hits", "")),
)


# ------------------------------------------------------------------------------------------- torn rows, told
def torn_note(path, count: int) -> str:
    """What every reader says when it leaves torn rows out (plot, report): they are never shown as finished."""
    return (
        f"{path}: {count} incomplete row{'s' if count != 1 else ''} (cut short by a crash or a full disk) "
        "left out; `lighthouse-bench sweep --resume` runs them again"
    )


def read_finished(path, table: Table) -> List[Dict[str, str]]:
    """The complete rows of `path`; torn rows are left out with a warning on stderr (torn_note)."""
    import sys

    complete, torn = read_rows(path, table)
    if torn:
        print(f"warning: {torn_note(path, len(torn))}", file=sys.stderr)
    return complete


def latest_rows(rows: Sequence[Dict[str, str]], table: Table) -> List[Dict[str, str]]:
    """One row per key: the last one written (a resumed run appends the rows it retried)."""
    last: Dict[Tuple[str, ...], Dict[str, str]] = {}
    for row in rows:
        last[row_key(row, table)] = row
    return list(last.values())
