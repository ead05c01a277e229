"""The chunked cross-entropy (CPU and fallback loss of `train`) against plain F.cross_entropy."""

import pytest
import torch
import torch.nn.functional as F

from lighthouse.train.loss import NextTokenLoss, chunked_cross_entropy


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_chunked_cross_entropy_equals_full_logits_value_and_gradients(chunk):
    """Catches a wrong mean over chunks (e.g. a mean of chunk means), a lost last partial chunk, or gradients
    that do not flow through the checkpointed chunks into hidden states and the LM head."""
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(50, 12, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(30, 12, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 30, (50,), generator=g)
    targets[3] = -100  # ignored position
    ours = chunked_cross_entropy(hidden, weight, targets, chunk)
    ours.backward()
    gh, gw = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    ref = F.cross_entropy(hidden @ weight.t(), targets, ignore_index=-100)
    ref.backward()
    torch.testing.assert_close(ours.double(), ref, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(gh, hidden.grad, rtol=1e-5, atol=1e-7)  # logits in float32
    torch.testing.assert_close(gw, weight.grad, rtol=1e-5, atol=1e-7)


def test_bad_chunk_is_refused():
    """Catches chunk=0 looping forever or dividing by zero."""
    with pytest.raises(ValueError, match="chunk"):
        chunked_cross_entropy(torch.zeros(4, 2), torch.zeros(3, 2), torch.zeros(4, dtype=torch.long), 0)


def test_next_token_loss_matches_the_models_own_loss():
    """Catches a shift error or the wrong head: the model's own LM loss (full logits) on the same tokens."""
    pytest.importorskip("transformers")
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=64,
        vocab_size=50,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg)
    tokens = torch.randint(0, 50, (2, 33), generator=torch.Generator().manual_seed(1))
    ours = NextTokenLoss("chunked", chunk=10)(model, tokens[:, :-1], tokens[:, 1:])
    logits = model(input_ids=tokens[:, :-1], use_cache=False).logits
    ref = F.cross_entropy(logits.reshape(-1, 50).float(), tokens[:, 1:].reshape(-1))
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    assert NextTokenLoss("auto").__class__ and NextTokenLoss("auto")._choose(torch.device("cpu")) == "chunked"
    with pytest.raises(ValueError, match="liger"):
        NextTokenLoss("liger")._choose(torch.device("cpu"))
