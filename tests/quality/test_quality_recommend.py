"""`recommend` on hand-made sweep and quality result files."""

import csv

import pytest

from lighthouse.harness.tables import QUALITY, SWEEP
from lighthouse.quality.recommend import Bar, load, recommend, render

SWEEP_COLS, QUALITY_COLS = list(SWEEP.columns), list(QUALITY.columns)


def write(path, cols, rows, torn=None):
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({**{c: "" for c in cols}, **r, "finished_at": "2026-11-29T00:00:00"})
        if torn:
            f.write(torn)


def sweep_row(n, levels, p, k, s, speedup, impl="lighthouse_triton", pass_="fwdbwd", status="ok", heads=8):
    return dict(
        impl=impl,
        kind="lighthouse",
        **{"pass": pass_},
        device="cuda",
        dtype="bf16",
        n=n,
        batch=1,
        heads=heads,
        kv_heads=heads,
        head_dim=128,
        levels=levels,
        pooling=p,
        topk=k,
        scorer=s,
        status=status,
        median_ms=1.0,
        speedup_vs_sdpa_cudnn=speedup,
    )


def q_row(n, levels, p, k, s, recall=None, err=None, inputs="needle", status="ok", layer=""):
    return dict(
        inputs=inputs,
        layer=layer,
        n=n,
        levels=levels,
        pooling=p,
        topk=k,
        scorer=s,
        status=status,
        needle_recall=recall if recall is not None else "",
        out_rel_err=err if err is not None else "",
        coverage=0.5,
    )


@pytest.fixture
def results(tmp_path):
    sweep, qual = tmp_path / "sweep", tmp_path / "qual"
    sweep.mkdir(), qual.mkdir()
    write(
        sweep / "results.csv",
        SWEEP_COLS,
        [
            sweep_row(65536, 3, 4, 1024, "norm", 9.0),  # fastest, fails the recall bar
            sweep_row(65536, 3, 4, 2048, "norm", 6.0),  # meets the bar: the choice
            sweep_row(
                65536, 3, 4, 2048, "norm", 7.5, impl="lighthouse_torch"
            ),  # a faster path of the same config counts
            sweep_row(65536, 2, 4, 4096, "norm", 3.0),  # meets, slower: runner-up
            sweep_row(65536, 3, 4, 4096, "dilated", 8.0, status="oom"),  # not measured: ignored
            sweep_row(65536, 3, 4, 4096, "dilated", 20.0, pass_="fwd"),  # other pass: ignored
            sweep_row(65536, 3, 8, 512, "norm", 12.0),  # speed only: missing quality
        ],
        torn="lighthouse_triton,lighthouse,fwdbwd,cuda,bf16,65536,1,8,8,128,4,4,4096,norm" + ",ok" * 10,
    )
    write(
        qual / "quality.csv",
        QUALITY_COLS,
        [
            q_row(65536, 3, 4, 1024, "norm", recall=0.6),
            q_row(65536, 3, 4, 2048, "norm", recall=0.95),
            q_row(65536, 2, 4, 4096, "norm", recall=1.0),
            q_row(65536, 3, 4, 4096, "dilated", recall=1.0),
            q_row(65536, 2, 2, 512, "norm", recall=1.0),  # quality only
            q_row(65536, 3, 4, 2048, "norm", err=0.3, inputs="random"),
            q_row(65536, 2, 4, 4096, "norm", err=0.1, inputs="random"),
        ],
    )
    return tmp_path


def test_fastest_configuration_meeting_the_bar(results):
    """Catches a choice of the fastest overall (ignoring the bar), a torn row or another pass's speed taken
    for a measurement, an oom row counted, or the slower Lighthouse path used for speed."""
    s, q = load([results])
    rec = recommend(s, q, 65536, Bar("needle_recall", 0.9, "needle"))
    assert rec.chosen.config == (3, 4, 2048, "norm", "pre") and rec.chosen.speedup == 7.5
    assert [c.config for c in rec.ranked] == [
        (3, 4, 2048, "norm", "pre"),
        (2, 4, 4096, "norm", "pre"),
        (3, 4, 1024, "norm", "pre"),
    ]
    assert rec.speed_only == [(3, 8, 512, "norm", "pre")]
    assert (2, 2, 512, "norm", "pre") in rec.quality_only and (3, 4, 4096, "dilated", "pre") in rec.quality_only
    text = render(rec)
    assert "Use L=3 p=4 k=2048 norm" in text and "7.50x" in text and "L=3 p=8 k=512 norm" in text


def test_error_bar_reads_random_inputs_and_can_fail(results):
    """Catches an out_rel_err bar compared the wrong way round, or reading recall rows."""
    s, q = load([results])
    rec = recommend(s, q, 65536, Bar("out_rel_err", 0.2, "random"))
    assert rec.chosen.config == (2, 4, 4096, "norm", "pre")
    none = recommend(s, q, 65536, Bar("out_rel_err", 0.05, "random"))
    assert none.chosen is None and "No measured configuration meets the bar" in render(none)


def test_unmeasured_seq_is_never_guessed(results):
    """96K lies between measured lengths: nothing may be interpolated; the output says what to run."""
    s, q = load([results])
    rec = recommend(s, q, 98304, Bar("needle_recall", 0.9, "needle"))
    assert rec.chosen is None and rec.ranked == []
    text = render(rec)
    assert "not 98304" in text and "lighthouse-bench quality --seq 98304" in text


