"""Passkey retrieval: the prompt builder, the scorer against fake models, the CSV + heatmaps + chance verdict
from a tiny saved Llama, and the CLI end to end with its errors."""

import csv
import json

import pytest
import torch

from lighthouse.harness.tables import PASSKEY, read_rows
from lighthouse.quality import passkey_prompts as pk
from lighthouse.quality.passkey_command import PasskeySpec, measure_cell, resolve, run, summarize

transformers = pytest.importorskip("transformers")


def _spec(**kw):
    base = dict(models=[], lengths=[200], depths=[0, 50, 100], digits=5, trials=40, batch=16, filler="sentence")
    base.update(kw)
    return PasskeySpec(**base)


@pytest.mark.parametrize("filler", ["sentence", "heldout"])
@pytest.mark.parametrize("depth", [0.0, 0.3, 1.0])
def test_prompt_has_exact_length_passkey_at_depth_and_is_deterministic(filler, depth):
    """Catches a prompt off by a byte, a needle not where the depth says (0 = first, 1 = just before the
    question), an answer that is not the passkey, or prompts that change between calls."""
    held = b"def f(x):\n    return x\n\x00class A:\n    pass\n" * 3
    p = pk.build_prompt(300, depth, digits=5, seed=7, trial=2, filler=filler, heldout=held)
    assert len(p.tokens) == 300 and all(0 <= t < 256 for t in p.tokens)
    data = bytes(p.tokens)
    budget = 300 - pk.fixed_bytes(5)
    needle = pk.needle(p.passkey)
    assert p.needle_at == round(depth * budget) and data[p.needle_at : p.needle_at + len(needle)] == needle
    assert data.count(b"PASSKEY = ") == 1
    assert data.endswith(pk.QUESTION + p.passkey.encode()) and p.answer_at == 295
    assert len(p.passkey) == 5 and p.passkey.isdigit()
    assert pk.build_prompt(300, depth, digits=5, seed=7, trial=2, filler=filler, heldout=held) == p
    other = pk.build_prompt(300, depth, digits=5, seed=8, trial=2, filler=filler, heldout=held)
    assert other.passkey != p.passkey or other.tokens != p.tokens
    if filler == "heldout":
        assert b"\x00" not in data and (b"return x" in data or b"pass" in data)


def test_prompt_rejects_too_short_length_and_bad_depth():
    """Catches a silently truncated prompt or a depth outside 0..100% accepted."""
    with pytest.raises(ValueError, match="--lengths"):
        pk.build_prompt(pk.fixed_bytes(5) - 1, 0.5)
    assert len(pk.build_prompt(pk.fixed_bytes(5), 0.5).tokens) == pk.fixed_bytes(5)
    with pytest.raises(ValueError, match="--depths"):
        pk.build_prompt(200, 1.5)


def _oracle(tokens, keep):
    """A model that always knows the passkey: its guess at t is the true next byte (free and among digits)."""
    nxt = torch.cat([tokens[:, 1:], torch.zeros_like(tokens[:, :1])], dim=1)
    return nxt[:, -keep:], nxt[:, -keep:]


def _constant(tokens, keep):
    flat = torch.full((tokens.shape[0], keep), ord("3"))
    return flat, flat


def _mute_knower(tokens, keep):
    """Never emits a digit (its free argmax is a space), but among the digits it ranks the true one first."""
    nxt = _oracle(tokens, keep)[0]
    return torch.full_like(nxt, ord(" ")), nxt


def _mute_guesser(tokens, keep):
    """Never emits a digit, and among the digits always picks '3': a guesser."""
    return torch.full((tokens.shape[0], keep), ord(" ")), torch.full((tokens.shape[0], keep), ord("3"))


