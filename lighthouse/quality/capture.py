"""q, k, v of a trained model, layer by layer, exactly as its attention layers see them (after RoPE).

The model folder is what `lighthouse-bench train --save DIR` writes: a Hugging Face `save_pretrained` folder
of a LlamaForCausalLM (any decoder whose attention goes through transformers' AttentionInterface works).
We register one attention function, "lighthouse_capture", with transformers' AttentionInterface: it records
(query, key, value) per layer (query (B, Hq, N, D) after RoPE, key/value (B, Hkv, N, D), unrepeated) and then
runs transformers' own SDPA function, so the forward pass is the dense model's. The name is not in the mask
registry, so transformers builds no mask and SDPA runs causal: no N x N tensor at N = 128K.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

NAME = "lighthouse_capture"
#: Held-out token ids a checkpoint folder may carry (1-D int tensor), used when no --heldout is given.
HELDOUT_FILE = "heldout_tokens.pt"

_records: Optional[Dict[int, Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = None


def _capture_forward(module, query, key, value, attention_mask, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if _records is not None:
        layer = getattr(module, "layer_idx", len(_records))
        _records[layer] = (query.detach(), key.detach(), value.detach())
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def register() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, _capture_forward)


def _train_corpus_heldout(model_dir: Path) -> torch.Tensor:
    """The held-out split `lighthouse-bench train` validates on (byte tokens of the stdlib's held-out files)."""
    try:
        from ..train.data import build_corpus
    except ImportError:
        raise ValueError(
            f"--inputs checkpoint:{model_dir}: no held-out text; give --heldout FILE (.txt or .pt "
            f"token ids) or put {HELDOUT_FILE} in the model folder"
        ) from None
    return build_corpus().val.long()


def load_tokens(model_dir: Path, heldout: Optional[Path], n: int, batch: int) -> torch.Tensor:
    """(batch, n) token ids of held-out text: from `heldout` (.txt through the folder's tokenizer, or a .pt
    tensor of ids), else model_dir/heldout_tokens.pt, else the validation split of the corpus `lighthouse-bench
    train` trains on (byte tokens: what its models read). Consecutive windows of n tokens, one per row."""
    source = heldout or (model_dir / HELDOUT_FILE)
    if heldout is None and not source.exists():
        ids = _train_corpus_heldout(model_dir)
        source = "the validation split of lighthouse-bench train's corpus"
    elif not Path(source).exists():
        raise ValueError(f"--heldout: no such file {source}")
    elif str(source).endswith(".txt"):
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(model_dir)
        ids = torch.tensor(tok(Path(source).read_text())["input_ids"], dtype=torch.long)
    else:
        ids = torch.as_tensor(torch.load(source, map_location="cpu"), dtype=torch.long).reshape(-1)
    if ids.numel() < n * batch:
        raise ValueError(f"--heldout {source}: {ids.numel()} tokens, need N * batch = {n * batch}")
    return ids[: n * batch].view(batch, n)


@torch.no_grad()
def capture_qkv(
    model_dir: Path, tokens: torch.Tensor, device: torch.device, dtype: torch.dtype
) -> List[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Run the model once on `tokens` (B, N) and return [(q, k, v)] per attention layer, in layer order."""
    global _records
    from transformers import AutoModelForCausalLM

    register()
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").exists():
        raise ValueError(f"--inputs checkpoint:{model_dir}: not a save_pretrained folder (no config.json)")
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation=NAME, dtype=dtype).to(device).eval()
    _records = {}
    try:
        model.model(input_ids=tokens.to(device))  # the decoder only: no N x vocab logits
        captured = [_records[i] for i in sorted(_records)]
    finally:
        _records = None
        del model
    return captured
