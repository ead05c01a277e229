"""The nn.Module, the dense switch of the two-stage recipe, and reduced precision."""

import torch
import torch.nn.functional as F

import lighthouse
from lighthouse import LighthouseAttention, LighthouseConfig

from lighthouse.plan import make_plan

from conftest import rand_qkv, rel_err
from spec_loops import attention_loops, dilated_scores, pyramid_index

CFG = LighthouseConfig(levels=3, pooling=2, topk=128, impl="torch")


def test_module_computes_its_configured_layer_and_dense_switch_equals_sdpa():
    """The module against the spec written out (spec_loops.attention_loops), with a config far from the
    defaults (levels=2, pooling=4, topk=128; the defaults L=3, p=4, k=2048 do not even run at N=512), then
    the dense phase against plain causal SDPA and back. Catches a module that drops or defaults its config,
    a dense switch that does not switch (or repeats kv heads in the wrong order), one that cannot switch back."""
    q, k, v = rand_qkv(1, 4, 2, 512, 8, seed=31)
    cfg = LighthouseConfig(levels=2, pooling=4, topk=128, impl="torch")
    layer = LighthouseAttention(cfg)
    _, want = attention_loops(q, k, v, 2, 4, 128, 512)
    assert rel_err(layer(q, k, v), want) <= 1e-6
    layer.set_dense(True)
    dense = F.scaled_dot_product_attention(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1), is_causal=True)
    assert torch.equal(layer(q, k, v), dense)
    assert "dense" in repr(layer)
    assert rel_err(layer.set_dense(False)(q, k, v), want) <= 1e-6


def test_keyword_parameters_build_the_config():
    layer = LighthouseAttention(levels=2, pooling=4, topk=256)
    assert layer.config == LighthouseConfig(levels=2, pooling=4, topk=256)


def test_bfloat16_matches_float32_on_the_same_inputs():
    q, k, v = rand_qkv(1, 2, 2, 2048, 32, seed=32, dtype=torch.bfloat16)
    out16 = lighthouse.lighthouse_attention(q, k, v, config=CFG)
    out32 = lighthouse.lighthouse_attention(q.float(), k.float(), v.float(), config=CFG)
    assert out16.dtype == torch.bfloat16
    assert torch.equal(
        lighthouse.select(q, k, v, config=CFG), lighthouse.select(q.float(), k.float(), v.float(), config=CFG)
    )
    assert rel_err(out16, out32) <= 1e-2


def test_dilated_scorer_with_gqa_and_padding_equals_the_spec():
    """Selection and output of the dilated scorer (d=3, GQA, N=1031 padded to 1032) against the spec's strided
    softmax attention written in spec_loops (float64 loops per offset). Catches contiguous blocks taken for
    strided subsequences, attn(K, Q, V) not swapping roles, the zero padding of the strided split reaching real
    tokens, query heads mapped to the wrong kv head, the group max missing."""
    q, k, v = rand_qkv(1, 4, 2, 1031, 8, seed=33)
    cfg = CFG.replace(scorer="dilated", dilation=3, levels=2)
    plan = make_plan(cfg, q, k, v)
    assert plan.padded_len == 1032
    sq, sk = dilated_scores(q, k, v, 3)
    entries, want = attention_loops(q, k, v, 2, 2, 128, plan.padded_len, sq=sq, sk=sk)
    idx = lighthouse.select(q, k, v, config=cfg)
    for h in range(2):
        assert idx[0, h].tolist() == [pyramid_index(lv, i, plan.padded_len, 2) for lv, i in entries[0][h]]
    assert rel_err(lighthouse.lighthouse_attention(q, k, v, config=cfg), want) <= 1e-6