def test_worst_layer_counts_for_a_checkpoint(tmp_path):
    """With several layers (or shapes) measured, the least favourable value is the one judged."""
    write(
        tmp_path / "results.csv",
        SWEEP_COLS,
        [sweep_row(4096, 2, 4, 512, "norm", 2.0), sweep_row(4096, 2, 4, 512, "norm", 1.5, heads=16)],
    )
    write(
        tmp_path / "quality.csv",
        QUALITY_COLS,
        [q_row(4096, 2, 4, 512, "norm", recall=0.99, layer=0), q_row(4096, 2, 4, 512, "norm", recall=0.7, layer=1)],
    )
    s, q = load([tmp_path / "results.csv", tmp_path / "quality.csv"])
    rec = recommend(s, q, 4096, Bar("needle_recall", 0.9, "needle"))
    assert rec.chosen is None and rec.ranked[0].quality == 0.7 and rec.ranked[0].speedup == 1.5


# ------------------------------------------------------------------------------------------- defect 8
def _one_config(tmp_path, sweep_rows, quality_rows):
    write(tmp_path / "results.csv", SWEEP_COLS, sweep_rows)
    write(tmp_path / "quality.csv", QUALITY_COLS, quality_rows)
    return load([tmp_path / "results.csv", tmp_path / "quality.csv"])


def test_a_missing_pass_is_named_not_the_n(tmp_path):
    """The sweep measured N=4096 on the fwd pass only; asked for fwdbwd, the output names the pass (and the
    --pass that has figures), never an unmeasured N. Catches 'sweep --seq 4096' offered for a measured N."""
    s, q = _one_config(
        tmp_path, [sweep_row(4096, 2, 4, 512, "norm", 2.0, pass_="fwd")], [q_row(4096, 2, 4, 512, "norm", recall=1.0)]
    )
    text = render(recommend(s, q, 4096, Bar("needle_recall", 0.9, "needle"), pass_="fwdbwd"))
    assert "fwd pass, not fwdbwd" in text and "--pass fwd" in text
    assert "sweep --seq 4096 ...`" not in text and "Quality measured but no" not in text


def test_a_missing_baseline_is_named_not_the_n(tmp_path):
    """Asked for the speedup over sdpa_flash where the sweep timed cuDNN only: the output names the baseline
    that is missing and the one that was measured. Catches the N (measured) blamed instead."""
    s, q = _one_config(
        tmp_path, [sweep_row(4096, 2, 4, 512, "norm", 2.0)], [q_row(4096, 2, 4, 512, "norm", recall=1.0)]
    )
    text = render(recommend(s, q, 4096, Bar("needle_recall", 0.9, "needle"), baseline="sdpa_flash"))
    assert "no speedup over sdpa_flash" in text and "--baseline cudnn" in text
    assert "sweep --seq 4096 ...`" not in text and "Quality measured but no" not in text


def test_missing_quality_inputs_are_named_not_the_n(tmp_path):
    """An out_rel_err bar (random inputs) over quality measured on needle inputs only: the output names the
    inputs kind. Catches 'quality results measured N = nothing'."""
    s, q = _one_config(
        tmp_path, [sweep_row(4096, 2, 4, 512, "norm", 2.0)], [q_row(4096, 2, 4, 512, "norm", recall=1.0)]
    )
    text = render(recommend(s, q, 4096, Bar("out_rel_err", 0.1, "random")))
    assert "needle inputs, not random" in text and "quality --seq 4096 --inputs random" in text
    assert "nothing" not in text and "Speed measured but no" not in text


def test_nothing_meeting_the_bar_is_a_sentence_naming_the_closest(tmp_path, results):
    """No configuration meets needle_recall >= 0.95: one sentence names the closest one (the best figure, not the
    fastest) and by how much it misses, with no table of non-answers. Catches a table printed as if it held a
    recommendation."""
    s, q = _one_config(
        tmp_path,
        [sweep_row(4096, 2, 4, 512, "norm", 3.0), sweep_row(4096, 2, 4, 1024, "norm", 2.0)],
        [q_row(4096, 2, 4, 512, "norm", recall=0.8), q_row(4096, 2, 4, 1024, "norm", recall=0.9)],
    )
    rec = recommend(s, q, 4096, Bar("needle_recall", 0.95, "needle"))
    assert rec.chosen is None
    text = render(rec)
    assert "| configuration |" not in text
    assert "The closest is L=2 p=4 k=1024 norm (2.00x): needle_recall 0.9, below the bar 0.95 by 0.05" in text, text
    s, q = load([results])
    err = render(recommend(s, q, 65536, Bar("out_rel_err", 0.05, "random")))
    assert "The closest is L=2 p=4 k=4096 norm (3.00x): out_rel_err 0.1, above the bar 0.05 by 0.05" in err, err


def test_the_table_lists_each_figure_once(results):
    """The runners-up table has one column per figure: the bar's figure is not repeated among the others.
    Catches needle_recall (or out_rel_err) listed twice."""
    s, q = load([results])
    for bar in (Bar("needle_recall", 0.9, "needle"), Bar("out_rel_err", 0.2, "random")):
        header = next(line for line in render(recommend(s, q, 65536, bar)).splitlines() if "| configuration" in line)
        cells = [c.strip() for c in header.strip("|").split("|")]
        assert len(cells) == len(set(cells)) and bar.figure in cells, header
        assert {"needle_recall", "out_rel_err", "coverage"} <= set(cells), header