def test_scorer_oracle_is_perfect_constant_is_at_chance():
    """Catches an off-by-one in which logits predict which digit (the oracle would fail), and a chance verdict
    that calls a constant guesser above chance or a perfect model at chance."""
    spec = _spec()
    good = measure_cell(_oracle, 200, 50, spec, None)
    assert good["exact_acc"] == 1 and good["digit_acc"] == 1 and good["above_chance"] == 1
    flat = measure_cell(_constant, 200, 50, spec, None)
    # independent count: how many of the passkeys' digits are '3'
    keys = [pk.build_prompt(200, 0.5, seed=0, trial=t).passkey for t in range(40)]
    assert flat["digit_hits"] == sum(k.count("3") for k in keys)
    assert flat["exact_acc"] == 0 and flat["above_chance"] == 0
    assert (flat["chance_digit"], flat["chance_exact"]) == (0.1, 1e-5)
    rows = [{"model": "m", "attention": "saved", "status": "ok", **flat} for _ in range(3)]
    [line] = summarize(rows)
    assert "at chance in every cell" in line and "cannot learn the task" in line
    [line] = summarize([{"model": "m", "attention": "saved", "status": "ok", **good}])
    assert "at chance" not in line and "mean exact-match 1" in line


def test_chance_is_judged_among_the_digits():
    """A short-trained byte model may rarely emit a digit at all: its free-argmax digit accuracy is far below 1/10,
    so that 1/10 is no chance level for it. Catches a verdict that calls a model knowing the passkey among the
    digits (but never emitting one) at chance, or a digit-restricted guesser above chance."""
    spec = _spec()
    knower = measure_cell(_mute_knower, 200, 50, spec, None)
    assert knower["digit_acc"] == 0 and knower["exact_acc"] == 0
    assert knower["digit_only_acc"] == 1 and knower["digit_only_hits"] == spec.trials * spec.digits
    assert knower["above_chance"] == 1
    guesser = measure_cell(_mute_guesser, 200, 50, spec, None)
    keys = [pk.build_prompt(200, 0.5, seed=0, trial=t).passkey for t in range(spec.trials)]
    assert guesser["digit_only_hits"] == sum(k.count("3") for k in keys)  # independent count
    assert guesser["digit_acc"] == 0 and guesser["above_chance"] == 0


def test_binomial_tail_matches_direct_sum():
    """Catches a wrong tail (e.g. P(X > k) instead of P(X >= k)) in the chance test."""
    assert pk.above_chance_p(0, 10, 0.1) == pytest.approx(1.0)
    assert pk.above_chance_p(10, 10, 0.1) == pytest.approx(1e-10)
    assert pk.above_chance_p(1, 2, 0.5) == pytest.approx(0.75)


def test_summary_of_a_model_above_chance_only_among_the_digits_says_so():
    """Catches a summary that calls a model above chance while printing only figures of 0 (its exact match and
    free-argmax digit accuracy), without the digit-only accuracy that put it there."""
    spec = _spec()
    row = measure_cell(_mute_knower, 200, 50, spec, None)
    [line] = summarize([{"model": "m", "attention": "saved", "status": "ok", **row}])
    assert "1 of 1 cells above chance" in line and "mean digit-only accuracy 1" in line


