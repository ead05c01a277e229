"""rope='post' through the Triton path (interpreted on the CPU): the rotation fused into the gather and into the
pull of the pooling backward, against tests/rope_spec.py (the rule written out) and the PyTorch path.
Every kernel output starts poisoned (NaN), so an element the rotated halves leave unwritten fails."""

import pytest
import torch

import lighthouse
from lighthouse import LighthouseConfig
from lighthouse.kernels.layer import run_gather, run_selection
from lighthouse.kernels.rope import rope_args
from lighthouse.plan import make_plan
from lighthouse.reference.gather import gather_entries
from lighthouse.reference.rope import entry_positions, rotate

from conftest import rand_qkv, rel_err
from rope_spec import LLAMA3, post_attention

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
CASES = [
    # (B, Hq, Hkv, N, D, levels, pooling, topk, theta, scaling, positions): the smallest shapes of every path
    (1, 2, 2, 256, 8, 2, 2, 128, 10000.0, None, None),  # q, k, v in one launch (two rotated)
    (2, 2, 1, 301, 6, 2, 2, 128, 10.0, None, "batch"),  # GQA (q alone, then k with v), padded, D/2 = 3
    (1, 2, 1, 515, 8, 3, 2, 128, 500000.0, LLAMA3, "offset"),  # three levels, padded, llama3, far positions
    (1, 1, 1, 390, 10, 2, 3, 128, 1.5, {"rope_type": "linear", "factor": 2.0}, None),  # pooling 3, D/2 = 5
]


def _positions(kind, b, n):
    if kind == "batch":
        return (torch.arange(n)[None] + torch.tensor([[0], [777]])).to(DEVICE)
    if kind == "offset":
        return (torch.arange(n) + 123_457).to(DEVICE)  # angles near 1e5 rad: the kernels' range reduction
    return None


def _run(q, k, v, cfg, positions, grad_out):
    q, k, v = (x.detach().clone().requires_grad_() for x in (q, k, v))
    out = lighthouse.lighthouse_attention(q, k, v, config=cfg, positions=positions)
    out.backward(grad_out)
    return out.detach(), q.grad, k.grad, v.grad


@pytest.mark.parametrize("case", CASES, ids=lambda c: "B{}_Hq{}_Hkv{}_N{}_D{}_L{}_p{}_k{}_t{}".format(*c))
def test_triton_post_equals_the_rule_and_the_torch_path(case):
    """out, dq, dk, dv of the Triton path against autograd through the rule written out (1e-5) and against the
    PyTorch path (1e-5). Catches a rotation missing from the fused gather or its backward, v rotated, a wrong
    sign in the backward's transpose, angles from the wrong token, a half left unwritten (poisoned NaN)."""
    b, hq, hkv, n, d, levels, p, topk, theta, scaling, pos_kind = case
    q, k, v = rand_qkv(b, hq, hkv, n, d, seed=n + d, device=DEVICE)
    positions = _positions(pos_kind, b, n)
    grad_out = torch.randn(b, hq, n, d, generator=torch.Generator().manual_seed(2)).to(DEVICE)
    cfg = LighthouseConfig(
        levels=levels, pooling=p, topk=topk, sdpa_backend="math", rope="post", rope_theta=theta, rope_scaling=scaling
    )
    got = _run(q, k, v, cfg.replace(impl="triton"), positions, grad_out)
    torch_path = _run(q, k, v, cfg.replace(impl="torch"), positions, grad_out)
    indices = lighthouse.select(q, k, v, config=cfg.replace(impl="torch"))
    assert torch.equal(lighthouse.select(q, k, v, config=cfg.replace(impl="triton")), indices)
    leaves = [x.detach().cpu().requires_grad_() for x in (q, k, v)]
    want = post_attention(
        *leaves,
        indices.cpu(),
        levels,
        p,
        make_plan(cfg, q, k, v).padded_len,
        theta,
        scaling,
        None if positions is None else positions.cpu(),
    )
    expected = (want.detach(),) + torch.autograd.grad(want, leaves, grad_out.cpu().double())
    for name, a, w, t in zip(("out", "dq", "dk", "dv"), got, expected, torch_path):
        assert rel_err(a.cpu(), w) <= 1e-5, name
        assert rel_err(a, t) <= 1e-5, name


