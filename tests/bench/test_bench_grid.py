"""Range and list parsing of the sweep options, suites and the expansion into points."""

import pytest

from lighthouse.harness import points
from lighthouse.harness.options import OptionError, parse_ints, parse_option


def test_doubling_range_with_suffixes():
    assert parse_ints("8k..256k", "--seq") == [8192, 16384, 32768, 65536, 131072, 262144]


def test_levels_range_steps_by_one():
    assert parse_option("levels", "2..4") == [2, 3, 4]


def test_plain_list_and_suffixes():
    assert parse_ints("8k,96k,128k", "--seq") == [8192, 98304, 131072]
    assert parse_ints("1m", "--seq") == [1048576]
    assert parse_ints("1.5k,4096", "--topk") == [1536, 4096]
    assert parse_ints("8K, 16k ,8k", "--seq") == [8192, 16384]  # case, spaces, duplicates dropped


def test_doubling_range_stops_at_its_end():
    assert parse_ints("3k..20k", "--seq") == [3072, 6144, 12288]


@pytest.mark.parametrize(
    "key, text, option",
    [
        ("seq", "8x", "--seq"),
        ("seq", "8k..", "--seq"),
        ("seq", "256k..8k", "--seq"),
        ("topk", "", "--topk"),
        ("kv_heads", "0", "--kv-heads"),
        ("seq", "1.3", "--seq"),
        ("dtype", "fp8", "--dtype"),
        ("scorer", "norm,cosine", "--scorer"),
        ("pass", "forward", "--pass"),
        ("baseline", "xformers", "--baseline"),
        ("device", "cuda,cpu", "--device"),
        ("rep", "many", "--rep"),
    ],
)
def test_bad_strings_name_the_option(key, text, option):
    with pytest.raises(OptionError) as err:
        parse_option(key, text)
    assert str(err.value).startswith(option + ":")


def test_choice_aliases():
    assert parse_option("dtype", "bfloat16,fp32") == ["bf16", "fp32"]
    assert parse_option("baseline", "sdpa_cudnn,flex") == ["cudnn", "flex"]
    assert parse_option("impl", ["torch", "triton"]) == ["torch", "triton"]


def test_paper_suite_points():
    spec = points.resolve("paper", {"device": "cpu"}, cuda_available=False)
    pairs = [(p.shape.n, p.topk, p.levels) for p in spec.points if p.shape.heads == 8]
    assert pairs == [
        (8192, 512, 3),
        (16384, 1024, 3),
        (32768, 2048, 3),
        (65536, 4096, 3),
        (98304, 1536, 3),
        (131072, 4096, 3),
        (262144, 4096, 3),
        (524288, 4096, 3),
        (1048576, 4096, 3),
        (1048576, 4096, 4),
    ]
    p = spec.points[0]
    assert (p.shape.dtype, p.shape.batch, p.shape.heads, p.shape.head_dim, p.levels, p.pooling) == (
        "bf16",
        1,
        8,
        128,
        3,
        4,
    )
    assert spec.baselines == ["cudnn", "flash"] and spec.impls == ["torch", "triton"]
    # GQA (issue 24): Hq = 32 and 64 on Hkv = 8, head dim 64 and 128, at each N of 8K..96K with that N's k
    gqa = {
        (p.shape.n, p.topk, p.shape.heads, p.shape.kv_heads, p.shape.head_dim)
        for p in spec.points
        if p.shape.heads != 8
    }
    assert gqa == {
        (n, k, h, 8, d)
        for n, k in ((8192, 512), (16384, 1024), (32768, 2048), (65536, 4096), (98304, 1536))
        for h in (32, 64)
        for d in (64, 128)
    }
    assert all((p.levels, p.pooling, p.scorer) == (3, 4, "norm") for p in spec.points if p.shape.heads != 8)


