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
the same layers (call `register()` before loading; with rope='post' call `configure` on the loaded model).

RoPE after selection (rope='post', docs/rope.md): see `_hand_over_raw_qk` for how a Lighthouse layer gets
un-rotated q and k and the token positions.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from dataclasses import dataclass
from typing import Iterable, List, Optional, Tuple

import torch

from .attention import lighthouse_attention
from .config import LighthouseConfig
from .sdpa import vjp

NAME = "lighthouse"
#: Key of the settings in the model config (config.json).
CONFIG_KEY = "lighthouse"
#: Keyword the rope='post' pre-hook adds to an attention module's call; it reaches the attention function
#: through the module's **kwargs and tells it that q and k arrived un-rotated.
RAW_QK_KEY = "lighthouse_raw_qk"


@dataclass(frozen=True)
class LighthouseSettings:
    """What `configure` stores in model.config.lighthouse, parsed: the layer config, the layers kept dense
    (indices into the model's decoder layers) and the model-wide dense switch."""

    config: LighthouseConfig
    dense_layers: Tuple[int, ...] = ()
    dense: bool = False
    recompute: bool = True

    def as_dict(self) -> dict:
        return {
            **self.config.as_dict(),
            "dense_layers": list(self.dense_layers),
            "dense": self.dense,
            "recompute": self.recompute,
        }

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


def configure(
    target,
    config: Optional[LighthouseConfig] = None,
    dense_layers: Iterable[int] = (),
    dense: bool = False,
    recompute: bool = True,
):
    """Make a transformers model (or its config, before building it) use Lighthouse.

    `dense_layers` are decoder layer indices that stay dense SDPA (negative counts from the end, as in Python).
    `recompute`: keep nothing of a Lighthouse call between forward and backward but its q, k, v, and run its
    forward again inside its backward (see `_RecomputedLighthouse`). Returns `target`. On a model, the
    attention implementation is switched to "lighthouse" in place.
    With config.rope='post', `target` must be the built model: rope_theta and rope_scaling are taken from the
    model's config (and checked against its rotary embedding), and its attention modules are hooked to hand
    Lighthouse layers un-rotated q and k (`_hand_over_raw_qk`).
    """
    register()
    model_config = getattr(target, "config", target)
    config = config or LighthouseConfig()
    if config.rope == "post":
        config = _with_model_rope(config, model_config)
        _hook_attention_modules(target, config)
    n_layers = _layer_count(model_config)
    layers = []
    for i in dense_layers:
        if isinstance(i, bool) or not isinstance(i, int) or not -n_layers <= i < n_layers:
            raise ValueError(
                f"dense_layers must hold layer indices in [{-n_layers}, {n_layers - 1}] "
                f"(the model has {n_layers} layers), got {i!r}"
            )
        layers.append(i % n_layers)
    settings = LighthouseSettings(config, tuple(sorted(set(layers))), bool(dense), bool(recompute))
    setattr(model_config, CONFIG_KEY, settings.as_dict())
    if hasattr(target, "set_attn_implementation"):
        target.set_attn_implementation(NAME)
    else:
        model_config._attn_implementation = NAME
    return target


def _model_rope(model_config):
    """(rope_theta, rope_scaling) of a transformers config, in v5's rope_parameters or v4's rope_theta/rope_scaling."""
    text = getattr(model_config, "get_text_config", lambda: model_config)()
    params = getattr(text, "rope_parameters", None)
    if params is None:
        params = {"rope_theta": getattr(text, "rope_theta", 10000.0), **(getattr(text, "rope_scaling", None) or {})}
    params = dict(params)
    if params and all(isinstance(value, dict) for value in params.values()):
        raise ValueError(
            f"rope='post' needs one RoPE for every layer; this model has one per layer type ({', '.join(params)})"
        )
    partial = params.pop("partial_rotary_factor", getattr(text, "partial_rotary_factor", 1.0))
    if partial not in (None, 1, 1.0):
        raise ValueError(
            f"rope='post' rotates the whole head; this model rotates a part of it (partial_rotary_factor={partial})"
        )
    return params.pop("rope_theta", 10000.0), params


def model_rope(model_config):
    """(rope_theta, rope_scaling) of a transformers config: the RoPE its attention layers rotate q, k by (a
    ValueError for one that rope='post' cannot reproduce: per layer type, or partial)."""
    return _model_rope(model_config)


