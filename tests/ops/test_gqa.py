"""GQA: a kv group shares one selection, scored by the max over its query heads."""

import torch

import lighthouse
from lighthouse.config import LighthouseConfig
from lighthouse.plan import make_plan
from lighthouse.reference.select import select_entries
from lighthouse.reference.scores import score_pyramid

from conftest import rand_qkv, rel_err
from spec_loops import attention_loops, pyramid_index

CFG = LighthouseConfig(levels=3, pooling=2, topk=128, impl="torch", sdpa_backend="math")


def test_group_selection_uses_max_of_query_head_scores():
    q, k, v = rand_qkv(2, 6, 2, 512, 8, seed=21)
    plan = make_plan(CFG, q, k, v)
    sq = torch.linalg.vector_norm(q, dim=-1).view(2, 2, 3, 512).amax(2)
    sk = torch.linalg.vector_norm(k, dim=-1)
    want = select_entries(score_pyramid(sq, plan), score_pyramid(sk, plan), plan)
    assert torch.equal(lighthouse.select(q, k, v, config=CFG), want)


def test_gqa_output_equals_the_spec():
    """Hq=6 over Hkv=2 (groups of 3) against the spec written out: query head h attends with kv head h // 3
    on its group's selection. Catches kv heads repeated in the wrong order (h % Hkv: repeat instead of
    repeat_interleave), a query head given another group's selection, pooled q gathered at kv-head indices
    of the wrong head."""
    q, k, v = rand_qkv(1, 6, 2, 512, 8, seed=22)
    entries, want = attention_loops(q, k, v, 3, 2, 128, 512)
    idx = lighthouse.select(q, k, v, config=CFG)
    for h in range(2):
        assert idx[0, h].tolist() == [pyramid_index(lv, i, 512, 2) for lv, i in entries[0][h]]
    assert rel_err(lighthouse.lighthouse_attention(q, k, v, config=CFG), want) <= 1e-6


def test_gqa_group_score_is_the_max_not_the_mean_or_the_first_head():
    """One query head of each group carries very large norms on a few tokens that are not loud in the other
    heads: the group's max-scored selection must include them (spec: a kv head's score is the max over its
    query heads). Catches a group scored by its first head or by the mean, where those tokens lose."""
    q, k, v = rand_qkv(1, 4, 2, 512, 8, seed=23)
    loud = [37, 200, 201, 450]
    q[0, 1, loud] *= 40.0  # second head of group 0
    q[0, 3, loud] *= 40.0  # second head of group 1
    k[0, :, loud] *= 0.01  # so that sk does not pick them either
    entries, want = attention_loops(q, k, v, 3, 2, 128, 512)
    idx = lighthouse.select(q, k, v, config=CFG)
    for h in range(2):
        assert set(loud) <= set(idx[0, h].tolist())  # refined down to the tokens themselves
        assert idx[0, h].tolist() == [pyramid_index(lv, i, 512, 2) for lv, i in entries[0][h]]
    assert rel_err(lighthouse.lighthouse_attention(q, k, v, config=CFG), want) <= 1e-6
