"""Spec section 7: gradients through pooling, gather, SDPA and scatter; no path from the future."""

import pytest
import torch

from lighthouse.config import LighthouseConfig
from lighthouse.plan import make_plan
from lighthouse.reference import lighthouse_attention_torch, select_torch

from conftest import rand_qkv

SMALL = [
    # (Hq, Hkv, N, D, levels, pooling, topk)
    (1, 1, 512, 3, 3, 2, 128),
    (2, 1, 258, 3, 2, 2, 128),  # GQA and padding (258 -> 258, 257 would pad)
    (1, 1, 257, 2, 2, 2, 128),  # padded to 258
]


@pytest.mark.parametrize("case", SMALL, ids=lambda c: "Hq{}_Hkv{}_N{}_D{}_L{}_p{}_k{}".format(*c))
def test_gradcheck_float64(case):
    hq, hkv, n, d, levels, p, topk = case
    q, k, v = rand_qkv(1, hq, hkv, n, d, dtype=torch.float64, seed=n, requires_grad=True)
    cfg = LighthouseConfig(levels=levels, pooling=p, topk=topk, impl="torch", sdpa_backend="math")
    plan = make_plan(cfg, q, k, v)
    idx = select_torch(q, k, v, plan)

    def fn(a, b, c):
        return lighthouse_attention_torch(a, b, c, plan, indices=idx)

    assert torch.autograd.gradcheck(fn, (q, k, v), fast_mode=True, atol=1e-6, rtol=1e-4)


def _layer(levels=3, pooling=2, topk=128, n=512, hq=2, hkv=1, d=4, seed=0):
    q, k, v = rand_qkv(1, hq, hkv, n, d, seed=seed, requires_grad=True)
    cfg = LighthouseConfig(levels=levels, pooling=pooling, topk=topk, impl="torch", sdpa_backend="math")
    plan = make_plan(cfg, q, k, v)
    idx = select_torch(q, k, v, plan)
    return q, k, v, plan, idx


# output positions to probe: the start, span boundaries of every level, the middle, the end
PROBES = [0, 1, 2, 3, 4, 7, 8, 15, 16, 63, 64, 200, 255, 256, 257, 383, 510, 511]


@pytest.mark.parametrize("pooling,levels,n", [(2, 3, 512), (4, 2, 512), (3, 2, 384)])
def test_no_gradient_from_future_inputs(pooling, levels, n):
    q, k, v, plan, idx = _layer(levels=levels, pooling=pooling, n=n, seed=pooling)
    out = lighthouse_attention_torch(q, k, v, plan, indices=idx)
    g = torch.Generator().manual_seed(1)
    upstream = torch.randn(out.shape, generator=g)
    for t in (t for t in PROBES if t < n):
        mask = torch.zeros_like(upstream)
        mask[:, :, : t + 1] = 1
        dq, dk, dv = torch.autograd.grad(out, (q, k, v), upstream * mask, retain_graph=True)
        for name, grad in (("dq", dq), ("dk", dk), ("dv", dv)):
            future = grad[:, :, t + 1 :]
            assert torch.count_nonzero(future) == 0, f"{name} at positions > {t} depends on output <= {t}"
        # and the past does receive gradient (the check above is not vacuous)
        assert torch.count_nonzero(dv[:, :, : t + 1]) > 0 or torch.count_nonzero(out[:, :, : t + 1]) == 0


def test_future_inputs_do_not_change_past_outputs():
    q, k, v, plan, idx = _layer(seed=7)
    out = lighthouse_attention_torch(q, k, v, plan, indices=idx)
    t = 300
    q2, k2, v2 = (x.detach().clone() for x in (q, k, v))
    for x in (q2, k2, v2):
        x[:, :, t + 1 :] = torch.randn_like(x[:, :, t + 1 :]) * 5
    out2 = lighthouse_attention_torch(q2, k2, v2, plan, indices=idx)
    assert torch.equal(out[:, :, : t + 1], out2[:, :, : t + 1])
    assert not torch.equal(out[:, :, t + 1 :], out2[:, :, t + 1 :])


def test_every_output_position_is_finite_and_fed_positions_nonzero():
    q, k, v, plan, idx = _layer(seed=11)
    out = lighthouse_attention_torch(q, k, v, plan, indices=idx).detach()
    assert torch.isfinite(out).all()
    # the level-1 tokens emitted write to themselves: those rows must carry a value
    tokens = idx[0, 0][idx[0, 0] < plan.padded_len]
    assert (out[0, :, tokens].abs().sum(-1) > 0).all()