def test_resume_measures_again_the_rows_written_before_the_digit_only_score(tmp_path):
    """An old passkey.csv (no digit_only_* columns) judged chance on the free argmax: --resume must measure its
    ok rows again, once, with the digit-only score, instead of mixing the two tests. Catches old rows kept as
    finished, or measured again but left in the file beside their new rows."""
    import csv

    (tmp_path / "m").mkdir()  # the loader is replaced: the folder only needs its trained context
    (tmp_path / "m" / "lighthouse-train.json").write_text(json.dumps({"preset": {"seq": 512}}))
    spec = resolve([tmp_path / "m"], "200", "0,50", "saved", 5, 4, 4, "sentence", 0, "cpu", None)
    out = tmp_path / "old"
    out.mkdir()
    old_cols = [c for c in PASSKEY.columns if not c.startswith("digit_only")]
    with (out / "passkey.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=old_cols)
        w.writeheader()
        for d in (0, 50):
            w.writerow(
                {
                    **{c: "" for c in old_cols},
                    "model": str(tmp_path / "m"),
                    "attention": "saved",
                    "length": 200,
                    "depth": d,
                    "digits": 5,
                    "trials": 4,
                    "filler": "sentence",
                    "device": "cpu",
                    "dtype": spec.dtype,
                    "status": "ok",
                    "exact_acc": 0,
                    "digit_acc": 0,
                    "digit_hits": 0,
                    "chance_digit": 0.1,
                    "chance_exact": 1e-5,
                    "p_chance": 1,
                    "above_chance": 0,
                    "seed": 0,
                    "finished_at": "2026-11-29T00:00:00+00:00",
                }
            )
    calls = []
    assert run(spec, out, resume=True, plot=False, loader=lambda *a: calls.append(a) or _mute_knower) == 0
    rows, torn = read_rows(out / "passkey.csv", PASSKEY)
    assert len(calls) == 1 and not torn and len(rows) == 2
    assert {r["digit_only_acc"] for r in rows} == {"1"} and {r["above_chance"] for r in rows} == {"1"}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    cfg = transformers.LlamaConfig(
        vocab_size=256,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg)
    path = tmp_path_factory.mktemp("model") / "dense"
    model.save_pretrained(path)
    return path


def test_run_writes_csv_summary_and_heatmaps(tiny_model, tmp_path, monkeypatch):
    """Catches rows missing per cell, a heatmap drawn for a model at chance (the random tiny Llama) or missing
    for one that is not (an oracle loaded in its place), and --resume running finished cells again."""
    spec = resolve([tiny_model], "96,128", "0,50,100", "saved", 5, 4, 4, "sentence", 0, "cpu", None)
    out = tmp_path / "run"
    assert run(spec, out, plot=True) == 0
    rows, torn = read_rows(out / "passkey.csv", PASSKEY)
    assert not torn and len(rows) == 6 and {r["status"] for r in rows} == {"ok"}
    assert {(int(r["length"]), float(r["depth"])) for r in rows} == {(n, d) for n in (96, 128) for d in (0, 50, 100)}
    assert "cannot learn the task" in (out / "summary.md").read_text()
    assert not list(out.glob("passkey_*.png"))
    assert json.loads((out / "machine.json").read_text())

    calls = []
    assert run(spec, out, resume=True, loader=lambda *a: calls.append(a) or _oracle) == 0
    assert not calls and len(read_rows(out / "passkey.csv", PASSKEY)[0]) == 6

    out2 = tmp_path / "oracle"
    assert run(spec, out2, loader=lambda *a: _oracle) == 0
    assert {r["exact_acc"] for r in read_rows(out2 / "passkey.csv", PASSKEY)[0]} == {"1"}
    model_tag = tiny_model.parent.name  # tmp_path_factory numbers it (model0, model1, ...) across the session
    assert sorted(p.name for p in out2.glob("passkey_*")) == [f"passkey_{model_tag}_dense_saved.png"]


def test_cli_end_to_end_and_errors(tiny_model, tmp_path):
    """Catches a CLI that does not write the table, or that answers a length above the trained context, a
    length below the prompt's fixed parts or a bad depth with a traceback instead of exit 2 naming the option."""
    from typer.testing import CliRunner

    from lighthouse.cli import app

    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(
        app,
        [
            "passkey",
            str(tiny_model),
            "--lengths",
            "128",
            "--depths",
            "0,100",
            "--trials",
            "2",
            "--filler",
            "sentence",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--no-plot",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Loading weights" not in result.output and "it/s]" not in result.output, result.output  # defect 11
    with (out / "passkey.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 2
    for args, option in (
        (["--lengths", "512"], "--lengths"),
        (["--lengths", "20"], "--lengths"),
        (["--depths", "0,150"], "--depths"),
        (["--depths", "x"], "--depths"),
        (["--attention", "sparse"], "--attention"),
        (["--digits", "0"], "--digits"),
    ):
        result = runner.invoke(
            app, ["passkey", str(tiny_model), "--device", "cpu", "--out", str(tmp_path / "e"), *args]
        )
        assert result.exit_code == 2 and option in result.output and "Traceback" not in result.output, result.output


def _llama_config():
    """A two-layer byte-level Llama small enough for the CPU, long enough for 512-byte prompts."""
    return transformers.LlamaConfig(
        vocab_size=256,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        use_cache=False,
    )


def test_lighthouse_folder_runs_saved_dense_and_lighthouse(tmp_path):
    """Catches the dense switch ignored on load (--attention lighthouse giving the dense model's answers, or
    saved != dense for a folder saved after the dense recovery), the trained context not read from
    lighthouse-train.json, and --attention lighthouse accepted for a folder without Lighthouse settings."""
    from lighthouse import hf
    from lighthouse.config import LighthouseConfig
    from lighthouse.quality.passkey_command import load_predict, trained_context

    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(_llama_config())
    hf.configure(model, LighthouseConfig(levels=2, pooling=2, topk=128, impl="torch"), dense_layers=[0], dense=True)
    path = tmp_path / "lighthouse-then-dense"
    model.save_pretrained(path)
    (path / "lighthouse-train.json").write_text(json.dumps({"preset": {"seq": 512}}))
    assert trained_context(path) == 512
    tokens = torch.tensor([pk.build_prompt(512, 0.5, trial=t).tokens for t in range(2)])
    cpu = torch.device("cpu")
    saved, dense, sparse = (load_predict(path, a, cpu, "fp32") for a in ("saved", "dense", "lighthouse"))
    logits_keep = 64
    for a, b in zip(saved(tokens, logits_keep), dense(tokens, logits_keep)):
        assert torch.equal(a, b)
    free, digits = sparse(tokens, logits_keep)
    assert not torch.equal(free, dense(tokens, logits_keep)[0])
    # the restricted argmax, computed here from the model's own logits (catches a wrong slice or offset)
    hf.register()
    model = transformers.AutoModelForCausalLM.from_pretrained(path, attn_implementation="lighthouse").eval()
    hf.set_dense(model, False)
    with torch.no_grad():
        logits = model(input_ids=tokens, use_cache=False).logits[:, -logits_keep:]
    want = torch.tensor(
        [
            [max(range(48, 58), key=lambda b: float(logits[i, t, b])) for t in range(logits_keep)]
            for i in range(tokens.shape[0])
        ]
    )
    assert torch.equal(digits, want)
    plain = tmp_path / "plain"
    transformers.LlamaForCausalLM(_llama_config()).save_pretrained(plain)
    with pytest.raises(ValueError, match="--attention lighthouse"):
        load_predict(plain, "lighthouse", cpu, "fp32")


def test_a_post_folder_runs_with_lighthouse_as_its_model_did(tmp_path):
    """Catches passkey's loader leaving a rope='post' model without the hooks that hand its Lighthouse layers
    un-rotated q and k (every --attention lighthouse cell came back invalid on the H200 folders)."""
    from lighthouse import hf
    from lighthouse.config import LighthouseConfig
    from lighthouse.quality.passkey_command import load_predict

    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(_llama_config()).eval()
    hf.configure(model, LighthouseConfig(levels=2, pooling=2, topk=128, impl="torch", rope="post"), dense_layers=[0])
    model.save_pretrained(tmp_path / "m")
    tokens = torch.tensor([pk.build_prompt(512, 0.5, trial=t).tokens for t in range(2)])
    with torch.no_grad():
        want = model(input_ids=tokens, use_cache=False, logits_to_keep=16).logits[:, -16:].argmax(-1)
    free, _ = load_predict(tmp_path / "m", "lighthouse", torch.device("cpu"), "fp32")(tokens, 16)
    assert torch.equal(free, want)
