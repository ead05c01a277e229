"""The nn.Module, the dense switch of the two-stage recipe, and reduced precision."""

import torch
import torch.nn.functional as F

import lighthouse
from lighthouse import LighthouseAttention, LighthouseConfig

from conftest import rand_qkv, rel_err

CFG = LighthouseConfig(levels=3, pooling=2, topk=128, impl="torch")


def test_module_equals_function_and_dense_switch_equals_sdpa():
    q, k, v = rand_qkv(1, 4, 2, 512, 8, seed=31)
    layer = LighthouseAttention(CFG)
    assert torch.equal(layer(q, k, v), lighthouse.lighthouse_attention(q, k, v, config=CFG))
    layer.set_dense(True)
    dense = F.scaled_dot_product_attention(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1), is_causal=True)
    assert torch.equal(layer(q, k, v), dense)
    assert "dense" in repr(layer)
    assert not torch.equal(layer.set_dense(False)(q, k, v), dense)


def test_keyword_parameters_build_the_config():
    layer = LighthouseAttention(levels=2, pooling=4, topk=256)
    assert layer.config == LighthouseConfig(levels=2, pooling=4, topk=256)


def test_bfloat16_matches_float32_on_the_same_inputs():
    q, k, v = rand_qkv(1, 2, 2, 2048, 32, seed=32, dtype=torch.bfloat16)
    out16 = lighthouse.lighthouse_attention(q, k, v, config=CFG)
    out32 = lighthouse.lighthouse_attention(q.float(), k.float(), v.float(), config=CFG)
    assert out16.dtype == torch.bfloat16
    assert torch.equal(lighthouse.select(q, k, v, config=CFG), lighthouse.select(q.float(), k.float(), v.float(), config=CFG))
    assert rel_err(out16, out32) <= 1e-2


def test_dilated_scorer_runs_with_gqa_and_padding():
    q, k, v = rand_qkv(1, 4, 2, 1030, 8, seed=33)
    cfg = CFG.replace(scorer="dilated", dilation=3, levels=2)
    out = lighthouse.lighthouse_attention(q, k, v, config=cfg)
    assert out.shape == q.shape and torch.isfinite(out).all()
