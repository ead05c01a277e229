"""Bad input raises ValueError naming the parameter and its valid range."""

import pytest
import torch

import lighthouse
from lighthouse import LighthouseAttention, LighthouseConfig

from conftest import rand_qkv


@pytest.mark.parametrize(
    "params,match",
    [
        (dict(levels=1), r"levels must be an integer >= 2"),
        (dict(levels=2.0), r"levels must be an integer"),
        (dict(levels=True), r"levels must be an integer"),
        (dict(pooling=1), r"pooling must be an integer >= 2"),
        (dict(topk=0), r"topk must be an integer >= 128"),
        (dict(topk=200), r"topk must be a positive multiple of 128.*try 128 or 256"),
        (dict(scorer="cosine"), r"scorer must be one of norm, dilated, gla"),
        (dict(dilation=0), r"dilation must be an integer >= 1"),
        (dict(impl="cuda"), r"impl must be one of auto, torch, triton"),
        (dict(sdpa_backend="fast"), r"sdpa_backend must be None or one of"),
    ],
)
def test_bad_config(params, match):
    with pytest.raises(ValueError, match=match):
        LighthouseConfig(**params)
    q, k, v = rand_qkv(1, 1, 1, 512, 4)
    with pytest.raises(ValueError, match=match):
        lighthouse.lighthouse_attention(q, k, v, **{"levels": 2, "pooling": 2, "topk": 128, **params})


def _qkv(**over):
    q, k, v = rand_qkv(1, 2, 1, 512, 4)
    return over.get("q", q), over.get("k", k), over.get("v", v)


SMALL = dict(levels=2, pooling=2, topk=128, impl="torch")


@pytest.mark.parametrize(
    "tensors,match",
    [
        (dict(q=torch.randn(2, 512, 4)), r"q must have 4 dimensions \(B, H, N, D\)"),
        (dict(k=torch.randn(1, 1, 512, 4, dtype=torch.float64)), r"q, k, v must share one dtype"),
        (dict(q=torch.ones(1, 2, 512, 4, dtype=torch.int32)), r"q must be float16, bfloat16, float32 or float64"),
        (dict(v=torch.randn(1, 1, 512, 8)), r"k and v must have the same shape"),
        (dict(k=torch.randn(1, 1, 256, 4), v=torch.randn(1, 1, 256, 4)), r"does not match q shape"),
        (
            dict(q=torch.randn(1, 3, 512, 4), k=torch.randn(1, 2, 512, 4), v=torch.randn(1, 2, 512, 4)),
            r"Hq=3 must be a positive multiple of kv heads Hkv=2",
        ),
        (dict(q=[1.0]), r"q must be a torch.Tensor"),
    ],
)
def test_bad_tensors(tensors, match):
    with pytest.raises(ValueError, match=match):
        lighthouse.lighthouse_attention(*_qkv(**tensors), **SMALL)


def test_sequence_too_short_names_the_minimum():
    q, k, v = rand_qkv(1, 1, 1, 1000, 4)
    with pytest.raises(ValueError, match=r"N=1000 is too short.*need N >= topk \* pooling\*\*\(levels-1\) = 2048"):
        lighthouse.lighthouse_attention(q, k, v, levels=3, pooling=4, topk=128, impl="torch")


@pytest.mark.parametrize("where", ["q", "k"])
def test_non_finite_input_is_refused(where):
    q, k, v = rand_qkv(1, 1, 1, 512, 4)
    dict(q=q, k=k)[where][0, 0, 100, 1] = float("nan")
    with pytest.raises(ValueError, match=rf"position 100: {where} .*contains NaN or Inf"):
        lighthouse.lighthouse_attention(q, k, v, **SMALL)


def test_gla_needs_gate_and_gate_shape():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match=r"scorer='gla' needs gate="):
        lighthouse.lighthouse_attention(q, k, v, **{**SMALL, "scorer": "gla"})
    with pytest.raises(ValueError, match=r"gate must be a tensor of shape \(B, Hq, N\) = \(1, 2, 512\)"):
        lighthouse.lighthouse_attention(q, k, v, **{**SMALL, "scorer": "gla"}, gate=torch.zeros(1, 1, 512))


def test_gla_without_fla_names_the_extra():
    pytest.importorskip("torch")
    try:
        import fla  # noqa: F401

        pytest.skip("flash-linear-attention is installed")
    except ImportError:
        pass
    q, k, v = _qkv()
    with pytest.raises(ValueError, match=r"flash-linear-attention.*lighthouse-bench\[gla\]"):
        lighthouse.lighthouse_attention(q, k, v, **{**SMALL, "scorer": "gla"}, gate=torch.zeros(1, 2, 512))


def test_triton_unavailable_is_a_clear_error_on_cpu(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    q, k, v = _qkv()
    with pytest.raises(ValueError, match=r"impl='triton' is not available here: the Triton kernels need CUDA tensors"):
        lighthouse.lighthouse_attention(q, k, v, **{**SMALL, "impl": "triton"})


def test_module_rejects_config_and_params_together():
    with pytest.raises(ValueError, match="either config= or keyword parameters"):
        LighthouseAttention(LighthouseConfig(), topk=256)