def _with_model_rope(config: LighthouseConfig, model_config) -> LighthouseConfig:
    """config with the model's rope_theta and rope_scaling; a different explicit value is an error."""
    theta, scaling = _model_rope(model_config)
    try:
        wanted = config.replace(rope_theta=theta, rope_scaling=scaling)
    except ValueError as err:
        raise ValueError(f"rope='post' cannot reproduce this model's RoPE ({err})") from None
    default = LighthouseConfig()
    for name in ("rope_theta", "rope_scaling"):
        given = getattr(config, name)
        if given != getattr(default, name) and given != getattr(wanted, name):
            raise ValueError(
                f"{name}={given!r} differs from the model's {name}={getattr(wanted, name)!r}; leave it "
                f"at its default and configure takes the model's"
            )
    return wanted


def _attention_modules(model) -> list:
    """The model's attention modules that take `position_embeddings` (cos, sin) and apply RoPE themselves."""
    found = []
    for module in model.modules():
        forward = getattr(type(module), "forward", None)
        if forward is None or not hasattr(module, "layer_idx"):
            continue
        try:
            params = inspect.signature(forward).parameters
        except (TypeError, ValueError):
            continue
        if "position_embeddings" in params and "hidden_states" in params and hasattr(module, "config"):
            found.append(module)
    return found


def _check_rotary_frequencies(model, config: LighthouseConfig, head_dim: int) -> None:
    """The model's rotary embedding (a module with an inv_freq buffer) must turn by our frequencies: catches a
    RoPE variant whose config keys we read but whose formula we do not reproduce."""
    from .rope import inverse_frequencies

    ours = inverse_frequencies(config, head_dim)
    for module in model.modules():
        inv_freq = getattr(module, "inv_freq", None)
        if isinstance(inv_freq, torch.Tensor) and inv_freq.shape == ours.shape:
            scaling = float(getattr(module, "attention_scaling", 1.0))
            if scaling != 1.0 or not torch.allclose(inv_freq.detach().float().cpu(), ours, rtol=1e-6, atol=0):
                raise ValueError(
                    "rope='post' cannot reproduce this model's RoPE: its rotary embedding "
                    f"({type(module).__name__}) turns by other frequencies or scales cos/sin "
                    f"(attention_scaling={scaling})"
                )


def _hook_attention_modules(model, config: LighthouseConfig) -> None:
    if not isinstance(model, torch.nn.Module):
        raise ValueError(
            "rope='post' needs lighthouse.hf.configure(model, ...) on the built model (its attention "
            "modules are hooked to hand over un-rotated q and k), not on its config"
        )
    modules = _attention_modules(model)
    if not modules:
        raise ValueError(
            f"rope='post': {type(model).__name__} has no attention module that takes "
            f"position_embeddings=(cos, sin); only such RoPE models are supported"
        )
    head_dim = getattr(modules[0], "head_dim", None)
    if head_dim:
        _check_rotary_frequencies(model, config, int(head_dim))
    for module in modules:
        if not getattr(module, "_lighthouse_raw_qk_hook", None):
            module._lighthouse_raw_qk_hook = module.register_forward_pre_hook(_hand_over_raw_qk, with_kwargs=True)


def _hand_over_raw_qk(module, args, kwargs):
    """Forward pre-hook of a model's attention module: for a Lighthouse layer in rope='post' mode, replace the
    (cos, sin) the module would rotate q and k with by (1, 0), so that q and k reach the attention function
    exactly as projected, and mark the call (RAW_QK_KEY). The token positions arrive there as `position_ids`,
    which the decoder layers pass to the attention function. Dense layers, and every layer under the dense
    switch, are left alone: they keep transformers' own RoPE (the recovery phase is unchanged).

    Why this way: transformers rotates inside the attention module, between the projections and the attention
    function, in code that differs per model and per version. Replacing the module's forward would copy that
    code for every model (Llama, Qwen2, Mistral, ...) and break with the next release; un-rotating in the
    attention function would need the cos/sin, which it is not given, and in bf16 would not give back the
    projected q, k exactly. The `position_embeddings=(cos, sin)` keyword, on the other hand, is the one
    interface every RoPE decoder in transformers shares (>= 4.48, 5.x), and q * 1 + rotate_half(q) * 0 is q,
    bit for bit, whichever rotary implementation (or hub kernel) the model applies."""
    settings = settings_of(module.config)
    if settings.config.rope != "post" or settings.is_dense(getattr(module, "layer_idx", None)):
        return None
    embeddings = kwargs.get("position_embeddings")
    if embeddings is None:
        raise ValueError(
            f"rope='post': {type(module).__name__} was called without position_embeddings=(cos, sin) "
            f"as a keyword; this model's decoder layers are not supported"
        )
    cos, sin = embeddings
    head_dim = getattr(module, "head_dim", cos.shape[-1])
    if cos.shape[-1] != head_dim:
        raise ValueError(
            f"rope='post' rotates the whole head (D={head_dim}); this model rotates {cos.shape[-1]} dimensions of it"
        )
    one = torch.ones((), dtype=cos.dtype, device=cos.device).expand(cos.shape)
    zero = torch.zeros((), dtype=sin.dtype, device=sin.device).expand(sin.shape)
    return args, {**kwargs, "position_embeddings": (one, zero), RAW_QK_KEY: True}


