"""quality figures (dense reference, output error, cosine, coverage) against materialised computations."""

import math

import pytest
import torch

import lighthouse
from lighthouse.config import LighthouseConfig
from lighthouse.plan import make_plan
from lighthouse.quality.coverage import coverage_per_query
from lighthouse.quality.dense import dense_reference
from lighthouse.quality.metrics import distribution_figures, output_figures, quantile

from conftest import rand_qkv


def materialised_probs(q, k):
    """The full causal softmax(q k^T / sqrt(D)) (B, Hq, N, N) in float64, kv heads repeated."""
    group = q.shape[1] // k.shape[1]
    k = k.double().repeat_interleave(group, 1)
    s = q.double() @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    n = q.shape[2]
    s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    return s.softmax(-1)


@pytest.mark.parametrize("chunk", [1, 7, 64, None])
def test_chunked_dense_matches_materialised_softmax(chunk):
    """Catches a wrong causal mask at chunk edges (off by one, prefix cut short), a wrong lse or GQA mix-up."""
    q, k, v = rand_qkv(2, 4, 2, 96, 8, seed=1)
    ref = dense_reference(q, k, v, chunk=chunk)
    p = materialised_probs(q, k)
    want = p @ v.double().repeat_interleave(2, 1)
    assert torch.allclose(ref.out.double(), want, atol=1e-5, rtol=1e-5)
    s = q.double() @ k.double().repeat_interleave(2, 1).transpose(-1, -2) / math.sqrt(8)
    s = s.masked_fill(torch.ones(96, 96, dtype=torch.bool).triu(1), float("-inf"))
    assert torch.allclose(ref.lse.double(), torch.logsumexp(s, -1), atol=1e-5)


def test_output_figures_match_direct_formulas():
    """Catches a per-row instead of global norm ratio, a swapped quantile, or NaN cosines on zero rows."""
    g = torch.Generator().manual_seed(3)
    ref = torch.randn(2, 3, 50, 4, generator=g)
    out = ref + 0.3 * torch.randn(2, 3, 50, 4, generator=g)
    out[0, 0, :3] = 0  # positions Lighthouse leaves at zero: cosine 0, not NaN
    fig = output_figures(out, ref)
    assert fig["out_rel_err"] == pytest.approx(float((out - ref).norm() / ref.norm()), rel=1e-6)
    cos = torch.nn.functional.cosine_similarity(out.double(), ref.double(), dim=-1).reshape(-1)
    cos[:3] = 0
    import numpy as np

    assert fig["cos_median"] == pytest.approx(float(np.median(cos.numpy())), abs=1e-6)
    assert fig["cos_p10"] == pytest.approx(float(np.quantile(cos.numpy(), 0.1)), abs=1e-6)
    assert output_figures(ref, ref)["out_rel_err"] == 0.0


def test_error_shape_matches_a_direct_computation(monkeypatch):
    """norm_ratio_median and err_top10_share against numpy over an explicit list of tokens, in chunks of 50 rows
    (catches a top share taken per chunk). Catches a ratio taken the wrong way round, tokens with a zero dense
    output counted (their ratio is undefined), a lower or upper median instead of the interpolated one (220
    ratios: an even count), a top share over the wrong count (ceil(T / 10)) or over channels instead of tokens,
    and a figure for an output without error."""
    import numpy as np

    from lighthouse.quality import metrics

    monkeypatch.setattr(metrics, "ROWS_PER_CHUNK", 50)
    g = torch.Generator().manual_seed(5)
    ref = torch.randn(2, 3, 37, 4, generator=g)
    out = 0.7 * ref + 0.2 * torch.randn(2, 3, 37, 4, generator=g)
    out[1, 2, 5] += 9.0  # one token carries a large error
    out[0, 0, 3:9] += 3.0  # and a few in the first chunk
    ref[0, 1, 0] = 0.0  # tokens with no dense output: left out of the ratio, their error still counts
    ref[1, 0, 7] = 0.0
    fig = output_figures(out, ref)
    o, r = out.reshape(-1, 4).double().numpy(), ref.reshape(-1, 4).double().numpy()
    ratios = [np.linalg.norm(o[t]) / np.linalg.norm(r[t]) for t in range(len(r)) if np.linalg.norm(r[t]) > 0]
    errors = sorted((float(((o[t] - r[t]) ** 2).sum()) for t in range(len(r))), reverse=True)
    top = math.ceil(len(errors) / 10)  # 222 tokens -> 23
    assert len(ratios) == 220 and top == 23
    assert fig["norm_ratio_median"] == pytest.approx(float(np.median(ratios)), abs=1e-9)
    assert fig["err_top10_share"] == pytest.approx(sum(errors[:top]) / sum(errors), abs=1e-9)
    assert 0.1 < fig["err_top10_share"] < 1
    same = output_figures(ref, ref)
    assert same["err_top10_share"] is None and same["norm_ratio_median"] == pytest.approx(1.0)


