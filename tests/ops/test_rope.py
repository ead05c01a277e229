"""rope='post' (RoPE after selection, spec section 5a) against tests/rope_spec.py, the rule written out plainly:
the configuration, the PyTorch path, positions along the sub-sequence, level-1 rows against transformers' RoPE."""

import pytest
import torch

import lighthouse
from lighthouse.config import LighthouseConfig
from lighthouse.plan import make_plan
from lighthouse.reference.rope import entry_positions, rotate
from lighthouse.rope import inverse_frequencies

from conftest import rand_qkv, rel_err, tied_qkv
from rope_spec import LLAMA3, last_positions, plain_inv_freq, post_attention

LINEAR = {"rope_type": "linear", "factor": 4.0}


# ------------------------------------------------------------------------------------------ configuration
def test_pre_is_the_default_and_unchanged():
    """Catches a default that moved, or a post placement leaking into pre (same output as before the option)."""
    assert LighthouseConfig().rope == "pre"
    q, k, v = rand_qkv(1, 2, 1, 301, 8, seed=3)
    cfg = LighthouseConfig(levels=2, pooling=2, topk=128, impl="torch", sdpa_backend="math")
    base = lighthouse.lighthouse_attention(q, k, v, config=cfg)
    assert torch.equal(lighthouse.lighthouse_attention(q, k, v, config=cfg.replace(rope_theta=3.0)), base)
    assert not torch.allclose(lighthouse.lighthouse_attention(q, k, v, config=cfg.replace(rope="post")), base)


@pytest.mark.parametrize(
    "bad,needle",
    [
        (dict(rope="mid"), "rope must be one of pre, post"),
        (dict(rope_theta=0.0), "rope_theta must be a finite number > 0"),
        (dict(rope_theta=float("inf")), "rope_theta must be a finite number > 0"),
        (dict(rope_theta="1e4"), "rope_theta must be a finite number > 0"),
        (dict(rope_scaling={"rope_type": "yarn", "factor": 2.0}), "rope_type must be one of default, linear, llama3"),
        (dict(rope_scaling={"rope_type": "linear"}), "missing ['factor']"),
        (dict(rope_scaling={"rope_type": "linear", "factor": 2.0, "beta": 1}), "unknown ['beta']"),
        (dict(rope_scaling={"type": "linear", "factor": 0}), "rope_scaling['factor'] must be a finite number > 0"),
        (dict(rope_scaling={**LLAMA3, "high_freq_factor": 0.5}), "rope_scaling['high_freq_factor'] must be >"),
        (
            dict(rope_scaling={**LLAMA3, "original_max_position_embeddings": 1.5}),
            "rope_scaling['original_max_position_embeddings'] must be an integer",
        ),
        (dict(rope_scaling=[1, 2]), "rope_scaling must be None or a dict"),
    ],
)
def test_bad_rope_parameters_are_refused_by_name(bad, needle):
    with pytest.raises(ValueError) as err:
        LighthouseConfig(**bad)
    assert needle in str(err.value)


def test_rope_config_round_trips_through_json_values():
    """as_dict gives plain JSON values (rope_scaling a dict, config.json keeps it) and builds the same config."""
    cfg = LighthouseConfig(rope="post", rope_theta=5e5, rope_scaling={**LLAMA3, "factor": 8})
    entry = cfg.as_dict()
    assert entry["rope_scaling"] == {**LLAMA3, "factor": 8.0} and LighthouseConfig(**entry) == cfg
    assert hash(cfg) == hash(LighthouseConfig(**entry))
    assert LighthouseConfig(rope_scaling={"rope_type": "default"}).rope_scaling is None


def test_post_refuses_an_odd_head_dim_and_bad_positions():
    cfg = LighthouseConfig(levels=2, pooling=2, topk=128, impl="torch", rope="post")
    q, k, v = rand_qkv(1, 1, 1, 256, 7)
    with pytest.raises(ValueError, match="rope='post' needs an even head dim D"):
        lighthouse.lighthouse_attention(q, k, v, config=cfg)
    q, k, v = rand_qkv(2, 1, 1, 256, 8)
    for bad, needle in (
        (torch.arange(255), "positions must have shape"),
        (torch.zeros(3, 256, dtype=torch.long), "positions must have shape"),
        (torch.arange(256.0), "positions must be an integer tensor"),
    ):
        with pytest.raises(ValueError, match=needle):
            lighthouse.lighthouse_attention(q, k, v, config=cfg, positions=bad)
    with pytest.warns(UserWarning, match="positions= is used only by rope='post'"):
        lighthouse.lighthouse_attention(q, k, v, config=cfg.replace(rope="pre"), positions=torch.arange(256))


@pytest.mark.parametrize("theta,scaling", [(10000.0, None), (500000.0, LLAMA3), (10000.0, LINEAR)])
def test_inverse_frequencies_equal_transformers(theta, scaling):
    """Catches a frequency formula that departs from the model's: transformers' own rope init functions."""
    transformers = pytest.importorskip("transformers")
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    params = {"rope_type": "default", "rope_theta": theta, **(scaling or {})}
    config = transformers.LlamaConfig(hidden_size=64, num_attention_heads=2, head_dim=32, rope_parameters=params)
    kind = params["rope_type"]
    if kind == "default":
        from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

        want, _ = LlamaRotaryEmbedding.compute_default_rope_parameters(config)
    else:
        want, _ = ROPE_INIT_FUNCTIONS[kind](config)
    got = inverse_frequencies(LighthouseConfig(rope_theta=theta, rope_scaling=scaling), 32)
    assert torch.equal(got, want.float())
    torch.testing.assert_close(plain_inv_freq(32, theta, scaling), want.float(), rtol=1e-6, atol=0)


