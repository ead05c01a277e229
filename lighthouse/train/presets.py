"""Model, Lighthouse and optimiser shapes of `lighthouse-bench train`, by name; flags override single fields.

`paper-530m` is the paper's torchtitan flavour (arXiv 2605.06554): half of its parameters are the untied
128,256-entry embeddings. `tiny` and `small` run on a CPU in seconds; `mid` is the two-stage recipe's model for
one H200 (byte-level, a few minutes per arm).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Dict, Optional, Tuple

from ..config import LighthouseConfig


@dataclass(frozen=True)
class TrainPreset:
    """Everything a training run needs besides data and step counts."""

    name: str
    description: str
    # model (Llama)
    hidden: int
    layers: int
    ffn: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    rope_theta: float = 10000.0
    # Lighthouse (layers not in dense_layers; negative indices count from the end)
    topk: int = 1536
    levels: int = 3
    pooling: int = 4
    scorer: str = "norm"
    #: where RoPE is applied in the Lighthouse layers (docs/rope.md): pre (transformers' rotated q, k) or post
    rope: str = "pre"
    dense_layers: Tuple[int, ...] = (0, 1, -2, -1)
    # optimiser
    lr: float = 2e-3
    beta1: float = 0.9
    beta2: float = 0.95
    weight_decay: float = 0.1
    # data
    seq: int = 98304
    batch: int = 1

    def __post_init__(self) -> None:
        for f in ("hidden", "layers", "ffn", "heads", "kv_heads", "head_dim", "vocab", "seq", "batch"):
            value = getattr(self, f)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{f.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv-heads ({self.kv_heads})")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        for i in self.dense_layers:
            if not -self.layers <= i < self.layers:
                raise ValueError(
                    f"dense-layers must be layer indices in [{-self.layers}, {self.layers - 1}] "
                    f"({self.layers} layers), got {i}"
                )
        self.lighthouse()  # names a bad k, L, p, scorer or rope now

    def lighthouse(self, impl: str = "auto", sdpa_backend: Optional[str] = None) -> LighthouseConfig:
        return LighthouseConfig(
            levels=self.levels,
            pooling=self.pooling,
            topk=self.topk,
            scorer=self.scorer,
            impl=impl,
            sdpa_backend=sdpa_backend,
            rope=self.rope,
            rope_theta=self.rope_theta,
        )

    def dense_layer_indices(self) -> Tuple[int, ...]:
        return tuple(sorted({i % self.layers for i in self.dense_layers}))

    def as_dict(self) -> dict:
        return asdict(self)


#: The CPU-sized preset; `tiny` is the same model made smaller.
_SMALL = TrainPreset(
    "small",
    "CPU-sized byte-level model (N=1024): the two-stage recipe in a minute on a laptop",
    hidden=128,
    layers=4,
    ffn=256,
    heads=4,
    kv_heads=2,
    head_dim=32,
    vocab=256,
    topk=128,
    levels=2,
    pooling=4,
    dense_layers=(0,),
    lr=2e-3,
    seq=1024,
    batch=2,
)

PRESETS: Dict[str, TrainPreset] = {
    p.name: p
    for p in (
        TrainPreset(
            "paper-530m",
            "The paper's 530M Llama at N=98,304 (k=1536, L=3, p=4, norm; layers 0,1,28,29 dense)",
            hidden=1024,
            layers=30,
            ffn=1536,
            heads=8,
            kv_heads=8,
            head_dim=128,
            vocab=128256,
            topk=1536,
            levels=3,
            pooling=4,
            dense_layers=(0, 1, 28, 29),
            seq=98304,
        ),
        TrainPreset(
            "mid",
            "Byte-level 4-layer-dense-ends model for the two-stage recipe on one GPU (N=16K)",
            hidden=512,
            layers=8,
            ffn=1536,
            heads=4,
            kv_heads=4,
            head_dim=128,
            vocab=256,
            topk=512,
            levels=3,
            pooling=4,
            dense_layers=(0, -1),
            lr=1e-3,
            seq=16384,
            batch=4,
        ),
        _SMALL,
        replace(
            _SMALL,
            name="tiny",
            description="Smallest runnable model (N=512, k=128, L=2, p=2): tests and smoke runs on a CPU",
            hidden=64,
            layers=3,
            ffn=128,
            head_dim=16,
            pooling=2,
            seq=512,
            batch=1,
        ),
    )
}

#: Fields a command-line flag may override.
OVERRIDABLE = tuple(f.name for f in fields(TrainPreset) if f.name not in ("name", "description"))


def get_preset(name: str, **overrides) -> TrainPreset:
    """The named preset with the non-None overrides applied (validated again)."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {name!r}")
    unknown = set(overrides) - set(OVERRIDABLE)
    if unknown:
        raise ValueError(f"unknown preset fields: {', '.join(sorted(unknown))}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    if "dense_layers" in changes:
        changes["dense_layers"] = tuple(changes["dense_layers"])
    return replace(PRESETS[name], **changes)
