"""The report's quality verdicts: which scorer retrieves planted needles (needle_verdict) and the
`recommend` section per N (report.recommendation_blocks), on hand-made rows whose answers are known."""

from lighthouse.report.document import Heading, Para, Table
from lighthouse.report.build import recommendation_blocks
from lighthouse.quality.summary import checkpoint_layer_medians, checkpoint_table, needle_verdict


def q(n, lv, p, k, s, recall, inputs="needle", dense=1.0, status="ok"):
    return dict(
        inputs=inputs,
        n=str(n),
        levels=str(lv),
        pooling=str(p),
        topk=str(k),
        scorer=s,
        status=status,
        needle_recall=str(recall),
        dense_needle_recall=str(dense),
        out_rel_err="0.5",
        coverage="0.25",
    )


def sweep(n, lv, p, k, s, speedup):
    return dict(
        impl="lighthouse_triton",
        kind="lighthouse",
        **{"pass": "fwdbwd"},
        device="cuda",
        dtype="bf16",
        n=str(n),
        batch="1",
        heads="8",
        kv_heads="8",
        head_dim="128",
        levels=str(lv),
        pooling=str(p),
        topk=str(k),
        scorer=s,
        status="ok",
        median_ms="1.0",
        speedup_vs_sdpa_cudnn=str(speedup),
    )


def test_needle_verdict_counts_hits_per_scorer_and_names_their_families():
    """Catches a verdict that counts the wrong rows (random inputs, failed rows), uses > instead of >=, or calls
    the scorers equivalent when their retrieving families differ."""
    rows = [
        q(16384, 2, 2, 512, "norm", 0.9),
        q(16384, 3, 4, 512, "norm", 0.2),
        q(16384, 2, 2, 512, "gla", 0.95),
        q(16384, 3, 4, 512, "gla", 0.1),
        q(16384, 3, 4, 1024, "gla", 0.99, status="error"),
        q(16384, 3, 4, 1024, "gla", 0.99, inputs="random"),
    ]
    [line] = needle_verdict(rows)
    assert "dense needle recall 1" in line
    assert "norm 1 of 2 (L=2 p=2)" in line and "gla 1 of 2 (L=2 p=2)" in line
    assert "not the scorer" in line
    rows.append(q(16384, 3, 4, 2048, "gla", 0.91))
    [line] = needle_verdict(rows)
    assert "gla 2 of 3 (L=2 p=2, L=3 p=4)" in line and "not the scorer" not in line


def test_needle_verdict_counts_configurations_not_rows_and_compares_them_exactly():
    """Catches rows counted instead of configurations (two quality files at one N), a configuration counted as
    retrieving when one of its measurements misses, and "the same for every scorer" said when the scorers
    retrieve in the same (L, p) family but at different k."""
    rows = [
        q(16384, 2, 2, 512, "norm", 0.95),
        q(16384, 2, 2, 512, "norm", 0.5),
        q(16384, 2, 2, 1024, "norm", 0.92),
        q(16384, 2, 2, 1024, "gla", 0.93),
        q(16384, 2, 2, 512, "gla", 0.2),
    ]
    [line] = needle_verdict(rows)
    assert "norm 1 of 2 (L=2 p=2)" in line and "gla 1 of 2 (L=2 p=2)" in line and "not the scorer" in line
    rows.append(q(16384, 2, 2, 2048, "gla", 0.97))
    rows.append(q(16384, 2, 2, 2048, "norm", 0.1))
    [line] = needle_verdict(rows)
    assert "gla 2 of 3 (L=2 p=2)" in line and "norm 1 of 3 (L=2 p=2)" in line and "not the scorer" not in line


def test_needle_verdict_one_sentence_per_n_and_no_claim_without_hits():
    """Catches merged N or a 'same families' claim when no configuration retrieves anything."""
    rows = [q(65536, 3, 4, 512, "norm", 0.1), q(65536, 3, 4, 512, "dilated", 0.3), q(131072, 3, 4, 512, "norm", 0.05)]
    lines = needle_verdict(rows)
    assert [line.split(":")[0] for line in lines] == ["N=64K", "N=128K"]
    assert "dilated 0 of 1; norm 0 of 1." in lines[0] and "not the scorer" not in lines[0]


def test_recommendation_blocks_pick_the_fastest_config_meeting_the_bar_per_n():
    """Catches a report that ranks by speed alone (the fastest config misses the bar here) or mixes N (16K has
    speed only, 64K quality only: no section for either)."""
    sweeps = [
        sweep(98304, 3, 4, 1024, "norm", 20.0),
        sweep(98304, 2, 2, 512, "norm", 3.5),
        sweep(98304, 2, 2, 1024, "norm", 3.0),
        sweep(16384, 2, 2, 512, "norm", 1.5),
    ]
    quality = [
        q(98304, 3, 4, 1024, "norm", 0.2),
        q(98304, 2, 2, 512, "norm", 1.0),
        q(98304, 2, 2, 1024, "norm", 0.95),
        q(65536, 2, 2, 512, "norm", 1.0),
    ]
    blocks = recommendation_blocks(sweeps, quality)
    assert [b.text for b in blocks if isinstance(b, Heading)] == ["Recommendation for N=96K"]
    para = next(b for b in blocks if isinstance(b, Para))
    assert "Use L=2 p=2 k=512 norm: 3.50x" in para.text
    table = next(b for b in blocks if isinstance(b, Table))
    assert [r[0] for r in table.rows] == ["L=2 p=2 k=512 norm", "L=2 p=2 k=1024 norm", "L=3 p=4 k=1024 norm"]
    assert [r[3] for r in table.rows] == ["yes", "yes", "no"]


