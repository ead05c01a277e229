"""The layer's front (PERF_NOTES step 23): host work between a call's entry and its first kernel is time the GPU
waits through when the host is not ahead, so scores and select are launched before autograd's entry."""

from __future__ import annotations

import pytest
import torch

import lighthouse
from lighthouse.kernels import launch, layer

from conftest import rand_qkv


@pytest.mark.parametrize("grad", [True, False])
def test_scores_and_select_launch_before_autograds_entry_with_the_same_result(monkeypatch, grad):
    """Catches the selection moved back inside the autograd.Function (its entry's host time before the first
    launch again), or run twice; and a result or gradient that changed with the move (against the torch path)."""
    order = []
    real_call, real_forward = launch.Launch.__call__, layer.LighthouseFunction.forward
    monkeypatch.setattr(launch.Launch, "__call__", lambda self: order.append(self.kernel.fn.__name__) or real_call(self))
    monkeypatch.setattr(
        layer.LighthouseFunction,
        "forward",
        staticmethod(lambda ctx, *a: order.append("Function.forward") or real_forward(ctx, *a)),
    )
    q, k, v = rand_qkv(1, 2, 1, 512, 8, seed=3, requires_grad=grad)
    cfg = lighthouse.LighthouseConfig(levels=3, pooling=2, topk=128)
    with torch.set_grad_enabled(grad):
        out = lighthouse.lighthouse_attention(q, k, v, config=cfg.replace(impl="triton"))
    front = ["_norm_scores_kernel", "_select_kernel"] + (["Function.forward"] if grad else []) + ["_gather_kernel"]
    assert order[: len(front)] == front, order
    ref_leaves = [x.detach().requires_grad_(grad) for x in (q, k, v)]
    with torch.set_grad_enabled(grad):
        ref = lighthouse.lighthouse_attention(*ref_leaves, config=cfg.replace(impl="torch"))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    if grad:
        g = torch.randn_like(out)
        out.backward(g)
        ref.backward(g)
        for a, b in zip((q, k, v), ref_leaves):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("scorer", ["norm", "dilated", "gla"])
def test_the_selection_records_nothing_for_autograd_with_grad_on(scorer):
    """Catches a scorer written in PyTorch recording a graph on q, k or the gate now that the selection runs outside
    autograd.Function and without a torch.no_grad() of its own (memory held until the output dies)."""
    if scorer == "gla":
        pytest.importorskip("fla", reason="scorer='gla' needs flash-linear-attention")
    q, k, v = rand_qkv(1, 2, 1, 512, 8, seed=4, requires_grad=True)
    gate = torch.randn(1, 2, 512).sigmoid().log().requires_grad_() if scorer == "gla" else None
    cfg = lighthouse.LighthouseConfig(levels=3, pooling=2, topk=128, scorer=scorer, dilation=2, impl="triton")
    from lighthouse.plan import make_plan

    plan = make_plan(cfg, q, k, v, gate)
    assert torch.is_grad_enabled()
    scores = layer.run_scores(q, k, v, plan, gate)
    sel = layer.run_select(scores, plan)
    for t in (scores.sq, scores.sk, sel.indices, sel.lm_idx, sel.lm_pos, sel.inv):
        assert not t.requires_grad and t.grad_fn is None