def settings_of(model_or_config) -> LighthouseSettings:
    config = getattr(model_or_config, "config", model_or_config)
    entry = getattr(config, CONFIG_KEY, None)
    if not entry:
        raise ValueError(
            f"this model has no Lighthouse settings (config.{CONFIG_KEY}); call lighthouse.hf.configure first"
        )
    return LighthouseSettings.from_dict(entry)


def configure_loaded(model):
    """A model reloaded with from_pretrained (attn_implementation="lighthouse"): configure it again from the
    settings its config.json saved. Needed for rope='post', whose hooks on the attention modules are not part of
    a checkpoint (without them its Lighthouse layers refuse the rotated q and k they are handed); harmless
    otherwise. Returns `model`."""
    settings = settings_of(model)
    return configure(model, settings.config, settings.dense_layers, settings.dense, settings.recompute)


def set_dense(model, dense: bool = True) -> None:
    """Switch every Lighthouse layer of `model` to dense causal SDPA (True) or back (False), at run time."""
    config = getattr(model, "config", model)
    settings = settings_of(config)
    setattr(config, CONFIG_KEY, {**settings.as_dict(), "dense": bool(dense)})


def lighthouse_mask(
    batch_size: int,
    q_length: int,
    kv_length: int,
    q_offset=0,
    kv_offset=0,
    mask_function=None,
    attention_mask: Optional[torch.Tensor] = None,
    local_size: Optional[int] = None,
    allow_is_causal_skip: bool = True,
    **kwargs,
) -> None:
    """The mask builder of "lighthouse": always None (causal attention needs no mask), or a ValueError for a
    mask Lighthouse cannot apply. Never allocates a (q_length x kv_length) tensor."""
    from transformers.masking_utils import bidirectional_mask_function, causal_mask_function, prepare_padding_mask

    if local_size is not None and kv_length > local_size:
        raise ValueError(
            f"attn_implementation='lighthouse' cannot apply a sliding window (sliding_window={local_size} "
            f"< sequence length {kv_length}); set sliding_window=None in the model config"
        )
    if mask_function is bidirectional_mask_function or "allow_is_bidirectional_skip" in kwargs:
        raise ValueError(
            "attn_implementation='lighthouse' is causal only: the model asked for bidirectional "
            "attention (config.is_causal=False)"
        )
    if not allow_is_causal_skip:
        raise ValueError(
            "attn_implementation='lighthouse' cannot apply packing or custom masks: position_ids "
            "restart inside a sequence (packed sequences) or a mask function was added; "
            "train on unpacked full-length sequences"
        )
    if mask_function is not None and mask_function is not causal_mask_function and local_size is None:
        raise ValueError("attn_implementation='lighthouse' is causal only: the model asked for a custom mask function")
    if q_length != kv_length or (isinstance(q_offset, int) and q_offset != 0):
        raise ValueError(
            f"attn_implementation='lighthouse' is for training on whole sequences: query length "
            f"{q_length} != key length {kv_length} (a KV cache / generation); use use_cache=False"
        )
    padding = prepare_padding_mask(attention_mask, kv_length, kv_offset) if attention_mask is not None else None
    if padding is not None and not bool(padding.all()):
        raise ValueError(
            "attn_implementation='lighthouse' cannot apply a padding mask (attention_mask has zeros); "
            "train on unpadded full-length sequences, or pass attention_mask=None"
        )
    return None