# -------------------------------------------------------------------------------- the PyTorch path
POST_CASES = [
    # (B, Hq, Hkv, N, D, levels, pooling, topk, theta, scaling, positions)
    (1, 2, 2, 256, 8, 2, 2, 128, 10000.0, None, None),
    (2, 4, 2, 301, 6, 2, 2, 128, 10.0, None, "offset"),  # GQA, padded, odd D/2, large angles, given positions
    (1, 2, 1, 515, 8, 3, 2, 128, 500000.0, LLAMA3, None),  # three levels, padded, llama3 scaling
    (1, 1, 1, 390, 4, 2, 3, 128, 1000.0, LINEAR, "offset"),  # pooling 3, linear scaling
]


def _positions(kind, b, n):
    if kind is None:
        return None
    return torch.arange(n)[None] + torch.tensor([[1000], [37]])[:b]


@pytest.mark.parametrize("case", POST_CASES, ids=lambda c: "B{}_Hq{}_Hkv{}_N{}_D{}_L{}_p{}_k{}_t{}".format(*c))
def test_post_equals_the_rule_written_out(case):
    """Output (fp32, 1e-5) and dq, dk, dv (against autograd through the plain computation) of the PyTorch path.
    Catches a rotation at the wrong position (first token, the level's index, the sub-sequence row), rotated
    v, rotation before pooling, a wrong pairing or sign, and scores computed on rotated q, k."""
    b, hq, hkv, n, d, levels, p, topk, theta, scaling, pos_kind = case
    q, k, v = rand_qkv(b, hq, hkv, n, d, seed=n + d, requires_grad=True)
    positions = _positions(pos_kind, b, n)
    cfg = LighthouseConfig(
        levels=levels,
        pooling=p,
        topk=topk,
        impl="torch",
        sdpa_backend="math",
        rope="post",
        rope_theta=theta,
        rope_scaling=scaling,
    )
    out = lighthouse.lighthouse_attention(q, k, v, config=cfg, positions=positions)
    indices = lighthouse.select(q, k, v, config=cfg.replace(rope="pre"))  # selection on the raw q and k
    assert torch.equal(lighthouse.select(q, k, v, config=cfg), indices)
    n_pad = make_plan(cfg, q, k, v).padded_len
    want = post_attention(q, k, v, indices, levels, p, n_pad, theta, scaling, positions)
    assert rel_err(out, want) <= 1e-5
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    got = torch.autograd.grad(out, (q, k, v), grad)
    expected = torch.autograd.grad(want, (q, k, v), grad.double())
    for name, a, w in zip(("dq", "dk", "dv"), got, expected):
        assert rel_err(a, w) <= 1e-5, name


@pytest.mark.parametrize(
    "levels,pooling,topk,n", [(2, 2, 128, 301), (3, 2, 128, 515), (3, 4, 256, 4096), (4, 2, 128, 1030)]
)
def test_positions_along_the_sub_sequence_never_decrease(levels, pooling, topk, n):
    """The causal order (spec section 4) puts every entry after the entries its span ends after: the rotation
    positions, computed from the indices here, never decrease along the sub-sequence; and the library's
    positions are those. Random and tied inputs."""
    cfg = LighthouseConfig(levels=levels, pooling=pooling, topk=topk, impl="torch", rope="post")
    for q, k, v in (rand_qkv(2, 2, 1, n, 4, seed=n), tied_qkv("blocks", 1, 1, 1, n, 4, seed=n)):
        indices = lighthouse.select(q, k, v, config=cfg)
        plan = make_plan(cfg, q, k, v)
        got = entry_positions(indices, plan)
        for bi in range(indices.shape[0]):
            for h in range(indices.shape[1]):
                want = last_positions(indices[bi, h].tolist(), n, plan.padded_len, levels, pooling)
                assert got[bi, h].tolist() == want
                assert all(a <= b for a, b in zip(want, want[1:])), "positions must never decrease"


def test_level_one_rows_are_rotated_as_transformers_rotates_their_tokens():
    """Every level-1 entry (a token t) is rotated exactly as a Llama model's RoPE rotates token t (transformers'
    own rotary embedding and apply_rotary_pos_emb), given positions included."""
    pytest.importorskip("transformers")
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    n, d, theta = 515, 16, 500000.0
    cfg = LighthouseConfig(
        levels=3, pooling=2, topk=128, impl="torch", rope="post", rope_theta=theta, rope_scaling=LLAMA3
    )
    q, k, v = rand_qkv(2, 1, 1, n, d, seed=9)
    positions = torch.arange(n)[None] + torch.tensor([[0], [4000]])
    rotary = LlamaRotaryEmbedding(
        LlamaConfig(hidden_size=d, num_attention_heads=1, head_dim=d, rope_parameters={"rope_theta": theta, **LLAMA3})
    )
    cos, sin = rotary(q, positions)
    q_rot, _ = apply_rotary_pos_emb(q, k, cos, sin)
    plan = make_plan(cfg, q, k, v)
    indices = lighthouse.select(q, k, v, config=cfg)
    sub = rotate(
        q[:, :, :, :].gather(2, indices.clamp(max=n - 1)[..., None].expand(-1, -1, -1, d)),
        entry_positions(indices, plan, positions),
        plan,
    )
    tokens = indices < n  # level-1 entries are pyramid indices below N_pad; the padding ones are not real
    assert int(tokens.sum()) > 100
    want = q_rot.gather(2, indices.clamp(max=n - 1)[..., None].expand(-1, -1, -1, d))
    torch.testing.assert_close(sub[tokens], want[tokens], rtol=1e-6, atol=1e-6)
