"""The Triton path against the golden vectors and the PyTorch path (interpreted on CPU, native on CUDA)."""

import pytest
import torch

import lighthouse
from lighthouse import LighthouseConfig
from lighthouse.kernels import alloc, select as select_kernels

from conftest import rand_qkv, rel_err

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(autouse=True)
def poisoned_buffers(monkeypatch):
    """Every kernel output starts as NaN / -7: an element left unwritten fails the comparisons below."""
    monkeypatch.setattr(alloc, "POISON", True)


def _run(q, k, v, cfg, grad_out):
    q, k, v = (x.detach().clone().requires_grad_() for x in (q, k, v))
    out = lighthouse.lighthouse_attention(q, k, v, config=cfg)
    out.backward(grad_out)
    return out.detach(), q.grad, k.grad, v.grad


def test_golden_parity(golden):
    c = golden["config"]
    cfg = LighthouseConfig(levels=c["L"], pooling=c["p"], topk=c["k"], scorer=c["scorer"],
                           dilation=c.get("dilation", 4), impl="triton", sdpa_backend="math")
    q, k, v = (golden[n].transpose(1, 2).to(DEVICE) for n in ("q", "k", "v"))
    assert torch.equal(lighthouse.select(q, k, v, config=cfg).cpu(), golden["indices"].long())
    out, dq, dk, dv = _run(q, k, v, cfg, golden["grad_out"].to(DEVICE))
    assert rel_err(out.cpu(), golden["out"]) <= 1e-5
    for name, g in (("dq", dq), ("dk", dk), ("dv", dv)):
        assert rel_err(g.transpose(1, 2).cpu(), golden[name]) <= 1e-5, name


CASES = [
    # (B, Hq, Hkv, N, D, levels, pooling, topk)
    (1, 4, 2, 1300, 16, 2, 4, 256),  # GQA, two tiles, N padded to 1304
    (1, 1, 1, 1536, 8, 2, 3, 128),   # pooling not a power of two
    (2, 1, 1, 2048, 8, 4, 2, 256),   # batch 2, four levels
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "B{}_Hq{}_Hkv{}_N{}_D{}_L{}_p{}_k{}".format(*c))
def test_triton_matches_torch_and_is_deterministic(case):
    b, hq, hkv, n, d, levels, p, topk = case
    q, k, v = rand_qkv(b, hq, hkv, n, d, seed=n + levels, device=DEVICE)
    grad_out = torch.randn(b, hq, n, d, generator=torch.Generator().manual_seed(5)).to(DEVICE)
    cfg = LighthouseConfig(levels=levels, pooling=p, topk=topk, sdpa_backend="math")
    tri = cfg.replace(impl="triton")
    assert torch.equal(lighthouse.select(q, k, v, config=tri), lighthouse.select(q, k, v, config=cfg.replace(impl="torch")))
    want = _run(q, k, v, cfg.replace(impl="torch"), grad_out)
    got = _run(q, k, v, tri, grad_out)
    for name, a, w in zip(("out", "dq", "dk", "dv"), got, want):
        assert rel_err(a, w) <= 1e-5, name
    again = _run(q, k, v, tri, grad_out)
    for a, a2 in zip(got, again):
        assert torch.equal(a, a2), "two runs of the Triton path must be bitwise identical"


@pytest.mark.parametrize("levels,pooling,topk", [(2, 3, 128), (3, 2, 128)])
def test_selection_with_tied_scores_matches_torch(levels, pooling, topk):
    """Catches a threshold search or causal merge in the selection kernel that breaks ties differently from
    the spec (equal scores: the lower index wins): every q and k row has the same norm, so every score ties."""
    q, k, v = rand_qkv(1, 2, 1, 1536, 8, seed=3, device=DEVICE)
    q, k = torch.sign(q), torch.sign(k)
    cfg = LighthouseConfig(levels=levels, pooling=pooling, topk=topk, sdpa_backend="math")
    assert torch.equal(lighthouse.select(q, k, v, config=cfg.replace(impl="triton")),
                       lighthouse.select(q, k, v, config=cfg.replace(impl="torch")))


def test_register_overflow_falls_back_to_torch_selection(monkeypatch):
    q, k, v = rand_qkv(1, 2, 1, 1024, 8, seed=9, device=DEVICE)
    cfg = LighthouseConfig(levels=2, pooling=4, topk=128, impl="triton", sdpa_backend="math")
    in_kernel = lighthouse.lighthouse_attention(q, k, v, config=cfg)
    monkeypatch.setattr(select_kernels, "MAX_CANDIDATES", 64)
    fallback = lighthouse.lighthouse_attention(q, k, v, config=cfg)
    assert torch.equal(in_kernel, fallback)


def test_strided_inputs_from_bnhd_layout():
    """q, k, v as views of (B, N, H, D) projections, the layout most models produce."""
    q, k, v = rand_qkv(1, 2, 2, 512, 8, seed=12, device=DEVICE)
    cfg = LighthouseConfig(levels=3, pooling=2, topk=128, sdpa_backend="math")
    strided = [x.transpose(1, 2).contiguous().transpose(1, 2) for x in (q, k, v)]
    assert not strided[0].is_contiguous()
    got = lighthouse.lighthouse_attention(*strided, config=cfg.replace(impl="triton"))
    want = lighthouse.lighthouse_attention(q, k, v, config=cfg.replace(impl="torch"))
    assert rel_err(got, want) <= 1e-5