def test_recommendation_blocks_say_when_nothing_meets_the_bar():
    """Catches a report that recommends a configuration below the bar."""
    blocks = recommendation_blocks([sweep(98304, 3, 4, 1024, "norm", 20.0)], [q(98304, 3, 4, 1024, "norm", 0.4)])
    para = next(b for b in blocks if isinstance(b, Para))
    assert para.text.startswith("No measured configuration reaches needle_recall >= 0.9")


def test_recommendation_blocks_say_when_no_configuration_is_measured_on_both_sides():
    """Catches an N with both a sweep and a quality run but no configuration in common being dropped silently."""
    blocks = recommendation_blocks([sweep(98304, 3, 4, 1024, "norm", 20.0)], [q(98304, 2, 2, 512, "norm", 1.0)])
    assert [b.text for b in blocks if isinstance(b, Heading)] == ["Recommendation for N=96K"]
    para = next(b for b in blocks if isinstance(b, Para))
    assert para.text.startswith("No configuration has both") and "1 have speed only, 1 quality only" in para.text


def ck(model, layer, lv, p, k, s, err, cos, p10="0.1", cov="0.5", n=16384, status="ok", ratio="", top=""):
    return dict(
        inputs=f"checkpoint:{model}",
        layer=str(layer),
        n=str(n),
        levels=str(lv),
        pooling=str(p),
        topk=str(k),
        scorer=s,
        status=status,
        out_rel_err=str(err),
        cos_median=str(cos),
        cos_p10=p10,
        coverage=cov,
        norm_ratio_median=ratio,
        err_top10_share=top,
    )


def test_checkpoint_table_medians_and_the_configuration_with_the_best_worst_layer():
    """Against hand-computed medians. Catches a table that mixes models, N or scorers, counts random/needle or
    failed rows, averages instead of taking the median (of any column), keys configurations without k, picks the
    configuration by its best layer (L=2 p=2 k=512 has the single smallest error, 0.1, but its worst layer, 0.9,
    is worse than L=3 p=4 k=512's worst, 0.4), or picks one whose worst layer failed (k=1024: only layer 0 ok)."""
    rows = [
        ck("m/a", 0, 2, 2, 512, "norm", 0.1, 0.9, p10="0.5", cov="0.1", ratio="0.5", top="0.2"),
        ck("m/a", 1, 2, 2, 512, "norm", 0.9, 0.5, p10="0.1", cov="0.2", ratio="0.9", top="0.6"),
        ck("m/a", 0, 3, 4, 512, "norm", 0.3, 0.8, p10="0.2", cov="0.9", ratio="0.6", top="0.3"),
        ck("m/a", 1, 3, 4, 512, "norm", 0.4, 0.7, p10="0.3", cov="1.0", ratio="1.0", top="0.9"),
        ck("m/a", 0, 3, 4, 1024, "norm", 0.05, 0.99, p10="0.9", cov="0.3", ratio="0.7"),
        ck("m/a", 1, 3, 4, 1024, "norm", 9.0, 0.0, status="error"),
        ck("m/a", 0, 3, 4, 512, "gla", 3.0, 0.1),
        ck("m/b", 0, 2, 2, 512, "norm", 2.0, 0.2),
        ck("m/a", 0, 2, 2, 512, "norm", 7.0, 0.1, n=32768),
        q(16384, 2, 2, 512, "norm", 0.9),
        {**q(16384, 2, 2, 512, "norm", 0.9), "inputs": "random"},
    ]
    headers, table = checkpoint_table(rows)
    col = {h: i for i, h in enumerate(headers)}
    assert [(r[col["model"]], r[col["N"]], r[col["scorer"]]) for r in table] == [
        ("m/a", "16K", "gla"),
        ("m/a", "16K", "norm"),
        ("m/a", "32K", "norm"),
        ("m/b", "16K", "norm"),
    ]
    a = table[1]
    assert a[col["layers"]] == "2" and a[col["configs"]] == "3"
    assert a[col["median out_rel_err"]] == "0.3"  # median of 0.1, 0.9, 0.3, 0.4, 0.05 (the mean would be 0.35)
    assert a[col["median cosine (per-token median)"]] == "0.8"  # median of 0.9, 0.5, 0.8, 0.7, 0.99
    assert a[col["median cosine (per-token p10)"]] == "0.3"  # median of 0.5, 0.1, 0.2, 0.3, 0.9 (mean 0.4)
    assert a[col["median coverage"]] == "0.3"  # median of 0.1, 0.2, 0.9, 1.0, 0.3 (mean 0.5)
    assert a[col["median norm ratio"]] == "0.7"  # median of 0.5, 0.9, 0.6, 1.0, 0.7 (mean 0.74)
    assert a[col["median top-10% error share"]] == "0.45"  # median of the four measured: 0.2, 0.6, 0.3, 0.9
    assert table[3][col["median norm ratio"]] == "-"  # a file from before these figures existed
    assert a[col["closest configuration"]] == "L=3 p=4 k=512" and a[col["its worst-layer out_rel_err"]] == "0.4"
    assert table[0][col["median out_rel_err"]] == "3" and table[3][col["median out_rel_err"]] == "2"


