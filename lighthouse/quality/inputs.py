"""The q, k, v a quality point is measured on: `random`, `needle`, `needle-rope` or `checkpoint:PATH`.

random:          iid standard normal q, k, v (seeded by (seed, shape), as `sweep`).
needle:          random, plus planted needles (see `needles`); the recall figures come from these.
needle-rope:     the same tensors, read as the model's RoPE-rotated view (needles planted in rotated q, k: q_i
                 and k_j as rotated at their positions i and j). Dense attention and `pre` see them as they
                 are, `post` gets them un-rotated, so the two placements can differ (see `placement`).
checkpoint:PATH: q, k, v captured layer by layer (after RoPE) from a model saved by `lighthouse-bench train
                 --save PATH`, on held-out text; one set per attention layer (the row's `layer` column).
random and needle are position-free: each placement is given them as they are (`post` reads them as raw).
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

KINDS = ("random", "needle", "needle-rope", "checkpoint:PATH")
#: Kinds whose q, k are the model's RoPE-rotated view (the others are position-free).
ROTATED_KINDS = ("needle-rope",)
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
    #: q, k are the model's view, rotated at positions 0..N-1 by this RoPE (else position-free: placement.py);
    #: rope_theta and rope_scaling are the RoPE that relates raw and rotated q, k in either case.
    rotated: bool = False
    rope_theta: float = 10000.0
    rope_scaling: Optional[dict] = None


def parse_inputs(text: str, option: str = "--inputs") -> List[str]:
    """'random,needle,checkpoint:out/model' -> the names; a checkpoint folder must exist."""
    out = []
    for item in (s.strip() for s in str(text).split(",")):
        if item in ("random", "needle", "needle-rope"):
            out.append(item)
        elif item.startswith("checkpoint:"):
            path = Path(item.split(":", 1)[1])
            if not (path / "config.json").is_file():
                raise ValueError(
                    f"{option}: {item!r}: {path} is not a model folder saved by "
                    f"`lighthouse-bench train --save` (no config.json)"
                )
            out.append(item)
        else:
            raise ValueError(f"{option}: {item!r} is not one of {', '.join(KINDS)}")
    if not out:
        raise ValueError(f"{option}: empty list")
    return list(dict.fromkeys(out))


def _gate(b: int, h: int, n: int, g: torch.Generator, device) -> torch.Tensor:
    return F.logsigmoid(torch.randn(b, h, n, generator=g, device=device, dtype=torch.float32))


def synthetic(
    kind: str,
    batch: int,
    heads: int,
    kv_heads: int,
    n: int,
    head_dim: int,
    dtype: str,
    device: torch.device,
    seed: int,
    per_bucket: int = NEEDLES_PER_BUCKET,
    rope_theta: float = 10000.0,
) -> QualityInputs:
    """`random`, `needle` or `needle-rope` tensors, seeded by seed alone (the same for every configuration;
    needle-rope holds needle's tensors, read as rotated by RoPE with base `rope_theta`)."""
    g = torch.Generator(device=device).manual_seed(seed)
    dt = TORCH_DTYPES[dtype]

    def randn(h):
        return torch.randn(batch, h, n, head_dim, generator=g, device=device, dtype=dt)

    q, k, v = randn(heads), randn(kv_heads), randn(kv_heads)
    gate = _gate(batch, heads, n, g, device)
    needles = None
    if kind in ("needle", "needle-rope"):
        needles = place_needles(n, per_bucket, seed)
        plant(q, k, v, needles, seed=seed)
    return QualityInputs(kind, q, k, v, gate, needles=needles, rotated=kind in ROTATED_KINDS, rope_theta=rope_theta)


def checkpoint_layers(
    kind: str, batch: int, n: int, dtype: str, device: torch.device, seed: int, heldout: Optional[Path] = None
) -> Iterator[QualityInputs]:
    """One QualityInputs per attention layer of the model in `checkpoint:PATH`."""
    from .capture import capture_qkv, load_tokens

    path = Path(kind.split(":", 1)[1])
    tokens = load_tokens(path, heldout, n, batch)
    layers = capture_qkv(path, tokens, device, TORCH_DTYPES[dtype])
    theta, scaling = model_rope(path)
    g = torch.Generator(device=device).manual_seed(seed)
    for i, (q, k, v) in enumerate(layers):
        yield QualityInputs(
            kind,
            q.contiguous(),
            k.contiguous(),
            v.contiguous(),
            _gate(q.shape[0], q.shape[1], n, g, device),
            layer=i,
            rotated=True,
            rope_theta=theta,
            rope_scaling=scaling or None,
        )


def model_rope(path: Path):
    """(rope_theta, rope_scaling) of the saved model: what its captured q, k are rotated by."""
    from transformers import AutoConfig

    from ..hf import model_rope as of_config

    return of_config(AutoConfig.from_pretrained(path))