@pytest.mark.parametrize("where", ["q", "k"])
def test_non_finite_input_is_refused_by_the_triton_path(where):
    q, k, v = rand_qkv(1, 2, 1, 512, 8, seed=13, device=DEVICE)
    dict(q=q, k=k)[where][0, 0, 300, 2] = float("inf")
    cfg = LighthouseConfig(levels=3, pooling=2, topk=128, impl="triton", sdpa_backend="math")
    with pytest.raises(ValueError, match=rf"position 300: {where} "):
        lighthouse.lighthouse_attention(q, k, v, config=cfg)


def test_backward_can_run_twice_on_a_retained_graph():
    """The benchmark times backward alone by repeating it on one graph: results must repeat exactly."""
    q, k, v = rand_qkv(1, 2, 1, 512, 8, seed=14, device=DEVICE, requires_grad=True)
    cfg = LighthouseConfig(levels=3, pooling=2, topk=128, impl="triton", sdpa_backend="math")
    out = lighthouse.lighthouse_attention(q, k, v, config=cfg)
    grad = torch.randn_like(out)
    with lighthouse.kernels.retain_inner_graph():
        first = torch.autograd.grad(out, (q, k, v), grad, retain_graph=True)
        second = torch.autograd.grad(out, (q, k, v), grad)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_backward_frees_the_sub_sequence_before_the_gradients_and_says_so_when_run_again():
    """By default the backward drops the sub-sequence tensors (peak memory), and a second backward on the
    same forward gets a clear error instead of a wrong gradient."""
    q, k, v = rand_qkv(1, 2, 1, 512, 8, seed=15, device=DEVICE, requires_grad=True)
    cfg = LighthouseConfig(levels=3, pooling=2, topk=128, impl="triton", sdpa_backend="math")
    out = lighthouse.lighthouse_attention(q, k, v, config=cfg)
    grad = torch.randn_like(out)
    torch.autograd.grad(out, (q, k, v), grad, retain_graph=True)
    assert out.grad_fn.out_sub is None and out.grad_fn.leaves is None
    with pytest.raises(RuntimeError, match="retain_inner_graph"):
        torch.autograd.grad(out, (q, k, v), grad)


def test_fused_launches_equal_one_tensor_launches():
    """gather_many / pull_many on three tensors give bitwise the rows of three single-tensor launches."""
    from lighthouse.kernels.gather import gather_many, gather_rows
    from lighthouse.kernels.layer import run_selection
    from lighthouse.kernels.scatter import pull_many, pull_rows
    from lighthouse.plan import make_plan

    cfg = LighthouseConfig(levels=3, pooling=2, topk=128)
    q, k, v = rand_qkv(1, 2, 2, 1000, 16, seed=5)  # N padded to 1024: unwritten padding rows would be NaN
    q, k, v = (x.to(DEVICE) for x in (q, k, v))
    plan = make_plan(cfg, q, k, v)
    sel, _ = run_selection(q, k, v, plan)
    fused = gather_many([q, k, v], sel.lm_idx, sel.lm_pos, plan)
    for x, y in zip(fused, [gather_rows(x, sel.lm_idx, sel.lm_pos, plan) for x in (q, k, v)]):
        assert torch.equal(x, y)
    for scatter in (True, False):
        pulled = pull_many(fused, sel.inv, plan, scatter=scatter)
        for x, y in zip(pulled, [pull_rows(s, sel.inv, plan, scatter=scatter) for s in fused]):
            assert torch.equal(x, y)
            assert not torch.isnan(x).any()


@pytest.mark.parametrize("levels,pooling", [(3, 4), (4, 2), (2, 3)])
def test_score_pyramid_pooled_in_kernel_equals_the_torch_pyramid(levels, pooling):
    """Levels the scoring kernel max-pools in registers (spans dividing its block) and the ones pooled
    afterwards equal max-pooling of its token scores bitwise (NaN carried up to the coarsest level); the
    token scores match the PyTorch scorer."""
    from lighthouse.kernels.scores import score_pyramids
    from lighthouse.plan import make_plan
    from lighthouse.reference.scores import score_pyramid, token_scores

    cfg = LighthouseConfig(levels=levels, pooling=pooling, topk=128)
    n = 128 * pooling ** (levels - 1) * 2 - 5  # two tiles, padded
    q, k, v = (x.to(DEVICE) for x in rand_qkv(1, 4, 2, n, 16, seed=levels))
    q[0, 1, 7, 3] = float("nan")
    plan = make_plan(cfg, q, k, v)
    sq, sk, _ = score_pyramids(q, k, v, plan)
    n_pad = plan.padded_len
    tq, tk = token_scores(q.nan_to_num(), k, v, plan)
    for got, tokens in ((sq, tq), (sk, tk)):
        want = torch.cat(score_pyramid(got[..., :n_pad].contiguous(), plan), dim=-1)
        assert torch.equal(got.nan_to_num(-1.0), want.nan_to_num(-1.0))
        real = ~got[..., :n_pad].isnan()
        assert torch.allclose(got[..., :n_pad][real], tokens[real], rtol=1e-6, atol=0)
    top = plan.offsets[-1] + 7 // plan.spans[-1]  # the coarsest entry over token 7
    assert sq[0, 0, top].isnan() and not sq[0, 0, top + 1].isnan() and not sq[0, 1, top].isnan()
