"""rope='post' inside transformers: Lighthouse layers get the un-rotated q, k and the token positions, dense layers
and the dense switch keep transformers' own RoPE. Tiny random Llama (llama3 scaling), Qwen2 and Mistral."""

import pytest
import torch

pytest.importorskip("transformers")

from lighthouse import LighthouseConfig, hf, lighthouse_attention  # noqa: E402
from rope_spec import LLAMA3  # noqa: E402

N = 256
POST = LighthouseConfig(levels=2, pooling=2, topk=128, impl="torch", rope="post")
SIZES = dict(
    hidden_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=96,
    vocab_size=256,
    max_position_embeddings=4096,
)


def tiny(family, attn="sdpa", seed=0, **extra):
    import transformers

    torch.manual_seed(seed)
    if family == "llama":
        cfg = transformers.LlamaConfig(
            **SIZES, head_dim=16, rope_parameters={"rope_theta": 500000.0, **LLAMA3}, **extra
        )
        model = transformers.LlamaForCausalLM
    elif family == "qwen2":
        cfg = transformers.Qwen2Config(**SIZES, rope_parameters={"rope_type": "default", "rope_theta": 1e6}, **extra)
        model = transformers.Qwen2ForCausalLM
    else:
        cfg = transformers.MistralConfig(**SIZES, head_dim=16, sliding_window=None, **extra)
        model = transformers.MistralForCausalLM
    cfg._attn_implementation = attn
    return model(cfg).eval()


def ids(batch=2, seed=1):
    return torch.randint(0, 256, (batch, N), generator=torch.Generator().manual_seed(seed))


def _raw_projections(attn, store):
    """Hooks that keep the layer's q, k, v as projected (B, H, N, D), and the attention output (o_proj's input)."""
    d = attn.head_dim

    def keep(name):
        return lambda m, a, out: store.__setitem__(name, out.detach().view(*out.shape[:2], -1, d).transpose(1, 2))

    return [
        attn.q_proj.register_forward_hook(keep("q")),
        attn.k_proj.register_forward_hook(keep("k")),
        attn.v_proj.register_forward_hook(keep("v")),
        attn.o_proj.register_forward_hook(lambda m, a, out: store.__setitem__("attn", a[0].detach())),
    ]


@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral"])
def test_post_layer_equals_a_direct_call_on_the_raw_qkv(family):
    """The transformers path in post mode equals lighthouse_attention on the same raw (projected, never rotated)
    q, k, v with the model's rope_theta / scaling and the position_ids. Catches q, k handed over rotated (RoPE
    applied twice), lost positions, the model's theta or scaling not taken over."""
    model = hf.configure(tiny(family), POST, dense_layers=[0])
    cfg = hf.settings_of(model).config
    want_theta = {"llama": 500000.0, "qwen2": 1e6, "mistral": 10000.0}[family]
    assert cfg.rope == "post" and cfg.rope_theta == want_theta
    assert cfg.rope_scaling_dict == (LLAMA3 if family == "llama" else None)
    store = {}
    handles = _raw_projections(model.model.layers[1].self_attn, store)
    x = ids()
    positions = torch.arange(N)[None].expand(2, N)
    with torch.no_grad():
        model(input_ids=x, position_ids=positions, use_cache=False)
    for h in handles:
        h.remove()
    want = lighthouse_attention(store["q"], store["k"], store["v"], config=cfg, positions=positions)
    torch.testing.assert_close(store["attn"], want.transpose(1, 2).reshape(2, N, -1), rtol=0, atol=0)
    rotated = lighthouse_attention(store["q"], store["k"], store["v"], config=cfg.replace(rope="pre"))
    assert (store["attn"] - rotated.transpose(1, 2).reshape(2, N, -1)).abs().max() > 1e-4


