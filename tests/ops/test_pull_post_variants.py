"""Every launch shape of the post-mode pooling backward (kernels/scatter.py's POST_* settings, the shapes
scripts/tune_pull_post.py times on the GPU) against autograd through the reference's gather then rotate, and
bitwise against the default shape: a shape changes how the work is cut, never a result."""

import pytest
import torch

from lighthouse import LighthouseConfig
from lighthouse.kernels import scatter
from lighthouse.kernels.layer import run_pool_bwd, run_selection
from lighthouse.kernels.rope import rope_args
from lighthouse.plan import make_plan
from lighthouse.reference.gather import gather_entries
from lighthouse.reference.rope import entry_positions, rotate

from conftest import rand_qkv, rel_err

#: (MAX_HEADS, POST_BLOCK_T, POST_SPLIT_UNROTATED, POST_HOIST_INV): every value of each setting at least once
VARIANTS = [
    (1, 32, False, False),
    (4, 16, True, True),
    (2, 32, False, True),
]


@pytest.fixture(scope="module")
def case():
    """GQA (dq alone, then dk with dv: the split then parts dv from dk), padded, odd D/2, far positions."""
    b, hq, hkv, n, d = 1, 4, 2, 261, 6
    cfg = LighthouseConfig(levels=2, pooling=2, topk=128, rope="post", rope_theta=10.0)
    q, k, v = rand_qkv(b, hq, hkv, n, d, seed=3)
    plan = make_plan(cfg, q, k, v)
    sel, _ = run_selection(q, k, v, plan)
    g = torch.Generator().manual_seed(7)
    d_subs = [torch.randn(b, x.shape[1], plan.selected_len, d, generator=g) for x in (q, k, v)]
    positions = torch.arange(n) + 123_457
    pos = entry_positions(sel.indices, plan, positions)
    want = []
    for i, x in enumerate((q, k, v)):
        group = x.shape[1] // hkv
        leaf = x.detach().double().requires_grad_()
        rows = gather_entries(leaf, sel.indices, plan, group)
        if i < 2:
            rows = rotate(rows, pos.repeat_interleave(group, dim=1), plan)
        want.append(torch.autograd.grad(rows, leaf, d_subs[i].double())[0])
    rope = rope_args(plan, q.device, positions)
    return plan, sel, d_subs, rope, want, run_pool_bwd(d_subs, sel, plan, rope)


def test_default_shape_equals_the_reference(case):
    *_, want, default = case
    for name, got, ref in zip(("dq", "dk", "dv"), default, want):
        assert rel_err(got, ref) <= 1e-5, name


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "heads{}_t{}_split{:d}_hoist{:d}".format(*v))
def test_every_post_pull_shape_equals_the_reference_and_the_default(case, variant, monkeypatch):
    plan, sel, d_subs, rope, want, default = case
    heads, block_t, split, hoist = variant
    for name, value in dict(
        MAX_HEADS=heads, POST_BLOCK_T=block_t, POST_SPLIT_UNROTATED=split, POST_HOIST_INV=hoist, MIN_PROGRAMS=1
    ).items():
        monkeypatch.setattr(scatter, name, value)
    _, launches = scatter.pull_launches(d_subs[1:], sel.inv, plan, False, rope=rope, rotate=1)
    shapes = [(launch.kwargs["NUM"], launch.kwargs["ROT"], launch.kwargs["HEADS"]) for launch in launches]
    # the shape under test is the one launched (the memo keyed by the settings): dk with dv, or dk then dv alone
    kv_heads = min(heads, plan.kv_heads)  # 2 kv heads: at most 2 a program
    assert shapes == ([(1, 1, kv_heads), (1, 0, 1)] if split else [(2, 1, kv_heads)])
    assert launches[0].kwargs["BLOCK_T"] == block_t and launches[0].kwargs.get("HOIST", False) == hoist
    got = run_pool_bwd(d_subs, sel, plan, rope)
    for name, g, ref, base in zip(("dq", "dk", "dv"), got, want, default):
        assert rel_err(g, ref) <= 1e-5, name
        assert torch.equal(g, base), f"{name}: the launch shape changed the bits"
