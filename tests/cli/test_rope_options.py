"""`--rope pre,post` wherever a configuration is chosen (issue 22): option errors, the `rope` column (older files
read as pre), rows keyed by it, --resume of a folder written before it, and the report's split by it."""

import csv
import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lighthouse.cli import app
from lighthouse.harness import points, tables
from lighthouse.harness.tables import BASELINE, QUALITY, SWEEP, TRAIN, read_rows, row_key

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

GRID = "--seq 256 --topk 128 --levels 2 --pooling 2 --heads 1 --kv-heads 1".split()
TINY_SWEEP = [
    "sweep",
    "--suite",
    "quick",
    *GRID,
    *"--head-dim 8 --pass fwd --impl torch --baseline math".split(),
    *"--warmup 1 --rep 2 --min-rep 1 --no-floor --no-plot".split(),
]
TINY_QUALITY = ["quality", "--device", "cpu", *GRID, "--head-dim", "16", "--inputs", "random", "--no-plot"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def usage_error(result, *needles):
    """Exit 2, one `Error` line naming the option and the valid values, no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert "Error" in text, result.output
    for needle in needles:
        assert needle in text, (needle, result.output)


# ------------------------------------------------------------------------------------------- 1. the options
@pytest.mark.parametrize(
    "command",
    [
        ["sweep", "--dry-run"],
        ["quality", "--dry-run", "--device", "cpu"],
        ["profile", "--device", "cpu"],
        ["train", "--preset", "tiny", "--device", "cpu"],
        ["recommend", ".", "--seq", "8k", "--max-out-err", "0.1"],
    ],
)
def test_a_bad_rope_names_the_option_and_the_placements(command):
    """Catches --rope read as free text (a typo running pre), or a traceback instead of a usage error."""
    usage_error(invoke(*command, "--rope", "pre,pots"), "--rope", "'pots'", "pre, post")


@pytest.mark.parametrize("command", [["sweep", "--dry-run"], ["quality", "--dry-run", "--device", "cpu"]])
@pytest.mark.parametrize("theta", ["0", "-5", "inf"])
def test_a_bad_rope_theta_is_refused(command, theta):
    usage_error(invoke(*command, "--rope-theta", theta), "--rope-theta", "> 0")


def test_rope_is_a_list_option_and_theta_reaches_every_point():
    spec = points.resolve(
        "quick",
        {"seq": "4k", "topk": "128", "levels": "2", "rope": "pre,post", "rope_theta": 500000},
        cuda_available=False,
    )
    assert [p.rope for p in spec.points] == ["pre", "post"]  # pre first, as the default
    assert {p.config().rope_theta for p in spec.points} == {500000.0}
    assert [p.config().rope for p in spec.points] == ["pre", "post"]
    plain = points.resolve("quick", {"seq": "4k", "topk": "128", "levels": "2"}, cuda_available=False)
    assert [p.rope for p in plain.points] == ["pre"] and plain.points[0].config().rope_theta == 10000.0


def test_train_points_one_lighthouse_per_placement_and_one_dense():
    from lighthouse.train.command import plan
    from lighthouse.train.throughput import point_columns

    run = plan("tiny", "512", "dense,lighthouse", rope="pre,post", device="cpu")
    assert [(p.attention, p.preset.rope) for p in run.points] == [
        ("dense", "pre"),
        ("lighthouse", "pre"),
        ("lighthouse", "post"),
    ]
    cols = [point_columns(p, run.options) for p in run.points]
    assert [c["rope"] for c in cols] == [None, "pre", "post"]
    assert len({row_key({k: tables.cell(v) for k, v in c.items()}, TRAIN) for c in cols}) == 3
    cfg = run.points[2].preset.lighthouse()
    assert cfg.rope == "post" and cfg.rope_theta == run.preset.rope_theta
    with pytest.raises(ValueError, match="--rope: the two-stage recipe"):
        plan("tiny", None, "lighthouse", rope="pre,post", recipe="two-stage", device="cpu")


# ------------------------------------------------------------------------------------------- 2. the column
def _drop_column(path: Path, column: str) -> None:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    i = rows[0].index(column)
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([r[:i] + r[i + 1 :] for r in rows])


def test_the_committed_baseline_reads_as_pre():
    rows, torn = read_rows(ROOT / "reports" / "baselines" / "nvidia-h200.csv", BASELINE)
    assert rows and not torn and {r["rope"] for r in rows} == {"pre"}


@pytest.mark.parametrize("table", [SWEEP, QUALITY, TRAIN], ids=lambda t: t.name)
def test_an_older_file_reads_pre_on_configuration_rows_and_empty_on_dense_rows(table, tmp_path):
    """Catches an old file refused for lacking `rope`, its dense rows given a placement (their keys would no
    longer match a new run's, so --resume would measure them again), or its Lighthouse rows read as empty."""
    path = tmp_path / "old.csv"
    lighthouse = {
        "kind": "lighthouse",
        "attention": "lighthouse",
        "levels": 2,
        "pooling": 2,
        "topk": 128,
        "scorer": "norm",
        "rope": "post",
        "status": "ok",
        tables.FINISHED_AT: "x",
    }
    dense = {"kind": "dense", "attention": "dense", "status": "ok", tables.FINISHED_AT: "x"}
    tables.write_rows(path, table, [lighthouse, dense])
    _drop_column(path, "rope")
    (lh, dn), torn = read_rows(path, table)
    assert not torn and lh["rope"] == "pre" and dn["rope"] == ""
    assert row_key(lh, table) == row_key({**lh, "rope": "pre"}, table) != row_key({**lh, "rope": "post"}, table)
    assert row_key({k: v for k, v in dn.items() if k != "rope"}, table) == row_key(dn, table)


def test_rows_differ_by_rope_in_the_key():
    spec = points.resolve(
        "quick",
        {"seq": "4k", "topk": "128", "levels": "2", "rope": "pre,post", "pass": "fwd", "floor": True},
        cuda_available=False,
    )
    tasks = points.plan_tasks(spec, ["torch"], ["math"])
    keys = [t.key("cpu") for t in tasks]
    assert len(keys) == len(set(keys))
    by_kind = {}
    for t in tasks:
        by_kind.setdefault(t.kind, []).append(t)
    assert len(by_kind["dense"]) == 1  # dense does not depend on the placement: measured once
    assert sorted(t.point.rope for t in by_kind["lighthouse"]) == ["post", "pre"]
    assert sorted(t.point.rope for t in by_kind["floor"]) == ["post", "pre"]


# ------------------------------------------------------------------------------------------- 3. --resume
def _make_old(folder: Path, filename: str) -> None:
    """Turn a finished run into one written before `rope`: no column, no rope_theta recorded."""
    _drop_column(folder / filename, "rope")
    info = json.loads((folder / "machine.json").read_text())
    info["options"].pop("rope_theta", None)
    (folder / "machine.json").write_text(json.dumps(info))


@pytest.mark.parametrize("command, filename", [(TINY_SWEEP, "results.csv"), (TINY_QUALITY, "quality.csv")])
def test_resume_of_a_folder_written_before_rope_runs_nothing_again(command, filename, tmp_path):
    out = tmp_path / "run"
    assert invoke(*command, "--out", out).exit_code == 0
    before = (out / filename).read_text().splitlines()
    _make_old(out, filename)
    result = invoke(*command, "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    rows = read_rows(out / filename, SWEEP if filename == "results.csv" else QUALITY)[0]
    assert len(rows) == len(before) - 1  # the same rows (header aside), none measured again
    assert {r["rope"] for r in rows if r.get("topk")} == {"pre"}
    again = invoke(*command, "--out", out, "--resume", "--rope", "post")
    usage_error(again, "--rope")  # another grid than the one recorded


# ------------------------------------------------------------------------------------------- 4. the quality runner
def test_quality_rows_per_placement_differ_on_needle_rope_inputs(tmp_path):
    """Catches the runner handing `post` the rotated q, k (or `pre` the raw ones), a missing rope cell, or one
    dense reference for a placement that sees other q, k. On needle-rope inputs both placements are compared
    with the same dense attention (recall 1); pre's rows equal those of plain needle inputs (same tensors)."""
    out = tmp_path / "q"
    args = [
        "quality",
        "--device",
        "cpu",
        "--seq",
        "2k",
        "--topk",
        "128",
        "--levels",
        "2",
        "--pooling",
        "2",
        "--heads",
        "2",
        "--head-dim",
        "32",
        "--rope",
        "pre,post",
        "--inputs",
        "needle,needle-rope",
        "--no-plot",
        "--out",
        out,
    ]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    rows = {(r["inputs"], r["rope"]): r for r in read_rows(out / "quality.csv", QUALITY)[0]}
    assert set(rows) == {(i, r) for i in ("needle", "needle-rope") for r in ("pre", "post")}
    # position-free needles under post would be scored against a dense attention that no longer finds them
    # (the H200 grid read dense recall 0): an invalid row that names needle-rope, not a recall of 0
    bad = rows.pop(("needle", "post"))
    assert bad["status"] == "invalid" and "needle-rope" in bad["reason"] and not bad["needle_recall"]
    assert all(r["status"] == "ok" for r in rows.values())
    pre, post = rows["needle-rope", "pre"], rows["needle-rope", "post"]
    assert float(pre["dense_needle_recall"]) == float(post["dense_needle_recall"]) == 1.0
    assert (pre["needle_recall"], pre["out_rel_err"]) != (post["needle_recall"], post["out_rel_err"])
    for figure in ("needle_recall", "out_rel_err", "coverage"):
        assert rows["needle", "pre"][figure] == pre[figure]


def test_post_on_needle_rope_is_lighthouse_on_the_raw_qk_at_positions_0_to_n(tmp_path):
    """The runner's figure against the call written out: raw q, k by an independent float64 inverse rotation,
    lighthouse_attention(rope='post', positions=0..N-1), compared with dense attention on the rotated view."""
    import torch

    from lighthouse import lighthouse_attention
    from lighthouse.quality.dense import dense_reference
    from lighthouse.quality.evaluate import measure_point
    from lighthouse.quality.inputs import synthetic
    from lighthouse.quality.metrics import out_rel_err

    n, d = 1024, 32
    x = synthetic("needle-rope", 1, 2, 1, n, d, "fp32", torch.device("cpu"), seed=3, per_bucket=2, rope_theta=5000.0)
    ref = dense_reference(x.q, x.k, x.v)
    got = measure_point(x, ref, 2, 2, 128, "norm", rope="post")
    raw_q, raw_k = (_turn(t, 5000.0, inverse=True) for t in (x.q, x.k))
    want = lighthouse_attention(
        raw_q, raw_k, x.v, levels=2, pooling=2, topk=128, rope="post", rope_theta=5000.0, positions=torch.arange(n)
    )
    assert math.isclose(got["out_rel_err"], out_rel_err(want, ref.out), rel_tol=1e-4)


def _turn(x, theta: float, inverse: bool = False):
    """RoPE at positions 0..N-1 written out in float64 complex numbers: pair (j, j + D/2) as j + i (j + D/2)."""
    import torch

    n, d = x.shape[-2], x.shape[-1]
    freq = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    turn = torch.polar(
        torch.ones(n, d // 2, dtype=torch.float64),
        torch.arange(n, dtype=torch.float64)[:, None] * freq * (-1 if inverse else 1),
    )
    z = torch.complex(x[..., : d // 2].double(), x[..., d // 2 :].double()) * turn
    return torch.cat([z.real, z.imag], dim=-1).to(x.dtype)


# ------------------------------------------------------------------------------------------- 5. recommend, charts
def test_recommend_chooses_among_the_placements_asked_for():
    from lighthouse.quality.recommend import Bar, recommend, render

    def speed(rope, s):
        return {
            "kind": "lighthouse",
            "status": "ok",
            "pass": "fwdbwd",
            "n": "8192",
            "levels": "3",
            "pooling": "4",
            "topk": "512",
            "scorer": "norm",
            "rope": rope,
            "speedup_vs_sdpa_cudnn": str(s),
            "dtype": "bf16",
        }

    def quality(rope, recall):
        return {
            "status": "ok",
            "inputs": "needle-rope",
            "n": "8192",
            "levels": "3",
            "pooling": "4",
            "topk": "512",
            "scorer": "norm",
            "rope": rope,
            "needle_recall": str(recall),
        }

    sweep_rows, quality_rows = [speed("pre", 3.0), speed("post", 2.9)], [quality("pre", 0.5), quality("post", 0.95)]
    bar = Bar("needle_recall", 0.9, "needle-rope")
    rec = recommend(sweep_rows, quality_rows, 8192, bar)
    assert rec.chosen.config == (3, 4, 512, "norm", "post") and "rope=post" in render(rec)
    assert recommend(sweep_rows, quality_rows, 8192, bar, ropes=["pre"]).chosen is None


def test_charts_draw_post_dashed_only_when_both_placements_are_there():
    import pandas as pd

    from lighthouse.bench.plots import Styles

    row = {
        "kind": "lighthouse",
        "impl": "lighthouse_triton",
        "levels": 3,
        "pooling": 4,
        "topk": 512,
        "scorer": "norm",
        "dtype": "bf16",
        "batch": 1,
        "heads": 8,
        "kv_heads": 8,
        "head_dim": 128,
    }
    both = Styles(pd.DataFrame([{**row, "rope": "pre"}, {**row, "rope": "post"}]))
    assert both.line("lighthouse_triton", {"rope": "post"})[0] == "--"
    assert both.line("lighthouse_triton", {"rope": "pre"})[0] == "-"
    assert both.config({**row, "rope": "post"}).endswith("rope=post")
    assert both.color({**row, "rope": "post"}) == both.color({**row, "rope": "pre"})
    one = Styles(pd.DataFrame([{**row, "rope": "pre"}]))
    assert one.config({**row, "rope": "pre"}) == "L3 p4 k512 norm" and one.line("lighthouse_triton", row) == ("-", "o")


# ------------------------------------------------------------------------------------------- 6. needle-rope
@pytest.mark.parametrize("theta", [10000.0, 500000.0])
def test_needle_rope_puts_the_planted_mass_on_j_in_the_rotated_space(theta):
    """Independent float64: rotate what `post` is given (the raw q, k) at positions 0..N-1 with complex numbers,
    take the causal softmax of each needle query: 0.9 +/- 0.01 of it sits on k_j, and dense attention on the
    rotated view retrieves every needle. In the raw space the needles are not there (what makes the two
    placements differ): query i's mass on j is far lower there."""
    import torch

    from lighthouse.quality.dense import dense_reference
    from lighthouse.quality.evaluate import dense_needle_recall, view_of
    from lighthouse.quality.inputs import synthetic

    n, d = 2048, 32
    x = synthetic("needle-rope", 1, 4, 2, n, d, "fp32", torch.device("cpu"), seed=0, per_bucket=2, rope_theta=theta)
    post = view_of(x, "post")
    assert post.q is not x.q and post.dense_q is x.q  # post gets the raw q, k; dense sees the rotated view

    def mass_on_j(q, k):
        group = q.shape[1] // k.shape[1]
        i, j = x.needles.query, x.needles.key
        qi = q[:, :, i].double()  # (B, Hq, M, D)
        keys = k.double().repeat_interleave(group, dim=1)
        scores = qi @ keys.transpose(-1, -2) / math.sqrt(d)  # (B, Hq, M, N)
        scores = scores.masked_fill(torch.arange(n)[None, :] > i[:, None], float("-inf"))
        return scores.softmax(-1)[..., torch.arange(i.numel()), j]

    rotated = mass_on_j(_turn(post.q, theta), _turn(post.k, theta))
    assert float(rotated.min()) >= 0.89 and float(rotated.max()) <= 0.91, (rotated.min(), rotated.max())
    raw = mass_on_j(post.q, post.k)
    assert float(raw.mean()) < 0.5
    assert dense_needle_recall(x, dense_reference(x.q, x.k, x.v)) == 1.0


def test_checkpoint_inputs_under_post_are_un_rotated_with_the_models_rope(tmp_path):
    """Catches a checkpoint's captured (rotated) q handed to `post` as it is, or un-rotated with the run's
    --rope-theta instead of the model's: post's q must be the model's q_proj output, before RoPE."""
    import torch

    transformers = pytest.importorskip("transformers")

    from lighthouse.quality.capture import HELDOUT_FILE
    from lighthouse.quality.evaluate import view_of
    from lighthouse.quality.inputs import checkpoint_layers

    cfg = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rope_parameters={"rope_type": "default", "rope_theta": 50000.0},
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg)
    model.save_pretrained(tmp_path)
    tokens = torch.randint(0, 64, (1000,))
    torch.save(tokens, tmp_path / HELDOUT_FILE)
    [x] = checkpoint_layers(f"checkpoint:{tmp_path}", 1, 64, "fp32", torch.device("cpu"), seed=0)
    assert x.rotated and x.rope_theta == 50000.0
    seen = {}
    hook = model.model.layers[0].self_attn.q_proj.register_forward_hook(lambda m, a, o: seen.setdefault("q", o))
    with torch.no_grad():
        model.model(input_ids=tokens[:64][None])
    hook.remove()
    raw = seen["q"].view(1, 64, 4, 8).transpose(1, 2)
    assert torch.allclose(view_of(x, "post").q, raw, atol=1e-5)
    assert view_of(x, "pre").q is x.q
