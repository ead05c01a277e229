"""The `gla` scorer's wiring, with fla's kernel replaced by a plain recurrent simple GLA (tests/spec_loops.py).

flash-linear-attention is not installed on the CPU machines (and its kernels need CUDA), so the module the
scorer imports, `fla.ops.simple_gla`, is substituted here by `gla_recurrent`: the recurrence S_t = exp(g_t)
S_{t-1} + k_t^T v_t, o_t = scale q_t S_t in fla's calling convention. The expected scores come from the
parallel form written separately (spec_loops.gla_scores), in the (B, H, N, D) layout, so a wrong transpose,
gate layout, scale, role swap or GQA mapping in the scorer shows up. reports/h200/tools/gpu_validate.py runs the real
fla kernel against the same recurrence on CUDA.
"""

import sys
import types

import pytest
import torch

import lighthouse
from lighthouse import LighthouseConfig
from lighthouse.plan import make_plan

from conftest import rand_qkv, rel_err
from spec_loops import attention_loops, gla_recurrent, gla_scores, padded, pyramid_index

from lighthouse.reference.scores import token_scores


@pytest.fixture
def fake_fla(monkeypatch):
    """Install fla.ops.simple_gla.chunk_simple_gla = the recurrent reference; returns the list of its calls."""
    calls = []

    def chunk_simple_gla(q, k, v, g=None, scale=None, **kwargs):
        assert q.dim() == 4 and g is not None and g.shape == q.shape[:3], "fla takes (B, T, H, D) and g (B, T, H)"
        calls.append(tuple(q.shape))
        return gla_recurrent(q, k, v, g, scale)

    ops = types.ModuleType("fla.ops")
    simple = types.ModuleType("fla.ops.simple_gla")
    simple.chunk_simple_gla = chunk_simple_gla
    ops.simple_gla = simple
    fla = types.ModuleType("fla")
    fla.ops = ops
    for name, mod in (("fla", fla), ("fla.ops", ops), ("fla.ops.simple_gla", simple)):
        monkeypatch.setitem(sys.modules, name, mod)
    return calls


def _inputs(b=1, hq=4, hkv=2, n=300, d=8, seed=41):
    q, k, v = rand_qkv(b, hq, hkv, n, d, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    gate = torch.nn.functional.logsigmoid(torch.randn(b, hq, n, generator=g) + 2.0)  # log-gates in (-inf, 0)
    return q, k, v, gate


def test_gla_token_scores_equal_the_parallel_form(fake_fla):
    """sq = ||GLA(Q, K, V)||, sk = ||GLA(K, Q, V)|| per query head with its own gate, max over the GQA group,
    -inf on the padded tail. Catches (B, H, T, D) handed to fla untransposed, the gate's (B, H, N) layout not
    moved to fla's (B, T, H), a scale other than D^-1/2, Q and K not swapped for sk, kv heads repeated in the
    wrong order, the group max missing, padding scored as real tokens."""
    q, k, v, gate = _inputs(n=301)  # padded to 302
    cfg = LighthouseConfig(levels=2, pooling=2, topk=128, scorer="gla", impl="torch")
    plan = make_plan(cfg, q, k, v, gate)
    assert plan.padded_len == 302
    sq, sk = token_scores(q, k, v, plan, gate)
    want_q, want_k = (padded(s, plan.padded_len) for s in gla_scores(q, k, v, gate))
    assert fake_fla, "the scorer must call fla's chunk_simple_gla"
    for got, want in ((sq, want_q), (sk, want_k)):
        assert got.shape == want.shape and got.dtype == torch.float32
        real = torch.isfinite(want)
        assert torch.equal(torch.isfinite(got), real)
        assert rel_err(got[real], want[real]) <= 1e-5


def test_gla_selection_and_output_follow_its_scores(fake_fla):
    """The public select / lighthouse_attention with scorer='gla' and a padded N use these scores as the spec
    says: selection equals the spec loops on the parallel-form scores, output equals the whole layer written
    from the spec. Catches a gate that never reaches the scorer (the norm scores select differently here) and
    gla scores that are computed but not used."""
    q, k, v, gate = _inputs(n=301, hq=2, hkv=1)
    cfg = LighthouseConfig(levels=2, pooling=2, topk=128, scorer="gla", impl="torch", sdpa_backend="math")
    plan = make_plan(cfg, q, k, v, gate)
    sq, sk = gla_scores(q, k, v, gate)
    entries, want = attention_loops(q, k, v, 2, 2, 128, plan.padded_len, sq=sq, sk=sk)
    idx = lighthouse.select(q, k, v, gate=gate, config=cfg)
    assert idx[0, 0].tolist() == [pyramid_index(level, i, plan.padded_len, 2) for level, i in entries[0][0]]
    norm_idx = lighthouse.select(q, k, v, config=cfg.replace(scorer="norm"))
    assert not torch.equal(idx, norm_idx), "the gla and norm selections must differ on this input"
    out = lighthouse.lighthouse_attention(q, k, v, gate=gate, config=cfg)
    assert rel_err(out, want) <= 1e-6


def test_without_fla_gla_is_a_clear_error(monkeypatch):
    """Catches an ImportError (or a silent fallback to another scorer) instead of the documented message."""
    monkeypatch.setitem(sys.modules, "fla", None)
    q, k, v, gate = _inputs(n=256, hq=2, hkv=1)
    with pytest.raises(ValueError, match=r"scorer='gla' needs the flash-linear-attention package"):
        lighthouse.select(q, k, v, gate=gate, levels=2, pooling=2, topk=128, scorer="gla", impl="torch")


def test_recurrent_and_parallel_forms_agree():
    """The two references of this file agree with each other (so neither can be wrong the same way as the
    scorer): the recurrent form in fla's layout equals the parallel form per head."""
    q, k, v, gate = _inputs(n=64, hq=2, hkv=2)
    out, _ = gla_recurrent(*(x.transpose(1, 2).double() for x in (q, k, v)), gate.transpose(1, 2), scale=8**-0.5)
    from spec_loops import gla_parallel

    for h in range(2):
        want = gla_parallel(q[0, h].double(), k[0, h].double(), v[0, h].double(), gate[0, h])
        assert torch.allclose(out[0, :, h], want, rtol=1e-10, atol=1e-12)
