"""The q, k, v a quality point is measured on: `random`, `needle` or `checkpoint:PATH`.

random:          iid standard normal q, k, v (seeded by (seed, shape), as `sweep`).
needle:          random, plus planted needles (see `needles`); the recall figures come from these.
checkpoint:PATH: q, k, v captured layer by layer (after RoPE) from a model saved by `lighthouse-bench train
                 --save PATH`, on held-out text; one set per attention layer (the row's `layer` column).
The gla scorer's per-token log-gate is logsigmoid of standard normal noise for every kind (a trained Llama
has no gate), as in `sweep`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional

import torch
import torch.nn.functional as F

from .needles import Needles, place_needles, plant

KINDS = ("random", "needle", "checkpoint:PATH")
TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
#: Needles planted per depth bucket (10 buckets) in every (batch, head).
NEEDLES_PER_BUCKET = 4


@dataclass
class QualityInputs:
    """One set of tensors every configuration of a shape is measured on (SDPA layout)."""

    name: str
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    gate: torch.Tensor  # (B, Hq, N) float32 log-gate (only the gla scorer reads it)
    layer: Optional[int] = None
    needles: Optional[Needles] = None


def parse_inputs(text: str, option: str = "--inputs") -> List[str]:
    """'random,needle,checkpoint:out/model' -> the names; a checkpoint folder must exist."""
    out = []
    for item in (s.strip() for s in str(text).split(",")):
        if item in ("random", "needle"):
            out.append(item)
        elif item.startswith("checkpoint:"):
            path = Path(item.split(":", 1)[1])
            if not (path / "config.json").is_file():
                raise ValueError(f"{option}: {item!r}: {path} is not a model folder saved by "
                                 f"`lighthouse-bench train --save` (no config.json)")
            out.append(item)
        else:
            raise ValueError(f"{option}: {item!r} is not one of random, needle, checkpoint:PATH")
    if not out:
        raise ValueError(f"{option}: empty list")
    return list(dict.fromkeys(out))


def _gate(b: int, h: int, n: int, g: torch.Generator, device) -> torch.Tensor:
    return F.logsigmoid(torch.randn(b, h, n, generator=g, device=device, dtype=torch.float32))


def synthetic(kind: str, batch: int, heads: int, kv_heads: int, n: int, head_dim: int, dtype: str,
              device: torch.device, seed: int, per_bucket: int = NEEDLES_PER_BUCKET) -> QualityInputs:
    """`random` or `needle` tensors, seeded by seed alone (the same for every configuration)."""
    g = torch.Generator(device=device).manual_seed(seed)
    dt = TORCH_DTYPES[dtype]

    def randn(h):
        return torch.randn(batch, h, n, head_dim, generator=g, device=device, dtype=dt)

    q, k, v = randn(heads), randn(kv_heads), randn(kv_heads)
    gate = _gate(batch, heads, n, g, device)
    needles = None
    if kind == "needle":
        needles = place_needles(n, per_bucket, seed)
        plant(q, k, v, needles, seed=seed)
    return QualityInputs(kind, q, k, v, gate, needles=needles)


def checkpoint_layers(kind: str, batch: int, n: int, dtype: str, device: torch.device, seed: int,
                      heldout: Optional[Path] = None) -> Iterator[QualityInputs]:
    """One QualityInputs per attention layer of the model in `checkpoint:PATH`."""
    from .capture import capture_qkv, load_tokens

    path = Path(kind.split(":", 1)[1])
    tokens = load_tokens(path, heldout, n, batch)
    layers = capture_qkv(path, tokens, device, TORCH_DTYPES[dtype])
    g = torch.Generator(device=device).manual_seed(seed)
    for i, (q, k, v) in enumerate(layers):
        yield QualityInputs(kind, q.contiguous(), k.contiguous(), v.contiguous(),
                            _gate(q.shape[0], q.shape[1], n, g, device), layer=i)