def test_error_shape_of_a_broken_output_is_nan_not_empty():
    """An output with NaN must not read as one without error (empty means no error)."""
    ref = torch.randn(1, 2, 16, 4)
    out = ref.clone()
    out[0, 1, 3, 0] = float("nan")
    fig = output_figures(out, ref)
    assert math.isnan(fig["err_top10_share"]) and math.isnan(fig["norm_ratio_median"])


def test_quantile_and_distribution_match_numpy():
    """Catches an off-by-one in the interpolated quantile."""
    import numpy as np

    x = torch.randn(1001, generator=torch.Generator().manual_seed(4))
    for q in (0.0, 0.1, 0.5, 0.93, 1.0):
        assert quantile(x, q) == pytest.approx(float(np.quantile(x.numpy(), q)), abs=1e-9)
    fig = distribution_figures(x, "coverage")
    assert fig["coverage"] == pytest.approx(float(x.double().mean()))


def coverage_by_loops(q, k, indices, plan):
    """coverage(t) straight from the definition: walk the scatter rule per position, look up sub-sequence
    positions in a Python dict, sum the materialised dense probabilities of the visible level-1 tokens."""
    import numpy as np

    p = materialised_probs(q, k).numpy()
    b_, hq, n, _ = q.shape
    group = hq // k.shape[1]
    out = torch.zeros(b_, hq, n, dtype=torch.float64)
    for b in range(b_):
        for hk in range(k.shape[1]):
            pos = {int(e): s for s, e in enumerate(indices[b, hk].tolist())}
            tok = np.array([(s, j) for j, s in pos.items() if j < n])  # level-1 entries (pyramid index < N)
            for t in range(n):
                rows = []
                for lvl, (off, f) in enumerate(zip(plan.offsets, plan.spans)):
                    i = (t + 1) // f - 1
                    if i >= 0 and off + i in pos:
                        assert i * f + f - 1 <= t <= i * f + 2 * f - 2
                        rows.append(pos[off + i])
                if not rows:
                    continue
                last = max(rows)
                visible = tok[tok[:, 0] <= last, 1]
                for h in range(hk * group, (hk + 1) * group):
                    out[b, h, t] = float(p[b, h, t, visible].sum())
    return out


