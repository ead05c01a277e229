"""Lighthouse inside Hugging Face transformers: `attn_implementation="lighthouse"` for any decoder model.

transformers (>= 5) looks attention up by name in two registries: `AttentionInterface` (the function that
turns q, k, v into the attention output) and `AttentionMaskInterface` (the function that builds the mask
before the first layer). Registering both under "lighthouse" means:

- no N x N mask is ever built: `lighthouse_mask` returns None (plain causal attention, as SDPA's `is_causal`),
  and raises instead for every mask Lighthouse cannot honour (padding, packed sequences, sliding windows,
  non-causal or custom masks, a KV cache);
- every attention layer calls `lighthouse_attention_forward`, which reads the model config's `lighthouse`
  entry (written by `configure`): the Lighthouse parameters (one LighthouseConfig), the layers that stay dense,
  and a model-wide dense switch for the recovery phase of the two-stage recipe (`set_dense`). The switch is a
  flag read at every call, so neither the model nor the optimizer is rebuilt;
- GQA stays as the model has it: q (B, Hq, N, D) and k, v (B, Hkv, N, D) go to `lighthouse_attention`
  unrepeated; dense layers use transformers' own SDPA function (GQA without repeating where SDPA can).

The `lighthouse` entry is plain JSON in config.json, so `save_pretrained` keeps it and a reloaded model runs
the same layers (call `register()` before loading).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Iterable, List, Optional, Tuple

import torch

from .attention import lighthouse_attention
from .config import LighthouseConfig

NAME = "lighthouse"
#: Key of the settings in the model config (config.json).
CONFIG_KEY = "lighthouse"


@dataclass(frozen=True)
class LighthouseSettings:
    """What `configure` stores in model.config.lighthouse, parsed: the layer config, the layers kept dense
    (indices into the model's decoder layers) and the model-wide dense switch."""

    config: LighthouseConfig
    dense_layers: Tuple[int, ...] = ()
    dense: bool = False
    recompute: bool = True

    def as_dict(self) -> dict:
        return {**self.config.as_dict(), "dense_layers": list(self.dense_layers), "dense": self.dense,
                "recompute": self.recompute}

    @classmethod
    def from_dict(cls, entry: dict) -> "LighthouseSettings":
        entry = dict(entry)
        dense_layers = tuple(int(i) for i in entry.pop("dense_layers", ()))
        dense = bool(entry.pop("dense", False))
        recompute = bool(entry.pop("recompute", True))
        return cls(LighthouseConfig(**entry), dense_layers, dense, recompute)

    def is_dense(self, layer_idx: Optional[int]) -> bool:
        return self.dense or (layer_idx is not None and layer_idx in self.dense_layers)


def register() -> None:
    """Register "lighthouse" with transformers' attention and mask registries (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, lighthouse_attention_forward)
    AttentionMaskInterface.register(NAME, lighthouse_mask)


def _layer_count(config) -> int:
    text = getattr(config, "get_text_config", lambda: config)()
    return int(getattr(text, "num_hidden_layers"))


def configure(target, config: Optional[LighthouseConfig] = None, dense_layers: Iterable[int] = (),
              dense: bool = False, recompute: bool = True):
    """Make a transformers model (or its config, before building it) use Lighthouse.

    `dense_layers` are decoder layer indices that stay dense SDPA (negative counts from the end, as in Python).
    `recompute`: keep nothing of a Lighthouse call between forward and backward but its q, k, v, and run its
    forward again inside its backward (see `_RecomputedLighthouse`). Returns `target`. On a model, the
    attention implementation is switched to "lighthouse" in place.
    """
    register()
    model_config = getattr(target, "config", target)
    n_layers = _layer_count(model_config)
    layers = []
    for i in dense_layers:
        if isinstance(i, bool) or not isinstance(i, int) or not -n_layers <= i < n_layers:
            raise ValueError(f"dense_layers must hold layer indices in [{-n_layers}, {n_layers - 1}] "
                             f"(the model has {n_layers} layers), got {i!r}")
        layers.append(i % n_layers)
    settings = LighthouseSettings(config or LighthouseConfig(), tuple(sorted(set(layers))), bool(dense), bool(recompute))
    setattr(model_config, CONFIG_KEY, settings.as_dict())
    if hasattr(target, "set_attn_implementation"):
        target.set_attn_implementation(NAME)
    else:
        model_config._attn_implementation = NAME
    return target


def settings_of(model_or_config) -> LighthouseSettings:
    config = getattr(model_or_config, "config", model_or_config)
    entry = getattr(config, CONFIG_KEY, None)
    if not entry:
        raise ValueError(f"this model has no Lighthouse settings (config.{CONFIG_KEY}); call lighthouse.hf.configure first")
    return LighthouseSettings.from_dict(entry)


def set_dense(model, dense: bool = True) -> None:
    """Switch every Lighthouse layer of `model` to dense causal SDPA (True) or back (False), at run time."""
    config = getattr(model, "config", model)
    settings = settings_of(config)
    setattr(config, CONFIG_KEY, {**settings.as_dict(), "dense": bool(dense)})


def lighthouse_mask(batch_size: int, q_length: int, kv_length: int, q_offset=0, kv_offset=0, mask_function=None,
                    attention_mask: Optional[torch.Tensor] = None, local_size: Optional[int] = None,
                    allow_is_causal_skip: bool = True, **kwargs) -> None:
    """The mask builder of "lighthouse": always None (causal attention needs no mask), or a ValueError for a
    mask Lighthouse cannot apply. Never allocates a (q_length x kv_length) tensor."""
    from transformers.masking_utils import bidirectional_mask_function, causal_mask_function, prepare_padding_mask

    if local_size is not None and kv_length > local_size:
        raise ValueError(f"attn_implementation='lighthouse' cannot apply a sliding window (sliding_window={local_size} "
                         f"< sequence length {kv_length}); set sliding_window=None in the model config")
    if mask_function is bidirectional_mask_function or "allow_is_bidirectional_skip" in kwargs:
        raise ValueError("attn_implementation='lighthouse' is causal only: the model asked for bidirectional "
                         "attention (config.is_causal=False)")
    if not allow_is_causal_skip:
        raise ValueError("attn_implementation='lighthouse' cannot apply packing or custom masks: position_ids "
                         "restart inside a sequence (packed sequences) or a mask function was added; "
                         "train on unpacked full-length sequences")
    if mask_function is not None and mask_function is not causal_mask_function and local_size is None:
        raise ValueError("attn_implementation='lighthouse' is causal only: the model asked for a custom mask function")
    if q_length != kv_length or (isinstance(q_offset, int) and q_offset != 0):
        raise ValueError(f"attn_implementation='lighthouse' is for training on whole sequences: query length "
                         f"{q_length} != key length {kv_length} (a KV cache / generation); use use_cache=False")
    padding = prepare_padding_mask(attention_mask, kv_length, kv_offset) if attention_mask is not None else None
    if padding is not None and not bool(padding.all()):
        raise ValueError("attn_implementation='lighthouse' cannot apply a padding mask (attention_mask has zeros); "
                         "train on unpadded full-length sequences, or pass attention_mask=None")
    return None


def _check_call(module, query, key, attention_mask, dropout, scaling, is_causal, kwargs) -> None:
    if attention_mask is not None:
        raise ValueError("attn_implementation='lighthouse' cannot apply an attention mask (padding, packing or a "
                         "custom 4D mask); pass attention_mask=None with unpadded sequences")
    if kwargs.get("output_attentions") or getattr(getattr(module, "config", None), "output_attentions", False):
        raise ValueError("attn_implementation='lighthouse' never forms attention weights: output_attentions=True "
                         "is not supported (use attn_implementation='eager' to inspect weights)")
    if kwargs.get("sliding_window") is not None and kwargs["sliding_window"] < query.shape[2]:
        raise ValueError(f"attn_implementation='lighthouse' cannot apply a sliding window "
                         f"(sliding_window={kwargs['sliding_window']} < N={query.shape[2]})")
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    if not causal:
        raise ValueError("attn_implementation='lighthouse' is causal only (the layer has is_causal=False)")
    if dropout:
        raise ValueError(f"attn_implementation='lighthouse' has no attention dropout; set attention_dropout=0 "
                         f"(got dropout={dropout})")
    if query.shape[2] != key.shape[2]:
        raise ValueError(f"attn_implementation='lighthouse' is for training on whole sequences: {query.shape[2]} "
                         f"queries against {key.shape[2]} keys (a KV cache); use use_cache=False")
    if any(kwargs.get(name) is not None for name in ("cu_seq_lens_q", "cu_seq_lens_k", "s_aux", "position_bias")):
        raise ValueError("attn_implementation='lighthouse' cannot apply packed-sequence boundaries, attention "
                         "sinks or position biases")
    head_dim = query.shape[-1]
    if scaling is not None and abs(scaling - head_dim ** -0.5) > 1e-6 * head_dim ** -0.5:
        raise ValueError(f"attn_implementation='lighthouse' uses the softmax scale 1/sqrt(head_dim) = "
                         f"{head_dim ** -0.5:.6g}; this model asks for scaling={scaling:.6g}")


def _sdpa_priority(backend: Optional[str]):
    """Dense layers: the chosen SDPA backend first, the others as fallback (never a forced failure)."""
    if backend in (None, "auto"):
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from .sdpa import BACKENDS

    order = [BACKENDS[backend]] + [b for b in (SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION,
                                               SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH) if b != BACKENDS[backend]]
    return sdpa_kernel(order, set_priority=True)


def lighthouse_attention_forward(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                                 attention_mask: Optional[torch.Tensor], dropout: float = 0.0,
                                 scaling: Optional[float] = None, is_causal: Optional[bool] = None,
                                 **kwargs) -> Tuple[torch.Tensor, None]:
    """The registered attention function: q (B, Hq, N, D), k, v (B, Hkv, N, D) -> ((B, N, Hq, D), None)."""
    _check_call(module, query, key, attention_mask, dropout, scaling, is_causal, kwargs)
    settings = settings_of(module.config)
    timer = _ACTIVE_TIMER
    if timer is not None:
        span = timer.start()
        query, key, value = _EndOfBackward.apply(span, query, key, value)
    query, key, value, autocast_off = _autocast_inputs(query, key, value)
    if settings.is_dense(getattr(module, "layer_idx", None)):
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        with _sdpa_priority(settings.config.sdpa_backend):
            out, _ = sdpa_attention_forward(module, query, key, value, None, dropout=0.0, scaling=scaling,
                                            is_causal=True)
    elif settings.recompute and torch.is_grad_enabled() and any(x.requires_grad for x in (query, key, value)):
        with autocast_off:
            out = _RecomputedLighthouse.apply(query, key, value, settings.config).transpose(1, 2).contiguous()
    else:
        with autocast_off:
            out = lighthouse_attention(query, key, value, config=settings.config).transpose(1, 2).contiguous()
    if timer is not None:
        timer.stop(span)
        out = _StartOfBackward.apply(span, out)
    return out, None


def _autocast_inputs(query, key, value):
    """Under autocast (mixed-precision training), q, k, v in the autocast dtype and a context that turns autocast
    off for the Lighthouse call: the layer then runs exactly as it does in bf16 benchmarks. Why: transformers'
    RoPE multiplies bf16 q, k by float32 cos/sin, so q and k arrive in float32 beside a bf16 v; SDPA would cast
    them under autocast, and Lighthouse does the same here, once, at its edge."""
    device_type = query.device.type
    if not torch.is_autocast_enabled(device_type):
        return query, key, value, contextlib.nullcontext()
    dtype = torch.get_autocast_dtype(device_type)
    cast = [x.to(dtype) if x.is_floating_point() and x.dtype != dtype else x for x in (query, key, value)]
    return (*cast, torch.autocast(device_type=device_type, enabled=False))


class _RecomputedLighthouse(torch.autograd.Function):
    """Lighthouse whose only saved state is its inputs q, k, v (through save_for_backward); its backward runs
    the forward again with autograd and differentiates that.

    Why: the Triton path's autograd.Function keeps its sub-sequence tensors and selection as ctx attributes.
    Activation checkpointing (non-reentrant) only discards tensors saved with save_for_backward, so under
    gradient checkpointing every Lighthouse layer would hold those tensors from its forward to its backward
    (about 150 MB per layer at N=98K, k=1536: gigabytes over 26 layers, more than the dense model's peak).
    Here the forward runs without autograd (nothing kept), q, k, v are discarded and recomputed by the
    layer's checkpoint like any saved tensor, and the price is one more Lighthouse forward per layer.
    """

    @staticmethod
    def forward(ctx, q, k, v, config):
        ctx.save_for_backward(q, k, v)
        ctx.config = config
        return lighthouse_attention(q, k, v, config=config)

    @staticmethod
    def backward(ctx, grad):
        q, k, v = ctx.saved_tensors
        with torch.enable_grad():
            leaves = [x.detach().requires_grad_() for x in (q, k, v)]
            out = lighthouse_attention(*leaves, config=ctx.config)
        dq, dk, dv = torch.autograd.grad(out, leaves, grad)
        return dq, dk, dv, None


# --- attention timing: CUDA events (or the clock on the CPU) around every attention call ------------------------

_ACTIVE_TIMER: Optional["AttentionTimer"] = None


class _Span:
    __slots__ = ("fwd_start", "fwd_end", "bwd_start", "bwd_end")

    def __init__(self):
        self.fwd_start = self.fwd_end = self.bwd_start = self.bwd_end = None


class AttentionTimer:
    """Time spent inside the attention calls of a model, forward and backward, measured in place.

    Forward: a mark before and after the call. Backward: two identity autograd Functions bracket the attention
    sub-graph (one on its output, whose backward runs first, one on q, k, v, whose backward runs last), so the
    marks enclose the attention's own backward kernels. Marks are CUDA events on CUDA (no synchronisation until
    `total_ms`) and the clock on the CPU. Recomputation under activation checkpointing re-runs the forward
    through the same function and is counted, as it is time spent on attention.
    """

    def __init__(self, device: torch.device):
        self.cuda = torch.device(device).type == "cuda"
        self.spans: List[_Span] = []

    def _mark(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def start(self) -> _Span:
        span = _Span()
        span.fwd_start = self._mark()
        self.spans.append(span)
        return span

    def stop(self, span: _Span) -> None:
        span.fwd_end = self._mark()

    def _ms(self, a, b) -> float:
        if a is None or b is None:
            return 0.0
        return a.elapsed_time(b) if self.cuda else (b - a) * 1e3

    def total_ms(self) -> Tuple[float, float]:
        """(forward ms, backward ms) summed over every call since the timer started (synchronises)."""
        if self.cuda:
            torch.cuda.synchronize()
        fwd = sum(self._ms(s.fwd_start, s.fwd_end) for s in self.spans)
        bwd = sum(self._ms(s.bwd_start, s.bwd_end) for s in self.spans)
        return fwd, bwd

    def reset(self) -> None:
        self.spans = []


@contextlib.contextmanager
def timing_attention(device):
    """Within the block, every "lighthouse" attention call (dense layers included) is timed; yields the timer."""
    global _ACTIVE_TIMER
    timer, previous = AttentionTimer(device), _ACTIVE_TIMER
    _ACTIVE_TIMER = timer
    try:
        yield timer
    finally:
        _ACTIVE_TIMER = previous


class _StartOfBackward(torch.autograd.Function):
    """Identity on the attention output; its backward (the first of the attention's) marks bwd_start."""

    @staticmethod
    def forward(ctx, span, out):
        ctx.span = span
        return out.view_as(out)

    @staticmethod
    def backward(ctx, grad):
        if ctx.span.bwd_start is None:
            ctx.span.bwd_start = _mark_like(ctx.span.fwd_start)
        return None, grad


class _EndOfBackward(torch.autograd.Function):
    """Identity on q, k, v; its backward (the last of the attention's) marks bwd_end."""

    @staticmethod
    def forward(ctx, span, q, k, v):
        ctx.span = span
        return q.view_as(q), k.view_as(k), v.view_as(v)

    @staticmethod
    def backward(ctx, gq, gk, gv):
        ctx.span.bwd_end = _mark_like(ctx.span.fwd_start)
        return None, gq, gk, gv


def _mark_like(reference):
    if isinstance(reference, float):
        return time.perf_counter()
    event = torch.cuda.Event(enable_timing=True)
    event.record()
    return event
