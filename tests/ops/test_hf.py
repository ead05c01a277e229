"""attn_implementation="lighthouse" in transformers: same numbers as the library call, dense switch equal to
transformers' own SDPA, gradients everywhere, clear errors, no mask built. Tiny random configs, no download."""

import time

import pytest
import torch

transformers = pytest.importorskip("transformers")

from lighthouse import LighthouseConfig, hf, lighthouse_attention  # noqa: E402

N = 256
LH = LighthouseConfig(levels=2, pooling=2, topk=128, impl="torch")


def tiny_llama(layers=3, attn="sdpa", seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        hidden_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        intermediate_size=96,
        vocab_size=256,
        max_position_embeddings=4096,
    )
    cfg._attn_implementation = attn
    return LlamaForCausalLM(cfg).eval()


def ids(batch=2, seed=1):
    return torch.randint(0, 256, (batch, N), generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def spy(monkeypatch):
    """Records q, k, v and output of every lighthouse_attention call made by the registered function."""
    calls = []

    def recording(q, k, v, **kw):
        out = lighthouse_attention(q, k, v, **kw)
        calls.append((q.detach().clone(), k.detach().clone(), v.detach().clone(), kw["config"]))
        return out

    monkeypatch.setattr(hf, "lighthouse_attention", recording)
    return calls


def test_registered_function_equals_lighthouse_attention_on_the_layers_qkv(spy):
    """Catches a wrong layout (B, N, H, D) vs (B, H, N, D), repeated kv heads, or a lost config parameter."""
    model = hf.configure(tiny_llama(), LH, dense_layers=[0])
    attn_in = []
    model.model.layers[1].self_attn.o_proj.register_forward_hook(lambda m, a, o: attn_in.append(a[0].detach()))
    with torch.no_grad():
        model(input_ids=ids(), use_cache=False)
    assert len(spy) == 2, "layer 0 is dense: only layers 1 and 2 call Lighthouse"
    q, k, v, cfg = spy[0]
    assert q.shape == (2, 4, N, 16) and k.shape == (2, 2, N, 16) and v.shape == (2, 2, N, 16), "GQA: kv not repeated"
    assert cfg == LH
    expected = lighthouse_attention(q, k, v, levels=2, pooling=2, topk=128, impl="torch")
    torch.testing.assert_close(attn_in[0], expected.transpose(1, 2).reshape(2, N, 64), rtol=0, atol=0)


def test_lighthouse_layers_differ_from_dense_and_dense_switch_equals_transformers_sdpa():
    """Catches a dense switch that does nothing, or a dense path that differs from transformers' `sdpa`."""
    x = ids()
    reference = tiny_llama(attn="sdpa")
    with torch.no_grad():
        dense_logits = reference(input_ids=x, use_cache=False).logits
    model = hf.configure(tiny_llama(), LH, dense_layers=[0])
    with torch.no_grad():
        lh_logits = model(input_ids=x, use_cache=False).logits
        assert (lh_logits - dense_logits).abs().max() > 1e-3, "Lighthouse layers must change the output"
        hf.set_dense(model, True)
        torch.testing.assert_close(model(input_ids=x, use_cache=False).logits, dense_logits, rtol=1e-5, atol=1e-5)
        hf.set_dense(model, False)
        torch.testing.assert_close(model(input_ids=x, use_cache=False).logits, lh_logits, rtol=0, atol=0)
    all_dense = hf.configure(tiny_llama(), LH, dense_layers=[0, 1, -1])
    assert hf.settings_of(all_dense).dense_layers == (0, 1, 2)
    with torch.no_grad():
        torch.testing.assert_close(all_dense(input_ids=x, use_cache=False).logits, dense_logits, rtol=1e-5, atol=1e-5)


def test_dense_switch_keeps_model_and_optimizer():
    """Catches a switch that rebuilds parameters (the optimizer would then update stale tensors)."""
    model = hf.configure(tiny_llama(layers=2), LH)
    params = [id(p) for p in model.parameters()]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    hf.set_dense(model, True)
    assert [id(p) for p in model.parameters()] == params
    assert [id(p) for g in opt.param_groups for p in g["params"]] == params
    assert hf.settings_of(model).dense and hf.settings_of(model).config == LH


def test_gradients_reach_every_parameter():
    """Catches a detached path (e.g. the selection cutting q/k off the graph or a no_grad in the wrapper)."""
    model = hf.configure(tiny_llama(layers=2).train(), LH, dense_layers=[0])
    out = model(input_ids=ids(batch=1), use_cache=False).logits
    out.float().pow(2).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing


def test_other_decoder_families_run_with_gqa(spy):
    """Catches an integration that only works for Llama (Qwen2 has q/k/v biases, its own attention class)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        intermediate_size=96,
        vocab_size=256,
        max_position_embeddings=4096,
    )
    model = hf.configure(Qwen2ForCausalLM(cfg).eval(), LH)
    with torch.no_grad():
        assert model(input_ids=ids(batch=1), use_cache=False).logits.shape == (1, N, 256)
    assert len(spy) == 2 and spy[0][1].shape[1] == 1


def test_plain_causal_training_builds_no_mask():
    """Catches a mask builder that materialises an N x N mask for the "lighthouse" implementation."""
    assert hf.lighthouse_mask(batch_size=2, q_length=N, kv_length=N) is None
    assert (
        hf.lighthouse_mask(batch_size=2, q_length=N, kv_length=N, attention_mask=torch.ones(2, N, dtype=torch.bool))
        is None
    )


@pytest.mark.parametrize("case", ["padding", "packing", "output_attentions", "non_causal", "custom_4d"])
def test_unsupported_inputs_raise_clear_errors(case):
    """Catches silently ignoring a padding/packing mask or a request Lighthouse cannot honour."""
    model = hf.configure(tiny_llama(layers=1), LH)
    x = ids(batch=1)
    kwargs, match = {}, None
    if case == "padding":
        mask = torch.ones_like(x)
        mask[:, :5] = 0
        kwargs, match = {"attention_mask": mask}, "padding"
    elif case == "packing":
        kwargs, match = {"position_ids": torch.cat([torch.arange(N // 2)] * 2)[None]}, "pack"
    elif case == "output_attentions":
        kwargs, match = {"output_attentions": True}, "output_attentions"
    elif case == "non_causal":
        model.config.is_causal = False
        match = "causal"
    elif case == "custom_4d":
        kwargs, match = {"attention_mask": torch.ones(1, 1, N, N, dtype=torch.bool)}, "attention mask"
    with pytest.raises(ValueError, match=match):
        model(input_ids=x, use_cache=False, **kwargs)


def test_sliding_window_raises():
    """Catches a Mistral-style sliding window being dropped (the model would attend further than trained)."""
    from transformers import MistralConfig, MistralForCausalLM

    cfg = MistralConfig(
        hidden_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=96,
        vocab_size=256,
        sliding_window=64,
        max_position_embeddings=4096,
    )
    model = hf.configure(MistralForCausalLM(cfg).eval(), LH)
    with pytest.raises(ValueError, match="sliding"):
        model(input_ids=ids(batch=1), use_cache=False)


def test_bad_dense_layer_index_names_the_range():
    """Catches a typo in dense_layers silently training every layer with Lighthouse."""
    with pytest.raises(ValueError, match=r"dense_layers .*\[-3, 2\]"):
        hf.configure(tiny_llama(), LH, dense_layers=[3])


def test_settings_survive_save_pretrained(tmp_path):
    """Catches a checkpoint that reloads as a dense model (the quality command captures q, k, v from it)."""
    from transformers import LlamaForCausalLM

    model = hf.configure(tiny_llama(layers=2), LH, dense_layers=[1])
    model.save_pretrained(tmp_path)
    hf.register()
    again = LlamaForCausalLM.from_pretrained(tmp_path, attn_implementation=hf.NAME)
    assert hf.settings_of(again) == hf.settings_of(model)
    with torch.no_grad():
        torch.testing.assert_close(
            again(input_ids=ids(batch=1), use_cache=False).logits, model(input_ids=ids(batch=1), use_cache=False).logits
        )


class _Slow(torch.autograd.Function):
    """Identity that sleeps 30 ms forward and 60 ms backward: a known attention cost."""

    @staticmethod
    def forward(ctx, x):
        time.sleep(0.03)
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        time.sleep(0.06)
        return g


def test_attention_timer_brackets_forward_and_backward(monkeypatch):
    """Catches backward marks that miss the attention's backward (the share would be forward-only)."""
    monkeypatch.setattr(
        hf, "lighthouse_attention", lambda q, k, v, **kw: _Slow.apply(q + 0 * (k + v).repeat_interleave(2, dim=1))
    )
    model = hf.configure(tiny_llama(layers=2).train(), LH)
    with hf.timing_attention(torch.device("cpu")) as timer:
        model(input_ids=ids(batch=1), use_cache=False).logits.float().mean().backward()
    fwd, bwd = timer.total_ms()
    assert len(timer.spans) == 2
    # forward: 2 x 30 ms; backward: 2 x (30 ms recomputed forward + 60 ms)
    assert 60 <= fwd < 60 + 200 and 180 <= bwd < 180 + 200, (fwd, bwd)
    assert hf._ACTIVE_TIMER is None


def test_recomputed_backward_gives_the_same_gradients():
    """Catches a recompute wrapper that drops or scales a gradient (q, k, v and through them every weight)."""
    x = ids(batch=1)
    grads = []
    for recompute in (True, False):
        model = hf.configure(tiny_llama(layers=2).train(), LH, recompute=recompute)
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model(input_ids=x, use_cache=False).logits.float().pow(2).mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert hf.settings_of(model).recompute is False
    for name, g in grads[0].items():
        torch.testing.assert_close(g, grads[1][name], rtol=1e-5, atol=1e-7, msg=name)


def test_recompute_frees_what_the_kernel_keeps_on_its_context(monkeypatch):
    """Catches the memory bug of the naive integration: an attention Function that keeps tensors as ctx
    attributes (as the Triton layer does) holds them from forward to backward under activation checkpointing,
    in every layer, unless the recomputed backward is on."""
    import weakref

    kept = []

    class KeepsOnCtx(torch.autograd.Function):
        @staticmethod
        def forward(ctx, q, k, v):
            ctx.big = torch.ones(1000)  # like ctx.leaves / ctx.out_sub of the Triton layer
            ctx.kv_shape = k.shape
            kept.append(weakref.ref(ctx.big))
            return q.clone()

        @staticmethod
        def backward(ctx, g):
            zero = g.new_zeros(ctx.kv_shape)
            return g, zero, zero

    def fake(q, k, v, **kw):
        if torch.is_grad_enabled():
            return KeepsOnCtx.apply(q, k, v)
        return q + 0 * (k + v).repeat_interleave(2, dim=1)

    monkeypatch.setattr(hf, "lighthouse_attention", fake)
    alive = {}
    for recompute in (False, True):
        kept.clear()
        model = hf.configure(tiny_llama(layers=2).train(), LH, recompute=recompute)
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        loss = model(input_ids=ids(batch=1), use_cache=False).logits.float().mean()
        alive[recompute] = sum(r() is not None for r in kept)
        loss.backward()
    assert alive[False] == 2, "the fake must reproduce the leak without recompute"
    assert alive[True] == 0