@pytest.mark.parametrize("levels,pooling,hq,hkv", [(2, 4, 2, 2), (3, 2, 4, 2), (4, 2, 2, 1)])
def test_coverage_matches_loops_over_materialised_attention(levels, pooling, hq, hkv):
    """Catches a wrong source row per level (scatter rule), a wrong causal cut in the sub-sequence, pooled
    entries counted as full resolution, GQA heads reading the wrong selection, or a chunk-edge bug."""
    cfg = LighthouseConfig(levels=levels, pooling=pooling, topk=128, impl="torch", sdpa_backend="math")
    n = 2 * cfg.min_seq_len if levels == 2 else cfg.min_seq_len
    q, k, v = rand_qkv(1, hq, hkv, n, 8, seed=5 + levels)
    q = q * (1 + 3 * torch.rand(q.shape[:-1] + (1,), generator=torch.Generator().manual_seed(9)))
    plan = make_plan(cfg, q, k, v)
    idx = lighthouse.select(q, k, v, config=cfg)
    ref = dense_reference(q, k, v)
    got = coverage_per_query(q, k, ref.lse, idx, plan, chunk=37)
    want = coverage_by_loops(q, k, idx, plan)
    assert torch.allclose(got.double(), want, atol=1e-5)
    assert 0.05 < float(want.mean()) < 0.999  # the case is not trivial


def test_coverage_with_padding_matches_loops():
    """N not a multiple of tiles * p^(L-1): padded tokens must never count as seen keys (catches an index
    past N or a padded level-1 entry shifting the count of visible tokens)."""
    cfg = LighthouseConfig(levels=2, pooling=4, topk=256, impl="torch", sdpa_backend="math")
    q, k, v = rand_qkv(1, 2, 2, 1030, 8, seed=13)
    plan = make_plan(cfg, q, k, v)
    assert plan.padded_len > 1030
    idx = lighthouse.select(q, k, v, config=cfg)
    got = coverage_per_query(q, k, dense_reference(q, k, v).lse, idx, plan)
    assert torch.allclose(got.double(), coverage_by_loops(q, k, idx, plan), atol=1e-5)


def test_full_selection_gives_coverage_one():
    """L=2 at N = k*p refines every coarse entry, so every token is emitted: coverage must be 1 everywhere
    (catches a coverage that drops the query's own token or the last tokens of a tile)."""
    cfg = LighthouseConfig(levels=2, pooling=4, topk=256, impl="torch", sdpa_backend="math")
    q, k, v = rand_qkv(1, 2, 2, cfg.min_seq_len, 8, seed=11)
    plan = make_plan(cfg, q, k, v)
    idx = lighthouse.select(q, k, v, config=cfg)
    assert int((idx < cfg.min_seq_len).sum()) == 2 * cfg.min_seq_len  # every token emitted
    cov = coverage_per_query(q, k, dense_reference(q, k, v).lse, idx, plan)
    assert torch.allclose(cov, torch.ones_like(cov), atol=1e-5)


@pytest.mark.parametrize("inputs", ["long queries", "needles"])
def test_coverage_at_long_queries_is_finite_and_matches_loops(inputs):
    """Needle queries are long (|q_i| from about 10 up to thousands at D=16), so a later key among the emitted
    tokens can score far above the query's dense lse: exponentiating before masking gives inf * 0 = NaN
    (catches the mask applied after exp). The long queries make that certain; the needles are the real case
    (with |q_i| = 1e4, this one gave NaN)."""
    from lighthouse.quality.inputs import synthetic

    if inputs == "long queries":
        cfg = LighthouseConfig(levels=2, pooling=4, topk=128, impl="torch", sdpa_backend="math")
        q, k, v = rand_qkv(1, 2, 2, 1024, 8, seed=17)
        q[:, :, 100:600:50] *= 100  # scores up to ~300: float32 keeps exp(score - lse) to ~1e-5 relative
    else:
        cfg = LighthouseConfig(levels=3, pooling=4, topk=128, impl="torch", sdpa_backend="math")
        x = synthetic("needle", 1, 2, 2, 4096, 16, "fp32", torch.device("cpu"), seed=1, per_bucket=2)
        q, k, v = x.q, x.k, x.v
    plan = make_plan(cfg, q, k, v)
    idx = lighthouse.select(q, k, v, config=cfg)
    got = coverage_per_query(q, k, dense_reference(q, k, v).lse, idx, plan)
    assert bool(torch.isfinite(got).all())
    assert torch.allclose(got.double(), coverage_by_loops(q, k, idx, plan), atol=1e-5)
