"""The paper-claim verdict of one interval (study_report.claim_verdict) and reports/h200/study/tools/pooled.py, which
pools E2 at 500 steps over several study folders: pairing, missing folders, intervals against scipy."""

import csv
import importlib.util
import math
from pathlib import Path

import pytest

from lighthouse.train.stats import Interval
from lighthouse.train.study_report import CLAIM_PCT, PRECISE_PCT, claim_verdict, reaches_claim

scipy_stats = pytest.importorskip("scipy.stats")

POOLED = Path(__file__).resolve().parents[2] / "reports" / "h200" / "study" / "tools" / "pooled.py"


def _pooled():
    spec = importlib.util.spec_from_file_location("pooled_tool", POOLED)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "mean, hw, expected",
    [
        (CLAIM_PCT + 30.0, 25.0, "no"),  # the whole interval above the claim: no, however wide
        (CLAIM_PCT + 3.0, None, "inconclusive"),  # one seed: no interval
        (0.5, None, "inconclusive"),
        (CLAIM_PCT + 2.0, PRECISE_PCT + 0.5, "inconclusive"),  # reaches below the claim, too wide to say
        (CLAIM_PCT - 0.2, PRECISE_PCT, "yes"),  # precise enough, mean within the claim
        (CLAIM_PCT + 0.5, CLAIM_PCT + 0.6, "yes"),  # mean above the claim, but the interval holds 0
        (CLAIM_PCT + 1.5, 1.0, "no"),  # precise, mean above the claim, 0 outside
    ],
)
def test_claim_verdict_by_hand(mean, hw, expected):
    """Catches a wide interval wholly above the claim called inconclusive, a one-seed gap given a verdict, and a
    precise interval holding 0 called no."""
    assert claim_verdict(Interval(mean, hw, 1 if hw is None else 5)) == expected


def test_reaches_claim_by_hand():
    """Catches a claim read as 'below 1%' (strict) or an interval that holds 0 not counted as reaching it."""
    assert reaches_claim(Interval(CLAIM_PCT, 0.1, 5)) and reaches_claim(Interval(3.0, 3.0, 5))
    assert not reaches_claim(Interval(3.0, 2.9, 5)) and not reaches_claim(Interval(3.0, None, 1))


ARMS = ("experiment", "label", "seed", "length", "dense_steps", "val_loss", "dense_val_loss", "gap_pct", "wall_s")


def _arms(folder: Path, rows) -> None:
    folder.mkdir(parents=True)
    with (folder / "arms.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=ARMS + ("dense_wall_s",))
        w.writeheader()
        for r in rows:
            w.writerow({"dense_wall_s": 10.0, **r})


def _arm(experiment, seed, dense_steps, gap, length=500, label="lighthouse-then-dense", wall=12.0):
    return {
        "experiment": experiment,
        "label": label,
        "seed": seed,
        "length": length,
        "dense_steps": dense_steps,
        "val_loss": 2.0 * (1 + (gap or 0) / 100),
        "dense_val_loss": 2.0,
        "gap_pct": "" if gap is None else gap,
        "wall_s": wall,
    }


def test_gaps_pool_the_folders_present_and_leave_out_unfinished_and_foreign_arms(tmp_path):
    """Catches a missing folder that stops the pooling, an arm without a final loss (a study cut short) pooled as
    0, another experiment's or run length's arms pooled with E2 at 500 steps, and a wall ratio against the wrong
    arm."""
    pooled = _pooled()
    _arms(
        tmp_path / "e1-e2",
        [
            _arm("E2", 0, 100, 14.0),
            _arm("E2", 0, 100, 30.0, length=1000),
            _arm("E1", 0, 100, 50.0),
            _arm("E2", 0, 100, None, label="dense"),
        ],
    )
    _arms(tmp_path / "seeds6-14", [_arm("E2-500", 6, 100, 16.0, wall=15.0), _arm("E2-500", 7, 100, None)])
    rows = pooled.gaps(500, root=tmp_path)  # seeds345/ is not there
    assert [(r["folder"], r["seed"], r["gap_pct"]) for r in rows] == [("e1-e2", 0, 14.0), ("seeds6-14", 6, 16.0)]
    assert [r["wall_ratio"] for r in rows] == [1.2, 1.5]
    assert [r["gap_pct"] for r in pooled.gaps(1000, sources=pooled.SOURCES[:1], root=tmp_path)] == [30.0]


def test_a_seed_in_two_folders_is_refused(tmp_path):
    """Catches one seed counted twice (the same arm run in two sessions), which would narrow the interval."""
    pooled = _pooled()
    _arms(tmp_path / "seeds345", [_arm("E2-500", 3, 100, 8.0)])
    _arms(tmp_path / "seeds6-14", [_arm("E2-500", 3, 100, 9.0)])
    with pytest.raises(SystemExit, match="seed 3 at 100 dense steps is in seeds345 and seeds6-14"):
        pooled.gaps(500, root=tmp_path)


def test_summary_intervals_and_seed_counts_match_scipy(tmp_path):
    """Catches a z instead of a t quantile, a population standard deviation, or a seed count for the 2-point
    target that is not the fewest whose t interval is that narrow."""
    pooled = _pooled()
    values = [14.0, 9.5, 17.25, 12.0, 15.5]
    rows = [
        {"folder": "f", "seed": i, "length": 500, "dense_steps": 100, "gap_pct": v, "wall_ratio": 1 + i / 10}
        for i, v in enumerate(values)
    ]
    [s] = pooled.summarize(rows)
    sd = scipy_stats.tstd(values)
    hw = scipy_stats.t.ppf(0.975, len(values) - 1) * sd / math.sqrt(len(values))
    assert s["gap_pct_mean"] == pytest.approx(sum(values) / 5) and s["gap_pct_hw"] == pytest.approx(hw, rel=1e-6)
    fewest = next(n for n in range(2, 1000) if scipy_stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n) <= PRECISE_PCT)
    assert s["seeds_for_2pt"] == fewest and s["seed_list"] == "0-4" and s["wall_ratio_mean"] == pytest.approx(1.2)
    assert (s["gap_pct_min"], s["gap_pct_max"]) == (9.5, 17.25)


def test_one_seed_per_switch_point_is_written_without_an_interval(tmp_path, capsys):
    """Catches the report failing (None formatted as a number) where a switch point has one seed so far."""
    pooled = _pooled()
    _arms(tmp_path / "seeds6-14", [_arm("E2-500", 6, 100, 16.0), _arm("E2-500", 6, 400, 4.0)])
    assert pooled.main(["--root", str(tmp_path), "--no-plot"]) == 0
    text = (tmp_path / "pooled" / "summary.md").read_text()
    assert "| 500 | 100 | 1 (6) | +16.00% | - |" in text and "inconclusive" in text


def test_no_finished_arm_anywhere_is_one_error_line(tmp_path, capsys):
    """Catches an IndexError traceback where no folder holds a finished E2 arm at 500 steps."""
    assert _pooled().main(["--root", str(tmp_path), "--no-plot"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: no finished E2 arm at 500 steps") and len(err.splitlines()) == 1
