"""The sweep's rows carry both clocks; speedups and floor ratios compare Lighthouse and dense on one clock only;
files written before the second clock read with its columns empty."""

from __future__ import annotations

import csv

import pytest

from lighthouse.bench import runner, sweep
from lighthouse.harness import tables
from lighthouse.harness.points import Point, Shape, Task
from lighthouse.harness.timing import Timing

SHAPE = Shape(8192, 1, 8, 8, 128, "bf16")
POINT = Point(SHAPE, 3, 4, 512, "norm")


def _timing(launched_ms: float, ahead_ms: float, host_ms: float) -> Timing:
    return Timing([launched_ms] * 3, 10.0, None, [ahead_ms] * 3, [host_ms] * 3, 0)


def _row(task: Task, timing: Timing, medians: sweep.Medians) -> dict:
    row = sweep.make_row(task, "cuda", 0, runner.Result("ok", timing=timing, sdpa_backend="cudnn"), medians)
    medians.add({k: tables.cell(v) for k, v in row.items()})
    return row


def test_speedup_and_floor_ratio_on_each_clock():
    """Dense 1.07 ms as launched / 1.02 host ahead, floor 0.5 / 0.45, Lighthouse 1.76 / 1.14: the as-launched
    speedup is 1.07/1.76, the host-ahead one 1.02/1.14 (never 1.07/1.14), the floor ratios 1.76/0.5, 1.14/0.45."""
    medians = sweep.Medians()
    _row(Task("dense", "sdpa_cudnn", "fwdbwd", SHAPE), _timing(1.07, 1.02, 0.05), medians)
    _row(Task("floor", "floor", "fwdbwd", SHAPE, POINT, 4096), _timing(0.5, 0.45, 0.05), medians)
    lh = _row(Task("lighthouse", "lighthouse_triton", "fwdbwd", SHAPE, POINT, 4096), _timing(1.76, 1.14, 0.6), medians)
    assert lh["speedup_vs_sdpa_cudnn"] == pytest.approx(1.07 / 1.76)
    assert lh["host_ahead_speedup_vs_sdpa_cudnn"] == pytest.approx(1.02 / 1.14)
    assert lh["floor_ratio"] == pytest.approx(1.76 / 0.5)
    assert lh["host_ahead_floor_ratio"] == pytest.approx(1.14 / 0.45)
    assert lh["host_ahead_median_ms"] == pytest.approx(1.14) and lh["host_ms_per_call"] == pytest.approx(0.6)
    assert lh["host_ahead_timeouts"] == 0
    assert lh["speedup_vs_sdpa_flash"] is None and lh["host_ahead_speedup_vs_sdpa_flash"] is None


def test_no_host_ahead_dense_means_no_host_ahead_speedup():
    """A dense row timed on the as-launched clock alone (no hold kernel) gives no host-ahead speedup: the
    Lighthouse host-ahead time is never set against an as-launched dense time."""
    medians = sweep.Medians()
    _row(Task("dense", "sdpa_cudnn", "fwdbwd", SHAPE), Timing([1.07] * 3, 10.0, None), medians)
    lh = _row(Task("lighthouse", "lighthouse_triton", "fwdbwd", SHAPE, POINT, 4096), _timing(1.76, 1.14, 0.6), medians)
    assert lh["speedup_vs_sdpa_cudnn"] == pytest.approx(1.07 / 1.76)
    assert lh["host_ahead_speedup_vs_sdpa_cudnn"] is None


def test_clock_column_names():
    assert tables.clock_column("median_ms", tables.LAUNCHED) == "median_ms"
    assert tables.clock_column("floor_ratio", tables.HOST_AHEAD) == "host_ahead_floor_ratio"
    with pytest.raises(ValueError, match="clock must be one of launched, host_ahead"):
        tables.clock_column("median_ms", "wall")


def test_an_older_results_file_reads_the_new_columns_empty(tmp_path):
    old_columns = [c for c in tables.SWEEP.columns if c not in tables.CLOCK_COLUMNS]
    path = tmp_path / "results.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=old_columns)
        w.writeheader()
        w.writerow(
            {c: "" for c in old_columns}
            | {
                "impl": "sdpa_cudnn",
                "kind": "dense",
                "pass": "fwd",
                "n": "8192",
                "status": "ok",
                "median_ms": "1.0",
                "finished_at": "2026-01-01",
            }
        )
    rows, torn = tables.read_rows(path, tables.SWEEP)
    assert not torn and rows[0]["host_ahead_median_ms"] == "" and rows[0]["host_ms_per_call"] == ""
    assert tables.num(rows[0]["host_ahead_median_ms"]) is None and tables.num(rows[0]["median_ms"]) == 1.0
