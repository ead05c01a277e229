"""Training as people train: fp32 masters under autocast, clipping, schedules by hand, intervals by hand."""

import math
import statistics

import pytest
import torch

pytest.importorskip("transformers")

from lighthouse.train import data  # noqa: E402
from lighthouse.train.presets import get_preset  # noqa: E402
from lighthouse.train.schedule import Schedule  # noqa: E402
from lighthouse.train.stats import mean_interval, t_quantile  # noqa: E402
from lighthouse.train.trainer import Trainer  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _batch(seq=64, vocab=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab, (1, seq + 1), generator=g)
    return tokens[:, :-1], tokens[:, 1:]


def _norm_gains(model):
    return [p for n, p in model.named_parameters() if n.endswith("norm.weight")]


@pytest.mark.parametrize("name, moves", [("mixed", True), ("bf16", False)])
def test_mixed_precision_keeps_fp32_masters_and_moves_the_norm_gains(name, moves):
    """Catches pure bf16 taken for mixed precision: a bf16 weight at 1.0 cannot take an AdamW step of 1e-4 (its
    spacing there is 2^-7), so the RMSNorm gains never move; fp32 masters under bf16 autocast move them."""
    preset = get_preset("tiny", seq=64, lr=1e-4)
    trainer = Trainer(preset, 64, "dense", torch.device("cpu"), name, loss="chunked", checkpointing=False)
    assert all(p.dtype == (torch.float32 if name == "mixed" else torch.bfloat16) for p in trainer.model.parameters())
    before = [g.detach().clone() for g in _norm_gains(trainer.model)]
    trainer.set_lr(1e-4)
    x, y = _batch()
    for _ in range(3):
        trainer.step(x, y)
    moved = any(not torch.equal(b, g.detach()) for b, g in zip(before, _norm_gains(trainer.model)))
    assert moved is moves
    state = next(iter(trainer.optimizer.state.values()))
    assert state["exp_avg"].dtype == (torch.float32 if name == "mixed" else torch.bfloat16)


def test_mixed_precision_runs_matmuls_in_bf16():
    """Catches a `mixed` that silently trains in fp32 (autocast never entered): the LM head sees bf16 inputs."""
    preset = get_preset("tiny", seq=256)
    trainer = Trainer(preset, 256, "lighthouse", torch.device("cpu"), "mixed", loss="chunked", checkpointing=False)
    seen = []
    hook = trainer.model.model.layers[1].self_attn.o_proj.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    trainer.step(*_batch(256))
    hook.remove()
    assert seen == [torch.bfloat16]


def test_the_clip_norm_is_applied():
    """Catches clipping that is computed but not applied: after the step's clip the gradient norm is the clip value,
    and the update equals the one from gradients scaled by hand (SGD-like check through AdamW's first step is
    scale-free, so compare the clipped gradients themselves)."""
    preset = get_preset("tiny", seq=64)
    x, y = _batch()
    grads = {}
    for clip in (0.0, 0.05):
        trainer = Trainer(
            preset, 64, "dense", torch.device("cpu"), "fp32", loss="chunked", checkpointing=False, clip=clip, seed=3
        )
        captured = {}
        original = trainer.optimizer.step

        def step(*a, captured=captured, trainer=trainer, original=original, **k):
            captured["g"] = [p.grad.detach().clone() for p in trainer.model.parameters()]
            return original(*a, **k)

        trainer.optimizer.step = step
        _, norm = trainer.step(x, y)
        grads[clip] = (captured["g"], float(norm))
    raw, raw_norm = grads[0.0]
    clipped, reported = grads[0.05]
    assert reported == pytest.approx(raw_norm, rel=1e-5) and raw_norm > 0.05
    total = math.sqrt(sum(float((g.double() ** 2).sum()) for g in clipped))
    assert total == pytest.approx(0.05, rel=1e-4)
    for a, b in zip(raw, clipped):
        assert torch.allclose(a * (0.05 / raw_norm), b, rtol=1e-4, atol=1e-9)
    with pytest.raises(ValueError, match="clip"):
        Trainer(preset, 64, "dense", torch.device("cpu"), "fp32", clip=-1.0)


