"""Presets and the MFU formula of `train`."""

import pytest

from lighthouse.plan import plan_for
import torch

from lighthouse.train import mfu
from lighthouse.train.presets import PRESETS, get_preset


def test_paper_530m_is_the_papers_model():
    """Catches a drifted preset: the issue's shape, Lighthouse layers 2..27, optimiser and N, and ~530M
    parameters of which about half are the untied embeddings."""
    transformers = pytest.importorskip("transformers")
    from lighthouse.train.model import count_parameters, llama_config

    p = PRESETS["paper-530m"]
    assert (p.hidden, p.layers, p.ffn, p.heads, p.kv_heads, p.head_dim, p.vocab) == (1024, 30, 1536, 8, 8, 128, 128256)
    assert (p.topk, p.levels, p.pooling, p.scorer, p.rope_theta) == (1536, 3, 4, "norm", 10000.0)
    assert p.dense_layer_indices() == (0, 1, 28, 29)
    assert (p.lr, p.beta1, p.beta2, p.weight_decay, p.seq) == (2e-3, 0.9, 0.95, 0.1, 98304)
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(llama_config(p, p.seq, "lighthouse"))
    counts = count_parameters(model)
    assert 520e6 < counts["total"] < 540e6, counts
    assert counts["embedding"] == 128256 * 1024
    assert model.lm_head.weight is not model.model.embed_tokens.weight  # untied


def test_every_preset_is_valid_and_cpu_presets_fit_lighthouse():
    """Catches a preset whose N is below Lighthouse's minimum (every point would be 'invalid')."""
    for p in PRESETS.values():
        assert plan_for(p.lighthouse(), p.batch, p.heads, p.kv_heads, p.seq, p.head_dim).selected_len <= p.seq


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"heads": 3}, "kv-heads"),
        ({"topk": 100}, "topk"),
        ({"dense_layers": (7,)}, "dense-layers"),
        ({"hidden": 0}, "hidden"),
    ],
)
def test_bad_overrides_name_the_option(overrides, match):
    """Catches a bad flag failing deep inside the model build instead of naming the option."""
    with pytest.raises(ValueError, match=match):
        get_preset("tiny", **overrides)


def test_model_flops_and_mfu_by_hand():
    """Catches a wrong FLOP formula: 6*P*T plus causal attention 3.5 x 2*B*H*n^2*D per layer (n = N or S)."""
    f = mfu.model_flops_per_step(
        1000, batch=2, seq=8, heads=3, head_dim=4, dense_layers=1, lighthouse_layers=2, selected_len=4
    )
    linear = 6 * 1000 * 16
    dense = 3.5 * 2 * 2 * 3 * 8 * 8 * 4
    lighthouse = 2 * 3.5 * 2 * 2 * 3 * 4 * 4 * 4
    assert f == pytest.approx(linear + dense + lighthouse)
    assert mfu.mfu(1e15, 1000.0, 1000.0) == pytest.approx(1.0)
    assert mfu.peak_tflops("NVIDIA H200") == 989.4 and mfu.peak_tflops("cpu") is None
    assert mfu.mfu(1e15, 1000.0, None) is None