def _check_call(module, query, key, attention_mask, dropout, scaling, is_causal, kwargs) -> None:
    if attention_mask is not None:
        raise ValueError(
            "attn_implementation='lighthouse' cannot apply an attention mask (padding, packing or a "
            "custom 4D mask); pass attention_mask=None with unpadded sequences"
        )
    if kwargs.get("output_attentions") or getattr(getattr(module, "config", None), "output_attentions", False):
        raise ValueError(
            "attn_implementation='lighthouse' never forms attention weights: output_attentions=True "
            "is not supported (use attn_implementation='eager' to inspect weights)"
        )
    if kwargs.get("sliding_window") is not None and kwargs["sliding_window"] < query.shape[2]:
        raise ValueError(
            f"attn_implementation='lighthouse' cannot apply a sliding window "
            f"(sliding_window={kwargs['sliding_window']} < N={query.shape[2]})"
        )
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    if not causal:
        raise ValueError("attn_implementation='lighthouse' is causal only (the layer has is_causal=False)")
    if dropout:
        raise ValueError(
            f"attn_implementation='lighthouse' has no attention dropout; set attention_dropout=0 "
            f"(got dropout={dropout})"
        )
    if query.shape[2] != key.shape[2]:
        raise ValueError(
            f"attn_implementation='lighthouse' is for training on whole sequences: {query.shape[2]} "
            f"queries against {key.shape[2]} keys (a KV cache); use use_cache=False"
        )
    if any(kwargs.get(name) is not None for name in ("cu_seq_lens_q", "cu_seq_lens_k", "s_aux", "position_bias")):
        raise ValueError(
            "attn_implementation='lighthouse' cannot apply packed-sequence boundaries, attention "
            "sinks or position biases"
        )
    head_dim = query.shape[-1]
    if scaling is not None and abs(scaling - head_dim**-0.5) > 1e-6 * head_dim**-0.5:
        raise ValueError(
            f"attn_implementation='lighthouse' uses the softmax scale 1/sqrt(head_dim) = "
            f"{head_dim**-0.5:.6g}; this model asks for scaling={scaling:.6g}"
        )


def _sdpa_priority(backend: Optional[str]):
    """Dense layers: the chosen SDPA backend first, the others as fallback (never a forced failure)."""
    if backend in (None, "auto"):
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from .sdpa import BACKENDS

    order = [BACKENDS[backend]] + [
        b
        for b in (
            SDPBackend.CUDNN_ATTENTION,
            SDPBackend.FLASH_ATTENTION,
            SDPBackend.EFFICIENT_ATTENTION,
            SDPBackend.MATH,
        )
        if b != BACKENDS[backend]
    ]
    return sdpa_kernel(order, set_priority=True)


def lighthouse_attention_forward(
    module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Optional[torch.Tensor],
    dropout: float = 0.0,
    scaling: Optional[float] = None,
    is_causal: Optional[bool] = None,
    **kwargs,
) -> Tuple[torch.Tensor, None]:
    """The registered attention function: q (B, Hq, N, D), k, v (B, Hkv, N, D) -> ((B, N, Hq, D), None).
    rope='post': a Lighthouse layer's q and k arrive un-rotated (`_hand_over_raw_qk`), and position_ids
    (kwargs) are the token positions Lighthouse rotates its selected entries at."""
    raw_qk = bool(kwargs.pop(RAW_QK_KEY, False))
    _check_call(module, query, key, attention_mask, dropout, scaling, is_causal, kwargs)
    settings = settings_of(module.config)
    dense = settings.is_dense(getattr(module, "layer_idx", None))
    positions = None
    if settings.config.rope == "post" and not dense:
        if not raw_qk:
            raise ValueError(
                "rope='post': this layer's q and k arrived rotated by the model; call "
                "lighthouse.hf.configure(model, ...) on the built model (lighthouse.hf.configure_loaded(model) on a "
                "reloaded one), which hooks its "
                "attention modules to hand over un-rotated q and k"
            )
        positions = kwargs.get("position_ids")
    timer = _ACTIVE_TIMER
    if timer is not None:
        span = timer.start()
        query, key, value = _EndOfBackward.apply(span, query, key, value)
    query, key, value, autocast_off = _autocast_inputs(query, key, value)
    if dense:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        with _sdpa_priority(settings.config.sdpa_backend):
            out, _ = sdpa_attention_forward(
                module, query, key, value, None, dropout=0.0, scaling=scaling, is_causal=True
            )
    elif settings.recompute and torch.is_grad_enabled() and any(x.requires_grad for x in (query, key, value)):
        with autocast_off:
            out = _RecomputedLighthouse.apply(query, key, value, settings.config, positions)
        out = out.transpose(1, 2).contiguous()
    else:
        with autocast_off:
            out = lighthouse_attention(query, key, value, config=settings.config, positions=positions)
        out = out.transpose(1, 2).contiguous()
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
    def forward(ctx, q, k, v, config, positions=None):
        ctx.save_for_backward(q, k, v)
        ctx.config, ctx.positions = config, positions
        return lighthouse_attention(q, k, v, config=config, positions=positions)

    @staticmethod
    def backward(ctx, grad):
        q, k, v = ctx.saved_tensors
        with torch.enable_grad():
            leaves = [x.detach().requires_grad_() for x in (q, k, v)]
            out = lighthouse_attention(*leaves, config=ctx.config, positions=ctx.positions)
        dq, dk, dv = vjp([out], leaves, [grad])  # torch.autograd.grad without its first call's sympy import
        return dq, dk, dv, None, None


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