def test_position_ids_reach_the_layer(monkeypatch):
    """The model's position_ids are the positions Lighthouse rotates at (RoPE is relative, so a shifted window
    gives the same scores: the positions handed over are checked directly). Dense layers call nothing."""
    calls = []

    def recording(q, k, v, **kw):
        calls.append(kw.get("positions"))
        return lighthouse_attention(q, k, v, **kw)

    monkeypatch.setattr(hf, "lighthouse_attention", recording)
    model = hf.configure(tiny("llama"), POST, dense_layers=[0, 2])
    positions = torch.arange(N)[None] + 3000
    with torch.no_grad():
        model(input_ids=ids(batch=1), position_ids=positions, use_cache=False)
    assert len(calls) == 1 and torch.equal(calls[0], positions)


@pytest.mark.parametrize("family", ["llama", "mistral"])
def test_dense_layers_and_dense_switch_keep_transformers_rope(family):
    """Post mode changes nothing for dense layers: all layers dense, or the dense switch on, give transformers'
    own `sdpa` logits (RoPE applied by the model); the switch back gives the Lighthouse logits again."""
    x = ids()
    with torch.no_grad():
        dense_logits = tiny(family)(input_ids=x, use_cache=False).logits
        all_dense = hf.configure(tiny(family), POST, dense_layers=[0, 1, 2])
        torch.testing.assert_close(all_dense(input_ids=x, use_cache=False).logits, dense_logits, rtol=1e-5, atol=1e-5)
        model = hf.configure(tiny(family), POST, dense_layers=[0])
        lh_logits = model(input_ids=x, use_cache=False).logits
        assert (lh_logits - dense_logits).abs().max() > 1e-3
        hf.set_dense(model, True)
        torch.testing.assert_close(model(input_ids=x, use_cache=False).logits, dense_logits, rtol=1e-5, atol=1e-5)
        hf.set_dense(model, False)
        torch.testing.assert_close(model(input_ids=x, use_cache=False).logits, lh_logits, rtol=0, atol=0)


def test_recomputed_backward_in_post_mode_gives_the_same_gradients():
    """The recomputing wrapper keeps the positions for its second forward: same gradients as without it."""
    grads = []
    for recompute in (True, False):
        model = hf.configure(tiny("qwen2").train(), POST, dense_layers=[0], recompute=recompute)
        positions = torch.arange(N)[None] + 11
        model(input_ids=ids(batch=1), position_ids=positions, use_cache=False).logits.float().pow(2).mean().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_post_mode_errors_name_the_problem():
    import transformers

    with pytest.raises(ValueError, match="on the built model"):
        hf.configure(tiny("llama").config, POST)
    with pytest.raises(ValueError, match="rope_theta=123.0 differs from the model's rope_theta=500000.0"):
        hf.configure(tiny("llama"), POST.replace(rope_theta=123.0))
    yarn = transformers.LlamaConfig(
        **SIZES, head_dim=16, rope_parameters={"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}
    )
    with pytest.raises(ValueError, match="cannot reproduce this model's RoPE .*rope_type must be one of"):
        hf.configure(transformers.LlamaForCausalLM(yarn), POST)
    model = hf.configure(tiny("llama"), POST.replace(rope="pre"))  # no hooks: then switched to post by hand
    model.config.lighthouse = {**model.config.lighthouse, "rope": "post"}
    with pytest.raises(ValueError, match="arrived rotated"):
        with torch.no_grad():
            model(input_ids=ids(batch=1), use_cache=False)


def test_a_reloaded_post_model_needs_configure_loaded_and_then_matches(tmp_path):
    """Catches a saved rope='post' model that cannot run its Lighthouse layers after from_pretrained (the hooks that
    hand them un-rotated q and k live on the modules, not in the checkpoint: passkey on such models failed)."""
    import transformers

    model = hf.configure(tiny("llama"), POST, dense_layers=[0])
    model.save_pretrained(tmp_path)
    hf.register()
    again = transformers.LlamaForCausalLM.from_pretrained(tmp_path, attn_implementation=hf.NAME).eval()
    with torch.no_grad(), pytest.raises(ValueError, match="configure_loaded"):
        again(input_ids=ids(), use_cache=False)
    assert hf.configure_loaded(again) is again
    assert hf.settings_of(again) == hf.settings_of(model)
    with torch.no_grad():
        torch.testing.assert_close(
            again(input_ids=ids(), use_cache=False).logits, model(input_ids=ids(), use_cache=False).logits
        )
