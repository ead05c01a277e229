"""From the options of `lighthouse-bench train` to a run: preset + overrides, points, run options, then the
throughput run or the two-stage recipe. Every bad value raises ValueError naming the option."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import List, Optional, Sequence

import torch

from .presets import TrainPreset, get_preset
from .throughput import DTYPES, RunOptions, TrainPoint

RECIPES = ("throughput", "two-stage")
LOSSES = ("auto", "liger", "chunked")
IMPLS = ("auto", "torch", "triton")
SDPA = ("auto", "cudnn", "flash", "efficient", "math")


def _parse_ints(text: str, option: str, linear: bool = False) -> List[int]:
    from ..harness.options import parse_ints

    return parse_ints(text, option, linear=linear)


def _choice(value: str, option: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{option} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _dense_layers(text: str) -> tuple:
    try:
        return tuple(int(s) for s in text.split(",") if s.strip()) if text.strip() not in ("", "none") else ()
    except ValueError:
        raise ValueError(
            f"--dense-layers must be comma-separated layer indices (negative from the end) or 'none', got {text!r}"
        ) from None


@dataclass
class TrainRun:
    preset: TrainPreset
    points: List[TrainPoint]
    options: RunOptions
    recipe: str

    @property
    def ropes(self) -> List[str]:
        """The placements of the Lighthouse points, in order."""
        return list(dict.fromkeys(p.preset.rope for p in self.points if p.attention == "lighthouse"))

    def preset_options(self) -> dict:
        """The preset as machine.json records it; its `rope` is recorded as the option of its own (a run
        recorded before --rope existed has none, so --resume of it still matches)."""
        return {k: v for k, v in self.preset.as_dict().items() if k != "rope"}


def plan(
    preset: str = "tiny",
    seq: Optional[str] = None,
    attention: str = "dense,lighthouse",
    *,
    steps: Optional[int] = None,
    warmup: int = 1,
    device: Optional[str] = None,
    dtype: Optional[str] = None,
    impl: str = "auto",
    sdpa_backend: Optional[str] = None,
    loss: str = "auto",
    loss_chunk: int = 8192,
    checkpointing: bool = True,
    recompute: bool = True,
    seed: int = 0,
    peak_tflops: Optional[float] = None,
    recipe: str = "throughput",
    clip: float = 1.0,
    dense_layers: Optional[str] = None,
    rope: Optional[str] = None,
    **shape,
) -> TrainRun:
    """The validated run. shape: preset fields to override (hidden, layers, ffn, heads, kv_heads, head_dim,
    vocab, topk, levels, pooling, scorer, lr, batch); None leaves the preset's value. rope: the RoPE placements
    of the Lighthouse points, comma-separated (pre, post; one Lighthouse point per placement, one dense)."""
    _choice(recipe, "--recipe", RECIPES)
    overrides = {k: v for k, v in shape.items() if v is not None}
    ropes = _ropes(rope)
    if recipe == "two-stage" and ropes and len(ropes) > 1:
        raise ValueError("--rope: the two-stage recipe trains one model; give a single placement, pre or post")
    if ropes:
        overrides["rope"] = ropes[0]
    if dense_layers is not None:
        overrides["dense_layers"] = _dense_layers(dense_layers)
    seqs = _parse_ints(seq, "--seq") if seq else None
    if recipe == "two-stage" and seqs and len(seqs) > 1:
        raise ValueError("--seq: the two-stage recipe trains at one N; give a single value")
    if seqs:
        overrides["seq"] = seqs[0]
    chosen = get_preset(preset, **overrides)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    dtype = dtype or ("mixed" if dev.type == "cuda" else "fp32")
    _choice(dtype, "--precision", tuple(DTYPES))
    if not clip >= 0:
        raise ValueError(f"--clip must be >= 0 (0 turns clipping off), got {clip}")
    _choice(impl, "--impl", IMPLS)
    _choice(loss, "--loss", LOSSES)
    backend = sdpa_backend or ("cudnn" if dev.type == "cuda" else "auto")
    _choice(backend, "--sdpa-backend", SDPA)
    if warmup < 0:
        raise ValueError(f"--warmup must be >= 0, got {warmup}")
    if steps is not None and steps < 1:
        raise ValueError(f"--steps must be >= 1, got {steps}")
    if loss_chunk < 1:
        raise ValueError(f"--loss-chunk must be >= 1 tokens, got {loss_chunk}")
    attentions = [_choice(a.strip(), "--attention", ("dense", "lighthouse")) for a in attention.split(",")]
    options = RunOptions(
        device=dev,
        dtype=dtype,
        steps=steps or 3,
        warmup=warmup,
        checkpointing=checkpointing,
        recompute=recompute,
        impl=impl,
        sdpa_backend=None if backend == "auto" else backend,
        loss=loss,
        loss_chunk=loss_chunk,
        seed=seed,
        peak_tflops=peak_tflops,
        clip=clip,
    )
    points = [
        TrainPoint(replace(chosen, rope=r) if a == "lighthouse" else chosen, a, n)
        for n in (seqs or [chosen.seq])
        for a in dict.fromkeys(attentions)
        for r in (ropes or [chosen.rope] if a == "lighthouse" else [None])
    ]
    return TrainRun(chosen, points, options, recipe)


def _ropes(text: Optional[str]) -> Optional[List[str]]:
    """--rope pre,post -> the placements (the sweep's parser and message: the option and the valid values)."""
    if text is None:
        return None
    from ..harness.options import parse_option

    return parse_option("rope", text)


def default_out(recipe: str) -> Path:
    from datetime import datetime

    return Path("out") / f"train-{'recipe-' if recipe == 'two-stage' else ''}{datetime.now().strftime('%Y%m%d-%H%M%S')}"
