"""The per-call work a warm call skips (PERF_NOTES step 23): the keyword config and make_plan's checks are
cached, and neither cache lets through a call the uncached checks refuse, nor changes what a call gets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lighthouse
from lighthouse.config import LighthouseConfig
from lighthouse.plan import make_plan

from conftest import rand_qkv

SMALL = dict(levels=2, pooling=2, topk=128)


def test_a_valid_call_does_not_let_a_refused_one_through():
    """Catches a validation cache keyed too coarsely: after a good call, the same config with k of another dtype,
    v of another shape or a gate that does not fit is still refused, every time."""
    cfg = LighthouseConfig(**SMALL, impl="torch")
    q, k, v = rand_qkv(1, 2, 1, 256, 8, seed=0)
    plan = make_plan(cfg, q, k, v)
    assert make_plan(cfg, q, k, v) is plan
    for _ in range(2):
        with pytest.raises(ValueError, match="share one dtype"):
            make_plan(cfg, q, k.double(), v)
        with pytest.raises(ValueError, match="same shape"):
            make_plan(cfg, q, k, v[..., :4])
        with pytest.raises(ValueError, match="gate must be a tensor"):
            make_plan(cfg, q, k, v, gate=torch.zeros(1))


def test_an_equal_config_of_another_object_gets_an_equal_plan():
    q, k, v = rand_qkv(1, 2, 1, 256, 8, seed=0)
    a, b = LighthouseConfig(**SMALL), LighthouseConfig(**SMALL)
    assert make_plan(a, q, k, v) == make_plan(b, q, k, v)


def test_a_keyword_value_that_only_compares_equal_is_validated_for_itself():
    """Catches the keyword-config cache handing levels=2.0 (refused: not an integer) the config made for
    levels=2, or a numpy integer a refused result."""
    q, k, v = rand_qkv(1, 2, 1, 256, 8, seed=0)
    kw = dict(pooling=2, topk=128, impl="torch")
    want = lighthouse.lighthouse_attention(q, k, v, levels=2, **kw)
    for _ in range(2):
        with pytest.raises(ValueError, match="levels must be an integer"):
            lighthouse.lighthouse_attention(q, k, v, levels=2.0, **kw)
        with pytest.raises(ValueError, match="levels must be an integer"):
            lighthouse.lighthouse_attention(q, k, v, levels=True, **kw)
    got = lighthouse.lighthouse_attention(q, k, v, levels=np.int64(2), **kw)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_a_rope_scaling_dict_still_works_uncached():
    q, k, v = rand_qkv(1, 2, 1, 256, 8, seed=0)
    scaling = {"rope_type": "linear", "factor": 2.0}
    out = lighthouse.lighthouse_attention(q, k, v, **SMALL, impl="torch", rope="post", rope_scaling=scaling)
    assert out.shape == q.shape
