"""checkpoint:PATH inputs: q, k, v captured from a saved Llama model are what its attention consumed."""

import pytest
import torch

transformers = pytest.importorskip("transformers")

from lighthouse.quality.capture import HELDOUT_FILE, capture_qkv, load_tokens  # noqa: E402
from lighthouse.quality.dense import dense_reference  # noqa: E402
from lighthouse.quality.inputs import checkpoint_layers, parse_inputs  # noqa: E402


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    cfg = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg)
    path = tmp_path_factory.mktemp("model")
    model.save_pretrained(path)
    torch.save(torch.randint(0, 64, (1000,)), path / HELDOUT_FILE)
    return path, model


def test_captured_qkv_reproduce_each_attention_layer(saved_model):
    """Catches q/k captured before RoPE, repeated kv heads, or layers out of order: causal attention of the
    captured tensors through o_proj must give each layer's attention output, and q must be rotated
    (equal norms to q_proj's output, different values after position 0)."""
    path, model = saved_model
    tokens = load_tokens(path, None, 48, 2)
    seen, pre_rope = {}, {}
    hooks = []
    for i, layer in enumerate(model.model.layers):
        hooks.append(layer.self_attn.register_forward_hook(lambda m, a, kw_out, i=i: seen.__setitem__(i, kw_out[0])))
        hooks.append(layer.self_attn.q_proj.register_forward_hook(lambda m, a, o, i=i: pre_rope.__setitem__(i, o)))
    try:
        with torch.no_grad():
            model.model(input_ids=tokens)
    finally:
        for h in hooks:
            h.remove()
    captured = capture_qkv(path, tokens, torch.device("cpu"), torch.float32)
    assert len(captured) == 2
    for i, (q, k, v) in enumerate(captured):
        assert q.shape == (2, 4, 48, 8) and k.shape == (2, 2, 48, 8) and v.shape == (2, 2, 48, 8)
        attn = dense_reference(q, k, v).out  # (B, H, N, D)
        out = model.model.layers[i].self_attn.o_proj(attn.transpose(1, 2).reshape(2, 48, 32))
        assert torch.allclose(out, seen[i], atol=1e-5)
        raw = pre_rope[i].view(2, 48, 4, 8).transpose(1, 2)
        assert torch.allclose(q.norm(dim=-1), raw.norm(dim=-1), atol=1e-5)
        assert torch.allclose(q[:, :, 0], raw[:, :, 0], atol=1e-6) and not torch.allclose(q[:, :, 5:], raw[:, :, 5:])


def test_checkpoint_inputs_per_layer_and_clear_errors(saved_model, tmp_path):
    """Catches a checkpoint that silently yields nothing, or a missing folder / too little text that
    crashes instead of naming the option."""
    path, _ = saved_model
    [kind] = parse_inputs(f"checkpoint:{path}")
    layers = list(checkpoint_layers(kind, 1, 64, "fp32", torch.device("cpu"), seed=0))
    assert [x.layer for x in layers] == [0, 1] and layers[0].gate.shape == (1, 4, 64)
    with pytest.raises(ValueError, match="--inputs"):
        parse_inputs(f"checkpoint:{tmp_path}")
    with pytest.raises(ValueError, match="random, needle"):
        parse_inputs("gaussian")
    with pytest.raises(ValueError, match="need N"):
        load_tokens(path, None, 2048, 1)