def test_checkpoint_table_keeps_two_runs_of_the_same_model_path_apart():
    """Two quality folders whose models share a path (/tmp/models/dense on a lent machine) are two rows, named by
    their folder, not one merged row (catches the report's source tag ignored)."""
    from lighthouse.quality.summary import SOURCE

    rows = [
        {**ck("/tmp/models/dense", 0, 2, 2, 512, "norm", 0.2, 0.9), SOURCE: "run-1"},
        {**ck("/tmp/models/dense", 0, 2, 2, 512, "norm", 0.8, 0.5), SOURCE: "run-2"},
    ]
    headers, table = checkpoint_table(rows)
    assert [(r[0], r[5]) for r in table] == [("run-1: /tmp/models/dense", "0.2"), ("run-2: /tmp/models/dense", "0.8")]
    assert set(checkpoint_layer_medians(rows, "out_rel_err")) == {
        ("run-1: /tmp/models/dense", 16384, "norm"),
        ("run-2: /tmp/models/dense", 16384, "norm"),
    }


def test_report_keeps_two_quality_folders_with_one_name_and_one_model_path_apart(tmp_path):
    """run-1/quality and run-2/quality (the layout `quality/n16k/quality` uses), both with /tmp/models/dense: two
    rows in the report's table (catches a tag made of the last folder name alone, which merges them)."""
    from lighthouse.report.build import build_report
    from lighthouse.harness.tables import QUALITY, append_row

    folders = [tmp_path / "run-1" / "quality", tmp_path / "run-2" / "quality"]
    for folder, err in zip(folders, (0.2, 0.8)):
        folder.mkdir(parents=True)
        append_row(
            folder / "quality.csv",
            QUALITY,
            {
                **ck("/tmp/models/dense", 0, 3, 4, 512, "norm", err, 0.5),
                "batch": "1",
                "heads": "4",
                "kv_heads": "4",
                "head_dim": "128",
            },
        )
    text = build_report(folders, tmp_path / "report").markdown.read_text()
    assert "| run-1/quality: /tmp/models/dense | 16K | norm | 1 | 1 | 0.2 |" in text
    assert "| run-2/quality: /tmp/models/dense | 16K | norm | 1 | 1 | 0.8 |" in text


def test_checkpoint_layer_medians_per_model_scorer_and_layer():
    """The per-layer picture of the chart, against hand-computed medians over configurations (catches layers or
    scorers merged, failed rows counted, a mean instead of the median)."""
    rows = [
        ck("m/a", 0, 2, 2, 512, "norm", 0.1, 0.9),
        ck("m/a", 0, 3, 4, 512, "norm", 0.2, 0.6),
        ck("m/a", 0, 3, 4, 1024, "norm", 0.9, 0.1),
        ck("m/a", 1, 2, 2, 512, "norm", 0.5, 0.4),
        ck("m/a", 1, 3, 4, 512, "norm", 9.0, 0.0, status="error"),
        ck("m/a", 0, 2, 2, 512, "gla", 0.7, 0.3),
    ]
    assert checkpoint_layer_medians(rows, "cos_median") == {
        ("m/a", 16384, "norm"): {0: 0.6, 1: 0.4},
        ("m/a", 16384, "gla"): {0: 0.3},
    }
    assert checkpoint_layer_medians(rows, "out_rel_err")[("m/a", 16384, "norm")] == {0: 0.2, 1: 0.5}


def test_checkpoint_section_and_layer_chart_in_the_report(tmp_path):
    """`report QUALITY` with checkpoint rows gains the trained-model table and the per-layer chart (catches
    checkpoint rows silently dropped because they are neither random nor needle)."""
    from lighthouse.report.build import build_report
    from lighthouse.harness.tables import QUALITY, append_row

    folder = tmp_path / "q"
    folder.mkdir()
    for layer, err, cos in ((0, 0.5, 0.8), (1, 0.7, 0.6)):
        append_row(
            folder / "quality.csv",
            QUALITY,
            {
                **ck("out/model", layer, 3, 4, 512, "norm", err, cos),
                "batch": "1",
                "heads": "4",
                "kv_heads": "4",
                "head_dim": "128",
            },
        )
    files = build_report([folder], tmp_path / "report")
    text = files.markdown.read_text()
    assert "A trained model's own q, k, v" in text
    assert f"| {tmp_path.name}/q: out/model | 16K | norm | 2 | 1 | 0.6 | 0.7 |" in text  # named by its folders
    assert any(p.name.endswith("checkpoint_layers_N16K.png") for p in (tmp_path / "report" / "charts").iterdir())
