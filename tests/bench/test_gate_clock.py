"""The gate judges the host-ahead clock and the host's own time per call (issue 24): a slower kernel hidden in
launch gaps on the as-launched clock fails; launch gaps that grew are the host figure's to catch."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from lighthouse.bench import check, plain_reference
from lighthouse.bench.check import EXIT_OK, EXIT_REGRESSED, run_check
from lighthouse.harness.tables import SWEEP, read_rows

SHAPE = {"pass": "fwdbwd", "device": "cuda", "dtype": "bf16", "batch": 1, "heads": 8, "kv_heads": 8, "head_dim": 128}
LH = {"levels": 3, "pooling": 4, "scorer": "norm", "topk": 512, "s_sel": 4608, "impl": "lighthouse_triton"}
FINISHED = {"finished_at": "2026-11-29T00:00:00+00:00"}
#: The issue's 8K point: (as launched, host ahead) ms of Lighthouse, cuDNN, the floor, plain PyTorch SDPA.
LAYER, DENSE, FLOOR, PLAIN = (1.761, 1.138), (1.070, 1.022), (0.60, 0.55), (1.10, 1.05)


def run_folder(folder: Path, kernel=1.0, gaps=0.0, host_ms=0.9, stock_host_ms=(0.5, 0.3)) -> Path:
    """One 8K point: `kernel` scales the layer's kernels (host ahead; as launched too, the gaps stay), `gaps` ms
    of launch gaps are added to the as-launched layer time only, `host_ms` is the host time per call and
    `stock_host_ms` the dense cuDNN row's and the floor row's (in the same run)."""
    launched, ahead = LAYER[0] - LAYER[1] + LAYER[1] * kernel + gaps, LAYER[1] * kernel
    lh = {
        **SHAPE,
        **LH,
        "kind": "lighthouse",
        "n": 8192,
        "status": "ok",
        "median_ms": launched,
        "host_ahead_median_ms": ahead,
        "host_ms_per_call": host_ms,
        "speedup_vs_sdpa_cudnn": DENSE[0] / launched,
        "host_ahead_speedup_vs_sdpa_cudnn": DENSE[1] / ahead,
        "floor_ratio": launched / FLOOR[0],
        "host_ahead_floor_ratio": ahead / FLOOR[1],
    }
    floor = {
        **SHAPE,
        **LH,
        "impl": "floor",
        "kind": "floor",
        "n": 8192,
        "status": "ok",
        "median_ms": FLOOR[0],
        "host_ahead_median_ms": FLOOR[1],
        "host_ms_per_call": stock_host_ms[1],
    }
    dense = {
        **SHAPE,
        "impl": "sdpa_cudnn",
        "kind": "dense",
        "n": 8192,
        "status": "ok",
        "median_ms": DENSE[0],
        "host_ahead_median_ms": DENSE[1],
        "host_ms_per_call": stock_host_ms[0],
    }
    folder.mkdir(parents=True)
    with (folder / "results.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=SWEEP.columns, extrasaction="ignore")
        w.writeheader()
        w.writerow({**FINISHED, **dense})
        w.writerow({**FINISHED, **floor})
        w.writerow({**FINISHED, **lh})
    plain_reference.write(
        folder / plain_reference.FILE,
        [
            {
                **SHAPE,
                **FINISHED,
                "impl": plain_reference.IMPL,
                "kind": "reference",
                "n": 8192,
                "status": "ok",
                "median_ms": PLAIN[0],
                "host_ahead_median_ms": PLAIN[1],
            }
        ],
    )
    (folder / "machine.json").write_text(json.dumps({"gpu": "NVIDIA H200"}))
    return folder / "results.csv"


def judged(tmp_path: Path, **now) -> tuple:
    base = tmp_path / "b.csv"
    assert run_check(base, run_folder(tmp_path / "base"), record=True, console=_console()) == EXIT_OK
    out = tmp_path / "check"
    code = run_check(base, run_folder(tmp_path / "now", **now), console=_console(), out=out)
    with (out / "check.csv").open() as f:
        return code, {r["figure"]: r for r in csv.DictReader(f)}


def _console():
    return Console(file=io.StringIO(), width=300, color_system=None)


def test_the_gated_figures_are_the_host_ahead_ratios_and_the_host_time():
    assert set(check.GATED) == {
        "host_ahead_speedup_vs_sdpa_cudnn",
        "host_ahead_floor_ratio",
        "host_ahead_speedup_vs_plain_sdpa",
        "host_ms_ratio_vs_sdpa",
    }
    assert not check.GATED["host_ms_ratio_vs_sdpa"]  # lower is better


def test_a_ten_percent_slower_kernel_hidden_in_launch_gaps_fails(tmp_path):
    """Kernels 10% slower, the launch gaps shrinking by as much (the issue's case: the as-launched time barely
    moves): the host-ahead speedup, floor ratio and plain figure all fail; the as-launched time is shown only."""
    extra = LAYER[1] * 0.10
    code, rows = judged(tmp_path, kernel=1.10, gaps=-extra)
    assert code == EXIT_REGRESSED
    for figure in (check.SPEEDUP, check.FLOOR_RATIO, check.PLAIN):
        assert rows[figure]["verdict"] == "REGRESSED", rows[figure]
    assert float(rows[check.FLOOR_RATIO]["change_pct"]) == pytest.approx(10.0, abs=0.06)
    assert rows["median_ms"]["verdict"] == "not gated" and abs(float(rows["median_ms"]["change_pct"])) < 0.1
    assert rows["host_ahead_median_ms"]["verdict"] == "not gated"
    assert float(rows["host_ahead_median_ms"]["change_pct"]) == pytest.approx(10.0, abs=0.06)


def test_launch_gaps_alone_move_no_kernel_figure(tmp_path):
    """0.5 ms more launch gaps with the same kernels and host time: the as-launched time is 28% worse, yet no
    gated figure moves (the gaps are the host's; its own figure below catches a slower host)."""
    code, rows = judged(tmp_path, gaps=0.5)
    assert code == EXIT_OK
    assert float(rows["median_ms"]["change_pct"]) > 25


@pytest.mark.parametrize("host_ms,code", [(0.9 * 1.03, EXIT_OK), (0.9 * 1.20, EXIT_REGRESSED)])
def test_the_host_time_per_call_is_gated_on_its_own(tmp_path, host_ms, code):
    got, rows = judged(tmp_path, host_ms=host_ms)
    assert got == code
    assert rows["host_ms_ratio_vs_sdpa"]["verdict"] == ("REGRESSED" if code == EXIT_REGRESSED else "ok")
    assert float(rows["host_ms_ratio_vs_sdpa"]["now"]) == pytest.approx(host_ms / (0.5 + 0.3), rel=1e-3)
    assert rows["host_ms_per_call"]["verdict"] == "not gated"
    assert all(rows[f]["verdict"] == "ok" for f in (check.SPEEDUP, check.FLOOR_RATIO, check.PLAIN))


def test_a_slower_host_that_slows_every_sdpa_alike_passes(tmp_path):
    """The lent host 30% slower for the whole run (its SDPA's host time too, as in
    reports/h200/check/check-after-s5-first/): the absolute host time is 30% worse and shown, the gated ratio
    holds. Catches a host figure that fails a check on a slow machine with no change to the code."""
    got, rows = judged(tmp_path, host_ms=0.9 * 1.3, stock_host_ms=(0.5 * 1.3, 0.3 * 1.3))
    assert got == EXIT_OK
    assert float(rows["host_ms_per_call"]["change_pct"]) == pytest.approx(30.0, abs=0.1)
    assert abs(float(rows["host_ms_ratio_vs_sdpa"]["change_pct"])) < 0.1


def test_with_host_ratio_against_a_direct_division():
    """Each Lighthouse row takes the dense row of its own shape and the floor of its own S (same L, p, k, scorer),
    never another point's; rows without both get no ratio."""
    rows = []
    for n, dense in ((8192, 0.5), (16384, 0.7)):
        rows.append({**SHAPE, "kind": "dense", "impl": "sdpa_cudnn", "n": str(n), "status": "ok",
                     "host_ms_per_call": str(dense)})  # fmt: skip
    for n, topk, own, floor in ((8192, 512, 1.8, 0.3), (8192, 1024, 2.4, 0.4), (16384, 512, 2.0, 0.35)):
        for kind, ms in (("floor", floor), ("lighthouse", own)):
            rows.append({**SHAPE, **LH, "kind": kind, "impl": kind, "n": str(n), "topk": str(topk),
                         "status": "ok", "host_ms_per_call": str(ms)})  # fmt: skip
    rows.append({**SHAPE, **LH, "kind": "lighthouse", "impl": "lighthouse_triton", "n": "8192", "topk": "2048",
                 "status": "ok", "host_ms_per_call": "2.0"})  # fmt: skip
    # floors of other points with the same n and k (another scorer, L, pass) and a failed one, listed after the
    # right ones (a looser match would take the last): never taken
    for other in ({"scorer": "dilated"}, {"levels": 2}, {"pass": "fwd"}, {"topk": "2048", "status": "error"}):
        rows.append({**SHAPE, **LH, "kind": "floor", "impl": "floor", "n": "8192", "topk": "512", "status": "ok",
                        "host_ms_per_call": "9.0", **other})  # fmt: skip
    got = {
        (r["n"], r["topk"]): r.get("host_ms_ratio_vs_sdpa")
        for r in check.with_host_ratio(rows)
        if r["kind"] == "lighthouse"
    }
    assert float(got[("8192", "512")]) == pytest.approx(1.8 / (0.5 + 0.3), rel=1e-5)
    assert float(got[("8192", "1024")]) == pytest.approx(2.4 / (0.5 + 0.4), rel=1e-5)
    assert float(got[("16384", "512")]) == pytest.approx(2.0 / (0.7 + 0.35), rel=1e-5)
    assert got[("8192", "2048")] is None  # no floor of its own


@pytest.mark.parametrize("repeat_host_ms,code", [(0.9, EXIT_OK), (0.9 * 1.3, EXIT_REGRESSED)])
def test_a_repeat_measures_the_host_ratio_again(tmp_path, repeat_host_ms, code):
    """A host ratio 30% up at the first measurement is measured again with its dense and floor rows: a repeat back at
    the baseline clears it (best of the measurements), one as slow confirms it. Catches repeats judged without the
    ratio (a repeat that cannot clear the point) and repeats that drop the dense or floor row."""
    base = tmp_path / "b.csv"
    assert run_check(base, run_folder(tmp_path / "base"), record=True, console=_console()) == EXIT_OK
    again, _ = read_rows(run_folder(tmp_path / "again", host_ms=repeat_host_ms), SWEEP)  # as measured: no ratio yet
    seen = []

    def remeasure(rows):
        seen.append(sorted(r["kind"] for r in rows))
        return [dict(r) for r in again]

    out = tmp_path / "check"
    got = run_check(
        base, run_folder(tmp_path / "now", host_ms=0.9 * 1.3), console=_console(), out=out, remeasure=remeasure
    )
    assert got == code
    assert seen and all(kinds[:3] == ["dense", "floor", "lighthouse"] for kinds in seen)
    with (out / "check.csv").open() as f:
        row = {r["figure"]: r for r in csv.DictReader(f)}["host_ms_ratio_vs_sdpa"]
    assert row["verdict"] == ("ok" if code == EXIT_OK else "REGRESSED") and "best of" in row["note"]
