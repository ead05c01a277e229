"""The model under test: transformers' LlamaForCausalLM from a preset (random init), dense or Lighthouse."""

from __future__ import annotations

from typing import Optional

import torch

from .. import hf
from .presets import TrainPreset

ATTENTIONS = ("dense", "lighthouse")


def llama_config(preset: TrainPreset, seq: int, attention: str):
    from transformers import LlamaConfig

    cfg = LlamaConfig(
        hidden_size=preset.hidden,
        num_hidden_layers=preset.layers,
        intermediate_size=preset.ffn,
        num_attention_heads=preset.heads,
        num_key_value_heads=preset.kv_heads,
        head_dim=preset.head_dim,
        vocab_size=preset.vocab,
        tie_word_embeddings=False,
        max_position_embeddings=max(seq, 2048),
        rope_parameters={"rope_type": "default", "rope_theta": float(preset.rope_theta)},
        attention_dropout=0.0,
        use_cache=False,
    )
    cfg._attn_implementation = "sdpa"
    return cfg


def build_model(
    preset: TrainPreset,
    seq: int,
    attention: str,
    device: torch.device,
    dtype: torch.dtype,
    *,
    impl: str = "auto",
    sdpa_backend: Optional[str] = None,
    checkpointing: bool = True,
    seed: int = 0,
    recompute: bool = True,
):
    """A randomly initialised LlamaForCausalLM on `device` in `dtype`, in training mode.

    Both attentions go through the "lighthouse" implementation: "dense" is the same model with the dense switch
    on (transformers' own SDPA function in every layer, with the same SDPA backend preference), so the two arms
    differ only in the attention of the Lighthouse layers.
    """
    from transformers import LlamaForCausalLM

    if attention not in ATTENTIONS:
        raise ValueError(f"attention must be one of {', '.join(ATTENTIONS)}, got {attention!r}")
    torch.manual_seed(seed)
    cfg = llama_config(preset, seq, attention)
    with torch.device(device):
        model = LlamaForCausalLM(cfg)
    model.to(dtype=dtype)
    hf.configure(
        model,
        preset.lighthouse(impl, sdpa_backend),
        dense_layers=preset.dense_layer_indices(),
        dense=attention == "dense",
        recompute=recompute,
    )
    if checkpointing:
        enable_checkpointing(model)
    model.train()
    return model


def enable_checkpointing(model) -> None:
    """Activation checkpointing without re-entrant autograd, through transformers 5's
    `activation_checkpointing_enable` (`gradient_checkpointing_enable` is its deprecated alias there, with a
    FutureWarning) or, on transformers 4, the older name."""
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def count_parameters(model) -> dict:
    """total, embedding (the input table, a lookup) and non-embedding (everything else, lm_head included:
    it is a matmul on every token)."""
    total = sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings().weight.numel()
    return {"total": total, "embedding": embedding, "non_embedding": total - embedding}


def make_optimizer(model, preset: TrainPreset, device: torch.device) -> torch.optim.Optimizer:
    """AdamW with the preset's lr, betas and weight decay; the fused kernel on CUDA."""
    return torch.optim.AdamW(
        model.parameters(),
        lr=preset.lr,
        betas=(preset.beta1, preset.beta2),
        weight_decay=preset.weight_decay,
        fused=torch.device(device).type == "cuda",
    )
