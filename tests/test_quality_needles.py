"""Planted needles and their recall, checked against materialised dense attention."""

import math

import pytest
import torch

import lighthouse
from lighthouse.quality.dense import dense_reference
from lighthouse.quality.inputs import synthetic
from lighthouse.quality.needles import (BUCKET_COLUMNS, Needles, needle_hits, place_needles, recall_figures)

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


def test_dense_puts_most_mass_on_the_needle_and_key_norms_are_typical():
    """Catches a needle found by its size (k_j longer than typical keys) or one dense attention misses."""
    x = synthetic("needle", 1, 4, 2, 1024, 32, "fp32", CPU, seed=3, per_bucket=2)
    nd = x.needles
    key_norms = x.k.norm(dim=-1)
    typical = key_norms.median()
    assert torch.allclose(key_norms[:, :, nd.key], typical.expand(1, 2, nd.key.numel()), rtol=1e-4)
    k_rep = x.k.repeat_interleave(2, 1).double()
    s = x.q.double()[:, :, nd.query] @ k_rep.transpose(-1, -2) / math.sqrt(32)  # (B, H, M, N)
    s = s.masked_fill(torch.arange(1024)[None, :] > nd.query[:, None], float("-inf"))
    mass = s.softmax(-1).gather(-1, nd.key.view(1, 1, -1, 1).expand(1, 4, -1, 1))
    assert float(mass.min()) >= 0.89


def test_dense_retrieves_every_needle_and_random_vectors_do_not():
    """The recall rule (cosine >= 0.5 with v_j at i) applied to dense output must give 1; applied to an
    unrelated output it must give ~0 (catches a cosine taken against the wrong position or head)."""
    x = synthetic("needle", 2, 2, 1, 2048, 32, "bf16", CPU, seed=4, per_bucket=2)
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
    nd = Needles(torch.tensor([100, 200, 300]), torch.tensor([95, 20, 150]),
                 torch.tensor([0.05, 0.9, 0.5], dtype=torch.float64))
    hits = torch.tensor([[[True, False, True], [True, True, False]]])  # (B=1, H=2, M=3)
    fig = recall_figures(hits, nd)
    assert fig["needle_recall"] == pytest.approx(4 / 6)
    assert fig["recall_d00"] == 1.0 and fig["recall_d90"] == 0.5 and fig["recall_d50"] == 0.5
    assert fig["recall_d10"] is None and set(BUCKET_COLUMNS) <= set(fig)