@pytest.mark.parametrize("hq, hkv", [(2, 1), (2, 2)], ids=["gqa", "one_launch"])
def test_fused_rotation_equals_gather_then_rotate(hq, hkv):
    """The gather kernel's rows in post mode are the reference's gathered rows rotated at their entries' last
    tokens (1e-6), row for row, with batch positions: under GQA (q alone, then k rotated beside v) and with q, k, v
    in one launch (two rotated as halves, v pooled at full width beside them). v equals the reference's rows
    exactly (never rotated, no column left out); the kernel's pre rows are untouched."""
    b, n, d = 2, 301, 8
    cfg = LighthouseConfig(levels=2, pooling=2, topk=128, rope="post", rope_theta=100.0)
    q, k, v = rand_qkv(b, hq, hkv, n, d, seed=4, device=DEVICE)
    positions = (torch.arange(n)[None] * 3 + torch.tensor([[5], [9000]])).to(DEVICE)
    plan = make_plan(cfg, q, k, v)
    sel, _ = run_selection(q, k, v, plan)
    subs = run_gather(q, k, v, sel, plan, rope_args(plan, q.device, positions))
    plain = run_gather(q, k, v, sel, plan)
    pos = entry_positions(sel.indices, plan, positions)
    g = hq // hkv
    want_q = rotate(gather_entries(q, sel.indices, plan, g), pos.repeat_interleave(g, dim=1), plan)
    want_k = rotate(gather_entries(k, sel.indices, plan, 1), pos, plan)
    torch.testing.assert_close(subs[0], want_q, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(subs[1], want_k, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(subs[2], gather_entries(v, sel.indices, plan, 1), rtol=1e-6, atol=1e-6)
    assert torch.equal(subs[2], plain[2]), "v is never rotated"
    assert torch.equal(plain[1], gather_entries(k, sel.indices, plan, 1))


def test_triton_post_in_bfloat16_stays_close_to_float32():
    """bf16 inputs: rows pooled and rotated in float32, rounded once; against the float32 Triton run."""
    q, k, v = rand_qkv(1, 2, 2, 256, 8, seed=6, device=DEVICE)
    cfg = LighthouseConfig(levels=2, pooling=2, topk=128, sdpa_backend="math", rope="post", impl="triton")
    want = lighthouse.lighthouse_attention(q, k, v, config=cfg)
    got = lighthouse.lighthouse_attention(*(x.bfloat16() for x in (q, k, v)), config=cfg)
    assert got.dtype == torch.bfloat16 and rel_err(got.float(), want) <= 2e-2


PULL_CASES = [
    # (B, Hq, Hkv, N, D, levels, pooling, theta, positions): GQA with odd D/2 and angles near 1e5 rad, and a square
    # case with pooling 3 (small: the interpreted pull costs about 4 s per batch x head at N=515)
    (1, 2, 1, 515, 6, 3, 2, 10.0, "offset"),
    (1, 4, 4, 391, 6, 2, 3, 500000.0, None),
]


@pytest.mark.parametrize("case", PULL_CASES, ids=lambda c: "B{}_Hq{}_Hkv{}_N{}_D{}_L{}_p{}_t{}_{}".format(*c))
def test_pull_serving_several_heads_turns_back_like_the_reference(case, monkeypatch):
    """The post-mode pooling backward with several heads per program (their angles shared; forced at small N by
    MIN_PROGRAMS=1) against autograd through the reference's gather then rotate (1e-5), and bitwise against one
    head per program. Catches angles of the wrong level or head, a head's rows written to another head, a kv
    head's inverse map used for the wrong query heads, v turned."""
    from lighthouse.kernels import scatter
    from lighthouse.kernels.layer import run_pool_bwd

    b, hq, hkv, n, d, levels, p, theta, pos_kind = case
    cfg = LighthouseConfig(levels=levels, pooling=p, topk=128, rope="post", rope_theta=theta)
    q, k, v = rand_qkv(b, hq, hkv, n, d, seed=n, device=DEVICE)
    positions = _positions(pos_kind, b, n)
    plan = make_plan(cfg, q, k, v)
    sel, _ = run_selection(q, k, v, plan)
    g = torch.Generator().manual_seed(5)
    d_subs = [torch.randn(b, x.shape[1], plan.selected_len, d, generator=g).to(DEVICE) for x in (q, k, v)]
    rope = rope_args(plan, q.device, positions)
    one_head = run_pool_bwd(d_subs, sel, plan, rope)
    monkeypatch.setattr(scatter, "MIN_PROGRAMS", 1)
    assert scatter.heads_per_program(hq, 1, scatter.MAX_HEADS, 1) == hq  # the path under test is taken
    assert scatter.heads_per_program(hkv, 1, scatter.MAX_HEADS, 1) == hkv
    shared = run_pool_bwd(d_subs, sel, plan, rope)
    pos = entry_positions(sel.indices, plan, positions).cpu()
    for i, (x, got, alone) in enumerate(zip((q, k, v), shared, one_head)):
        group = x.shape[1] // hkv
        leaf = x.detach().cpu().double().requires_grad_()
        rows = gather_entries(leaf, sel.indices.cpu(), plan, group)
        if i < 2:
            rows = rotate(rows, pos.repeat_interleave(group, dim=1), plan)
        (want,) = torch.autograd.grad(rows, leaf, d_subs[i].cpu().double())
        assert rel_err(got.cpu(), want) <= 1e-5, "dq dk dv"[3 * i : 3 * i + 2]
        assert torch.equal(got, alone), "several heads per program changed the bits"


def test_heads_per_program_divides_the_heads_and_keeps_programs():
    """The largest divisor of the head count up to `most` that keeps `min_programs`; 1 when none does."""
    from lighthouse.kernels.scatter import heads_per_program

    assert heads_per_program(8, 6144, 8, 1024) == 8
    assert heads_per_program(32, 6144, 8, 1024) == 8
    assert heads_per_program(6, 6144, 8, 1024) == 6
    assert heads_per_program(7, 6144, 8, 1024) == 7
    assert heads_per_program(12, 6144, 8, 1024) == 6
    assert heads_per_program(8, 256, 8, 1024) == 2  # 256 blocks: 4 programs of 2 heads each per block
    assert heads_per_program(8, 64, 8, 1024) == 1
    assert heads_per_program(1, 6144, 8, 1024) == 1
