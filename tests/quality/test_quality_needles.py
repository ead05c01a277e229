"""Planted needles and their recall, checked against materialised dense attention."""

import math

import pytest
import torch

import lighthouse
from lighthouse.quality.dense import dense_reference
from lighthouse.quality.inputs import synthetic
from lighthouse.quality.needles import BUCKET_COLUMNS, TARGET_MASS, Needles, needle_hits, place_needles, recall_figures

CPU = torch.device("cpu")


def test_needle_positions_follow_the_depth_rule():
    """Catches j computed as depth * i instead of i - depth * i, needles sharing a position, or a bucket
    left empty."""
    nd = place_needles(4096, 3, seed=2)
    i, j = nd.query.double(), nd.key.double()
    assert torch.allclose((i - j) / i, nd.depth)
    assert (j >= 0).all() and (j < i).all() and (i >= 2048).all()
    assert len(set(nd.query.tolist()) | set(nd.key.tolist())) == 2 * nd.query.numel()
    assert torch.equal(torch.bincount(nd.bucket, minlength=10), torch.full((10,), 3))
    with pytest.raises(ValueError, match="too short"):
        place_needles(100, 4)


def dense_mass_on_needles(x):
    """(B, Hq, M) float64 softmax probability of key j at query i, from the materialised causal scores."""
    nd, n, d = x.needles, x.q.shape[2], x.q.shape[-1]
    k_rep = x.k.double().repeat_interleave(x.q.shape[1] // x.k.shape[1], 1)
    s = x.q.double()[:, :, nd.query] @ k_rep.transpose(-1, -2) / math.sqrt(d)  # (B, Hq, M, N)
    s = s.masked_fill(torch.arange(n)[None, :] > nd.query[:, None], float("-inf"))
    return s.softmax(-1).gather(-1, nd.key.view(1, 1, -1, 1).expand(*s.shape[:3], 1))[..., 0]


@pytest.mark.parametrize("head_dim,dtype", [(16, "fp32"), (32, "bf16"), (64, "fp32"), (128, "bf16")])
def test_planted_norm_puts_target_mass_on_the_needle_and_key_norms_are_typical(head_dim, dtype):
    """The promise of docs/quality.md: |q_i| is the smallest norm at which dense attention puts 90% of i's mass on j.
    Catches a bisection that never moves (|q_i| left at its start value: mass ~1), a mass computed on the
    wrong keys, and a needle found by its size (k_j longer than typical keys). D=16 has needles that are
    unreachable at the first draw (see the next test)."""
    x = synthetic("needle", 1, 4, 2, 2048, head_dim, dtype, CPU, seed=0, per_bucket=2)
    nd = x.needles
    key_norms = x.k.float().norm(dim=-1)
    assert torch.allclose(key_norms[:, :, nd.key], key_norms.median().expand(1, 2, nd.key.numel()), rtol=1e-2)
    mass = dense_mass_on_needles(x)
    assert float((mass - TARGET_MASS).abs().max()) <= 0.01
    # smallest: 3% less norm loses the target at every needle
    x.q[:, :, nd.query] *= 0.97
    assert float(dense_mass_on_needles(x).max()) < TARGET_MASS


def test_unreachable_needles_are_redrawn_or_reported():
    """D=16, N=2K, seed 0: the first draw has needles whose k_j is outprojected by an earlier key along q_i
    (no norm reaches 90%); one draw must report that, the default re-draws them (the test above checks the
    mass). At D=2 nearly every direction is dominated: re-drawing cannot help, so plant must say so."""
    from lighthouse.quality.needles import UnreachableNeedles, plant

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 2048, 16, generator=g) for _ in range(3))
    nd = place_needles(2048, 2, seed=0)
    with pytest.raises(UnreachableNeedles, match=r"unreachable after 1 draws at N=2048, head_dim=16"):
        plant(q.clone(), k.clone(), v.clone(), nd, max_draws=1)
    with pytest.raises(ValueError, match="no query norm puts 0.9 of dense attention on it"):
        synthetic("needle", 1, 2, 2, 2048, 2, "fp32", CPU, seed=0, per_bucket=2)


@pytest.mark.parametrize("head_dim,dtype,seed", [(32, "bf16", 4), (16, "fp32", 0)])
def test_dense_retrieves_every_needle_and_random_vectors_do_not(head_dim, dtype, seed):
    """The recall rule (cosine >= 0.5 with v_j at i) applied to dense output must give 1; applied to an
    unrelated output it must give ~0 (catches a cosine taken against the wrong position or head, and, at
    D=16, needles left unreachable)."""
    x = synthetic("needle", 2, 2, 1, 2048, head_dim, dtype, CPU, seed=seed, per_bucket=2)
    ref = dense_reference(x.q, x.k, x.v)
    assert recall_figures(needle_hits(ref.out, x.v, x.needles), x.needles)["needle_recall"] == 1.0
    noise = torch.randn_like(ref.out)
    assert recall_figures(needle_hits(noise, x.v, x.needles), x.needles)["needle_recall"] < 0.1


def test_full_coverage_configuration_retrieves_every_needle():
    """L=2, N = k*p: every token is emitted, so Lighthouse must retrieve every needle (catches a needle
    design that Lighthouse cannot find even when it sees everything)."""
    x = synthetic("needle", 1, 2, 2, 1024, 32, "fp32", CPU, seed=5, per_bucket=2)
    out = lighthouse.lighthouse_attention(x.q, x.k, x.v, levels=2, pooling=4, topk=256, impl="torch")
    assert recall_figures(needle_hits(out, x.v, x.needles), x.needles)["needle_recall"] == 1.0


def test_recall_per_bucket_matches_hand_count():
    """Catches buckets keyed by the wrong needle or averaged over the wrong axis."""
    nd = Needles(
        torch.tensor([100, 200, 300]), torch.tensor([95, 20, 150]), torch.tensor([0.05, 0.9, 0.5], dtype=torch.float64)
    )
    hits = torch.tensor([[[True, False, True], [True, True, False]]])  # (B=1, H=2, M=3)
    fig = recall_figures(hits, nd)
    assert fig["needle_recall"] == pytest.approx(4 / 6)
    assert fig["recall_d00"] == 1.0 and fig["recall_d90"] == 0.5 and fig["recall_d50"] == 0.5
    assert fig["recall_d10"] is None and set(BUCKET_COLUMNS) <= set(fig)


def test_a_norm_the_dtype_cannot_hold_is_reported():
    """The needed |q_i| scales as 1 / |k|: with keys of norm ~6e-4 it is ~1e5, past fp16's 65504. fp32 plants it
    (mass checked independently); fp16 must say so rather than store inf (catches a silent overflow)."""
    from lighthouse.quality.inputs import QualityInputs
    from lighthouse.quality.needles import UnreachableNeedles, plant

    nd = place_needles(512, 1, seed=0)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 512, 32, generator=g) * 1e-4 for _ in range(3))
    x = QualityInputs("needle", q.clone(), k.clone(), v.clone(), torch.zeros(1, 2, 512), needles=nd)
    plant(x.q, x.k, x.v, nd)
    assert float(x.q[:, :, nd.query].norm(dim=-1).min()) > 65504
    assert float((dense_mass_on_needles(x) - TARGET_MASS).abs().max()) <= 0.01
    with pytest.raises(UnreachableNeedles, match="torch.float16 cannot hold"):
        plant(q.half(), k.half(), v.half(), nd)