def test_the_gqa_suite_is_the_paper_suite_s_gqa_points():
    """suites/gqa.toml runs the paper suite's GQA points alone (one GPU command): the two must not drift apart."""
    paper = points.resolve("paper", {"device": "cpu"}, cuda_available=False)
    gqa = points.resolve("gqa", {"device": "cpu"}, cuda_available=False)
    assert set(gqa.points) == {p for p in paper.points if p.shape.heads != p.shape.kv_heads} and len(gqa.points) == 20
    clocks = points.resolve("clocks", {"device": "cpu"}, cuda_available=False)  # issue 24's four points
    assert sorted((p.shape.n, p.shape.batch, p.topk) for p in clocks.points) == [
        (8192, 1, 512),
        (16384, 4, 1024),
        (65536, 1, 4096),
        (98304, 1, 1536),
    ]


def test_full_suite_keeps_its_mha_grid_and_adds_gqa():
    spec = points.resolve("full", {"device": "cpu"}, cuda_available=False)
    mha = [p for p in spec.points if p.shape.heads == 8]
    assert len(mha) == 7 * 3 * 3 * 3 * 2 and {p.shape.head_dim for p in mha} == {128}
    gqa = [p for p in spec.points if p.shape.heads != 8]
    assert {(p.shape.heads, p.shape.kv_heads, p.shape.head_dim) for p in gqa} == {
        (32, 8, 64),
        (32, 8, 128),
        (64, 8, 64),
        (64, 8, 128),
    }
    assert len(gqa) == 7 * 3 * 4 and {(p.levels, p.pooling, p.scorer) for p in gqa} == {(3, 4, "norm")}
    ci = points.resolve("ci", {"device": "cpu"}, cuda_available=False)
    assert sorted((p.shape.n, p.shape.batch, p.shape.heads, p.shape.kv_heads, p.shape.head_dim) for p in ci.points) == [
        (16384, 4, 8, 8, 128),
        (65536, 1, 8, 8, 128),
        (98304, 1, 8, 8, 128),
    ]  # the ci suite is unchanged


def test_flags_replace_a_suite_key_everywhere():
    spec = points.resolve("paper", {"device": "cpu", "seq": "16k,32k"}, cuda_available=False)
    assert sorted({p.shape.n for p in spec.points}) == [16384, 32768]
    assert sorted({p.topk for p in spec.points}) == [512, 1024, 1536, 2048, 4096]  # every grid's k at every N


def test_no_suite_on_cpu_is_quick():
    spec = points.resolve(None, {}, cuda_available=False)
    assert spec.suite == "quick" and spec.device == "cpu" and not spec.floor
    assert sorted({(p.shape.n, p.levels) for p in spec.points}) == [(2048, 2), (2048, 3), (4096, 2), (4096, 3)]


def test_cuda_suite_without_cuda_is_refused():
    with pytest.raises(OptionError, match="--device"):
        points.resolve("ci", {}, cuda_available=False)


def test_suite_from_path_and_unknown_keys(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(
        'device = "cpu"\nseq = [1024, "2k"]\ntopk = 128\nlevels = 2\n[[grid]]\nheads = 4\n[[grid]]\nheads = 2\n'
    )
    spec = points.resolve(str(path), {}, cuda_available=False)
    assert sorted((p.shape.n, p.shape.heads) for p in spec.points) == [(1024, 2), (1024, 4), (2048, 2), (2048, 4)]
    path.write_text('seq = "1k"\ntopk = 128\nwarmpu = 3\n')
    with pytest.raises(OptionError, match="warmpu"):
        points.resolve(str(path), {}, cuda_available=False)
    with pytest.raises(OptionError, match="unknown suite"):
        points.resolve("nope", {}, cuda_available=False)


def test_invalid_points_are_planned_as_invalid_rows():
    spec = points.resolve(None, {"seq": "1k,2k", "levels": "3", "topk": "128,200"}, cuda_available=False)
    tasks = points.plan_tasks(spec, ["torch"], ["math"])
    lh = [t for t in tasks if t.kind == "lighthouse"]
    bad = {(t.shape.n, t.point.topk): t.invalid for t in lh if t.invalid}
    assert set(bad) == {(1024, 128), (1024, 200), (2048, 200)}
    assert "topk" in bad[(2048, 200)] and "N=1024 is too short" in bad[(1024, 128)]
    # dense rows come before the Lighthouse rows of their N, measured once per (N, pass)
    assert [t.impl for t in tasks[:3]] == ["sdpa_math"] * 3
    assert sum(t.kind == "dense" for t in tasks) == 2 * 3