def test_schedules_against_hand_computed_values():
    """Catches an off-by-one warm-up, a wsd that decays in the wrong window or a cosine that ends off its floor."""
    c = Schedule("constant", 2e-3, 100, 10)
    assert [c.lr(s) for s in (0, 4, 9, 10, 50, 99)] == pytest.approx([2e-4, 1e-3, 2e-3, 2e-3, 2e-3, 2e-3])
    w = Schedule("wsd", 1.0, 100, 10, decay_fraction=0.2, floor=0.1)
    # decay over steps 80..99: lr(80) = 1 - 0.9 * 1/20, lr(99) = 0.1
    assert w.lr(79) == 1.0 and w.lr(80) == pytest.approx(1 - 0.9 / 20) and w.lr(99) == pytest.approx(0.1)
    assert w.lr(89) == pytest.approx(1 - 0.9 * 10 / 20)
    cos = Schedule("cosine", 1.0, 101, 1, floor=0.1)
    # progress (s - 1) / 99: halfway at s = 50.5 -> lr(50) slightly above 0.55
    assert cos.lr(1) == pytest.approx(1.0) and cos.lr(100) == pytest.approx(0.1)
    assert cos.lr(50) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 49 / 99)))
    with pytest.raises(ValueError, match="warmup"):
        Schedule("constant", 1.0, 10, 10)


def test_t_quantiles_and_intervals_against_a_table_and_a_direct_computation():
    """Catches a wrong t quantile or a population (n) instead of sample (n - 1) standard deviation."""
    # Student t, two-sided 95%: published table values
    for df, value in ((1, 12.7062), (2, 4.3027), (4, 2.7764), (10, 2.2281), (30, 2.0423)):
        assert t_quantile(0.975, df) == pytest.approx(value, abs=2e-4)
    xs = [2.31, 2.27, 2.40]
    iv = mean_interval(xs)
    direct = 4.302653 * statistics.stdev(xs) / math.sqrt(3)
    assert iv.mean == pytest.approx(statistics.fmean(xs)) and iv.half_width == pytest.approx(direct, rel=1e-5)
    assert iv.contains(2.3) and not iv.contains(2.6)
    assert mean_interval([1.0]).half_width is None


def _tree(tmp_path, n=30):
    for i in range(n):
        sub = tmp_path / f"pkg{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"m{i}.py").write_text(f"# file {i}\n" + "".join(f"v{i}_{j} = {j}\n" for j in range(50)))
    return tmp_path


def test_corpus_hash_is_deterministic_and_held_out_files_never_train(tmp_path):
    """Catches a hash that depends on reading order, and a held-out file leaking into a training window."""
    root = _tree(tmp_path / "src")
    a, b = data.build_corpus(root, val_fraction=0.3), data.build_corpus(root, val_fraction=0.3)
    assert a.digest == b.digest and len(a.digest) == 64
    (root / "pkg0" / "m0.py").write_text("changed\n")
    assert data.build_corpus(root, val_fraction=0.3).digest != a.digest
    c = data.build_corpus(root, val_fraction=0.3)
    held = [f"v{f.split('/m')[1][:-3]}_" for f in c.val_files]
    assert held
    count = data.window_count(c, 64)
    seen = set()
    for step in range(count // 2 * 2):
        x, y = data.train_batch(c, step, 1, 64, seed=5)
        text = data.decode(torch.cat([x[0], y[0, -1:]]))
        assert not any(h.encode() in text for h in held)
        seen.add(text)
    # no window repeats within an epoch, and an epoch visits every window
    assert len(seen) == count // 2 * 2
    assert data.epochs_seen(c, count, 1, 64) == pytest.approx(1.0)


def test_corpus_save_and_load_round_trip(tmp_path):
    c = data.build_corpus(_tree(tmp_path / "src"), val_fraction=0.3)
    c.save(tmp_path / "cache")
    d = data.Corpus.load(tmp_path / "cache")
    assert torch.equal(c.train, d.train) and torch.equal(c.val, d.val) and d.digest == c.digest
    assert d.train_files == c.train_files


def test_checkpointing_is_on_without_a_deprecation_warning():
    """build_model(checkpointing=True): every decoder layer checkpointed, through the API transformers does not
    deprecate (no FutureWarning raised). Catches the deprecated alias called (its warning leaked into `train`)
    or checkpointing silently off after the switch of name."""
    import warnings

    from lighthouse.train.model import build_model

    preset = get_preset("tiny")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        model = build_model(preset, 128, "lighthouse", torch.device("cpu"), torch.float32, checkpointing=True)
    off = build_model(preset, 128, "lighthouse", torch.device("cpu"), torch.float32, checkpointing=False)
    on = getattr(type(model), "is_activation_checkpointing", None) or type(model).is_gradient_checkpointing
    assert on.fget(model) and not on.fget(off)
