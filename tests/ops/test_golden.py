"""Parity with the paper's published implementation (vectors in tests/data/golden)."""

import torch

import lighthouse

from conftest import rel_err


def _params(cfg, impl):
    return dict(
        levels=cfg["L"],
        pooling=cfg["p"],
        topk=cfg["k"],
        scorer=cfg["scorer"],
        dilation=cfg.get("dilation", 4),
        impl=impl,
        sdpa_backend="math",
    )


def _inputs(golden):
    return [golden[n].transpose(1, 2).contiguous().requires_grad_() for n in ("q", "k", "v")]


def test_selection_matches_golden_exactly(golden):
    q, k, v = _inputs(golden)
    idx = lighthouse.select(q, k, v, **_params(golden["config"], "torch"))
    assert idx.shape == golden["indices"].shape
    assert torch.equal(idx, golden["indices"].long())


def test_output_and_gradients_match_golden(golden):
    q, k, v = _inputs(golden)
    out = lighthouse.lighthouse_attention(q, k, v, **_params(golden["config"], "torch"))
    out.backward(golden["grad_out"])
    assert rel_err(out, golden["out"]) <= 1e-5
    for name, x in (("dq", q), ("dk", k), ("dv", v)):
        assert rel_err(x.grad.transpose(1, 2), golden[name]) <= 1e-5, name
