"""GQA: a kv group shares one selection, scored by the max over its query heads."""

import torch
import torch.nn.functional as F

import lighthouse
from lighthouse.config import LighthouseConfig
from lighthouse.plan import make_plan
from lighthouse.reference import lighthouse_attention_torch
from lighthouse.reference.select import select_entries
from lighthouse.reference.scores import score_pyramid

from conftest import rand_qkv, rel_err

CFG = LighthouseConfig(levels=3, pooling=2, topk=128, impl="torch", sdpa_backend="math")


def test_group_selection_uses_max_of_query_head_scores():
    q, k, v = rand_qkv(2, 6, 2, 512, 8, seed=21)
    plan = make_plan(CFG, q, k, v)
    sq = torch.linalg.vector_norm(q, dim=-1).view(2, 2, 3, 512).amax(2)
    sk = torch.linalg.vector_norm(k, dim=-1)
    want = select_entries(score_pyramid(sq, plan), score_pyramid(sk, plan), plan)
    assert torch.equal(lighthouse.select(q, k, v, config=CFG), want)


def test_gqa_equals_repeated_kv_with_the_same_selection():
    q, k, v = rand_qkv(1, 4, 2, 512, 8, seed=22)
    plan = make_plan(CFG, q, k, v)
    idx = lighthouse.select(q, k, v, config=CFG)
    out = lighthouse_attention_torch(q, k, v, plan, indices=idx)
    k_rep, v_rep = k.repeat_interleave(2, 1), v.repeat_interleave(2, 1)
    plan_rep = make_plan(CFG, q, k_rep, v_rep)
    out_rep = lighthouse_attention_torch(q, k_rep, v_rep, plan_rep, indices=idx.repeat_interleave(2, 1))
    assert rel_err(out, out_rep) <= 1e-6


def test_gqa_public_call_equals_repeated_kv_when_group_scores_agree():
    """Give the heads of a group the same per-token q norms: then each head alone selects what the group does."""
    q, k, v = rand_qkv(1, 4, 2, 512, 8, seed=23)
    norms = torch.linalg.vector_norm(q[:, ::2], dim=-1, keepdim=True).repeat_interleave(2, 1)
    q = F.normalize(q, dim=-1) * norms
    out = lighthouse.lighthouse_attention(q, k, v, config=CFG)
    out_rep = lighthouse.lighthouse_attention(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1), config=CFG)
    assert rel_err(out, out_rep) <= 1e-6
