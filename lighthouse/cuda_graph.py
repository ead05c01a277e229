"""CUDA graphs around one fixed-shape Lighthouse call: its forward and its backward, each replayed as one graph.

At small N the layer is bound by the host: a forward + backward launches some twenty kernels, and at N = 8K
launching them takes as long as running them (reports/h200/tools/host_cost.py). A graph replays the whole sequence with
one launch. What the caller must keep fixed: q, k, v of exactly the captured shape, dtype, device and
requires_grad (checked on every call: ValueError naming the input and the expected shape), and one call in
flight per graphed callable (its backward reads state the next forward overwrites; checked at backward).

Built on `torch.cuda.make_graphed_callables`, not on a capture of our own: it already gets right what a
hand-written capture would have to (warm-up iterations on a side stream so that lazy initialisation, cuDNN
plans and Triton compilation stay out of the capture; forward and backward captured into one memory pool in
replay order; one autograd.Function that copies new inputs into the static ones and replays the backward
graph). We only add what it leaves to the caller: the input check, fresh copies of the output and of the
input gradients (its own are static buffers the next replay overwrites), and the one-call-in-flight guard.

What changes under capture, inside the layer: the deferred NaN/Inf check cannot read the GPU from the host,
so it stays on the device (lighthouse.finite.assert_finite_on_device): NaN or Inf in q, k or v stops the replay
with a CUDA device-side assertion, which leaves the process's CUDA context unusable, instead of the eager
ValueError naming the element. Refused, because they read the GPU from the host: impl='torch' (its check is a
host read), scorers other than 'norm' (the same), and plans whose selection runs the PyTorch fallback.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Tuple, Union

import torch

from .config import LighthouseConfig, as_config

INPUT_NAMES = ("q", "k", "v")


class NotCapturable(ValueError):
    """This call cannot be captured into a CUDA graph (no CUDA, or a path that reads the GPU from the host);
    a benchmark records it as `unsupported`."""


class InputSignature(NamedTuple):
    """What a captured graph fixes about one input."""

    shape: Tuple[int, ...]
    dtype: torch.dtype
    device: torch.device
    requires_grad: bool


def signature(t: torch.Tensor) -> InputSignature:
    return InputSignature(tuple(t.shape), t.dtype, t.device, bool(t.requires_grad))


def check_inputs(expected: Sequence[InputSignature], tensors: Sequence, names: Sequence[str] = INPUT_NAMES) -> None:
    """Raise ValueError naming the first input that differs from what the graph was captured for.
    make_graphed_callables itself would copy a mismatched input into the static buffer (broadcasting or
    failing deep inside) or replay on stale values: a shape it was not captured for is never right."""
    for name, want, t in zip(names, expected, tensors):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        got = signature(t)
        if got.shape != want.shape:
            raise ValueError(
                f"{name} has shape {got.shape}, but this graphed callable was captured for shape "
                f"{want.shape}; make one graphed callable per shape"
            )
        for field in ("dtype", "device", "requires_grad"):
            if getattr(got, field) != getattr(want, field):
                raise ValueError(
                    f"{name} has {field}={getattr(got, field)}, but this graphed callable was captured "
                    f"for {field}={getattr(want, field)} (shape {want.shape}); make one per signature"
                )


def check_cuda(tensors: Sequence[torch.Tensor], names: Sequence[str] = INPUT_NAMES) -> None:
    """cuda_graph needs CUDA tensors (a CUDA graph is a CUDA object)."""
    for name, t in zip(names, tensors):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.device.type != "cuda":
            raise NotCapturable(
                f"cuda_graph needs a CUDA device: {name} is on {t.device}; move q, k, v to CUDA "
                "or call lighthouse_attention without graphs"
            )
    if not torch.cuda.is_available():  # pragma: no cover - CUDA tensors imply CUDA
        raise NotCapturable("cuda_graph needs a CUDA device: torch.cuda.is_available() is False")


def check_capturable(config: LighthouseConfig, plan, impl: str) -> None:
    """Refuse, before any warm-up, a call whose path reads the GPU from the host (illegal during capture)."""
    if impl != "triton":
        raise NotCapturable(
            f"cuda_graph needs impl='triton' (or 'auto' on CUDA), got impl={config.impl!r} which runs "
            f"the {impl} path: its finiteness check reads the GPU from the host, which a CUDA graph "
            "capture forbids"
        )
    if config.scorer != "norm":
        raise NotCapturable(
            f"cuda_graph needs scorer='norm', got scorer={config.scorer!r}: the other scorers check "
            "finiteness on the host, which a CUDA graph capture forbids"
        )
    from .kernels.select import MAX_CANDIDATES, MAX_TILE_ENTRIES, fits_in_kernel

    if not fits_in_kernel(plan):
        raise NotCapturable(
            f"cuda_graph: this plan's selection runs on the PyTorch fallback, which reads the GPU from the host: a "
            f"tile has {plan.chunk} coarsest candidates (valid 1..{MAX_CANDIDATES}) and {plan.tile_len} entries "
            f"(valid 1..{MAX_TILE_ENTRIES}); raise topk (candidates = N / pooling**(levels-1) / (topk/128)) or levels"
        )


class _FreshGradients(torch.autograd.Function):
    """Identity on (q, k, v) whose backward hands out copies of the gradients: the graphed callable returns its
    static gradient buffers, which the next backward replay overwrites (and which AccumulateGrad would
    otherwise adopt as q.grad)."""

    @staticmethod
    def forward(ctx, q, k, v):
        outs = (q.view_as(q), k.view_as(k), v.view_as(v))
        ctx.mark_non_differentiable(*[o for o, x in zip(outs, (q, k, v)) if not x.requires_grad])
        return outs

    @staticmethod
    def backward(ctx, dq, dk, dv):
        return tuple(None if g is None else g.clone() for g in (dq, dk, dv))


class GraphedAttention:
    """lighthouse_attention(q, k, v, config=...) for one input signature, replayed from CUDA graphs.

    Call it like the layer: out = graphed(q, k, v). The output and the gradients are fresh tensors (copied out
    of the graph's static buffers), so they survive later calls. Its backward must run before its next forward
    (one graphed callable per layer of a model; a backward after a later forward raises RuntimeError), and at
    most once per forward unless captured with retain_graph=True."""

    def __init__(self, graphed, expected: Sequence[InputSignature], retain_graph: bool):
        self._graphed = graphed
        self.expected = tuple(expected)
        self.retain_graph = retain_graph
        self._calls = 0  # forwards replayed so far
        self._backward_of = 0  # the call whose backward last ran

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        check_inputs(self.expected, (q, k, v))
        if torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v)):
            q, k, v = _FreshGradients.apply(q, k, v)
        out = self._graphed(q, k, v).clone()  # the static output is overwritten by the next replay
        self._calls += 1
        if out.requires_grad:
            out.register_hook(self._guard(self._calls))
        return out

    def _guard(self, call: int):
        def hook(grad):
            if call != self._calls:
                raise RuntimeError(
                    f"graphed attention: backward of call {call} after call {self._calls} replayed its forward over "
                    "the saved state of the graphs; run each call's backward before the next call, or make one "
                    "graphed callable per layer"
                )
            if self._backward_of == call and not self.retain_graph:
                raise RuntimeError(
                    "graphed attention: backward ran twice on one forward; capture with "
                    "retain_graph=True to allow backward(retain_graph=True) more than once"
                )
            self._backward_of = call

        return hook


def graph_lighthouse(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    config: Union[LighthouseConfig, dict, None] = None,
    *,
    retain_graph: bool = False,
    num_warmup_iters: int = 3,
) -> GraphedAttention:
    """Capture lighthouse_attention(q, k, v, config=config) (forward, and backward when an input requires grad)
    into CUDA graphs; returns a callable for inputs of exactly this shape, dtype, device and requires_grad.

    q, k, v are samples: their values are copied (the graph's static inputs are its own, so the caller's
    tensors are never overwritten) and run through the layer num_warmup_iters times before the capture, so
    they must be finite. retain_graph=True keeps the sub-sequence SDPA graph alive in the backward graph
    (four (B, H, S, D) tensors more), so that backward(retain_graph=True) may replay more than once per forward.
    """
    from .dispatch import resolve_impl
    from .plan import make_plan

    check_cuda((q, k, v))
    cfg = LighthouseConfig() if config is None else as_config(config)
    plan = make_plan(cfg, q, k, v)
    check_capturable(cfg, plan, resolve_impl(cfg.impl, q))
    if num_warmup_iters < 1:
        raise ValueError(f"num_warmup_iters must be >= 1, got {num_warmup_iters}")
    statics = tuple(x.detach().clone().requires_grad_(x.requires_grad) for x in (q, k, v))
    graphed = graph_callable(
        lambda q_, k_, v_: _layer(q_, k_, v_, cfg),
        statics,
        retain_inner=retain_graph,
        num_warmup_iters=num_warmup_iters,
    )
    return GraphedAttention(graphed, [signature(x) for x in (q, k, v)], retain_graph)


def graph_callable(fn, statics: Tuple[torch.Tensor, ...], *, retain_inner: bool = False, num_warmup_iters: int = 3):
    """make_graphed_callables(fn, statics); with retain_inner, inside lighthouse.kernels.retain_inner_graph so
    that the captured backward keeps the sub-sequence graph (a repeated backward replay then reads intact
    tensors). Also serves the dense baseline of `sweep --cuda-graph`."""
    import contextlib

    if torch.cuda.is_current_stream_capturing():
        raise RuntimeError("cuda_graph: cannot capture while another CUDA graph capture is under way")
    keep = contextlib.nullcontext()
    if retain_inner:
        from .kernels import retain_inner_graph

        keep = retain_inner_graph()
    with keep:
        return torch.cuda.make_graphed_callables(fn, statics, num_warmup_iters=num_warmup_iters)


def _layer(q, k, v, cfg: LighthouseConfig) -> torch.Tensor:
    from .attention import lighthouse_attention

    return lighthouse_attention(q, k, v, config=cfg)


def graph_dense(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, sdpa_backend: Optional[str] = None, retain_graph: bool = False
) -> GraphedAttention:
    """Dense causal SDPA (lighthouse.sdpa.dense_attention) behind the same graphed wrapper: the baseline that
    `sweep --cuda-graph` times beside graphed Lighthouse, paying the same input, output and gradient copies.
    retain_graph=True only lets the guard allow a repeated backward (the bwd pass times it): the captured
    backward does not retain SDPA's saved tensors, so with GQA (a reduction allocated after they are freed) a
    repeated replay may read reused memory; the work, and so the time, is the same."""
    from .sdpa import dense_attention

    check_cuda((q, k, v))
    statics = tuple(x.detach().clone().requires_grad_(x.requires_grad) for x in (q, k, v))
    graphed = graph_callable(lambda q_, k_, v_: dense_attention(q_, k_, v_, sdpa_backend), statics)
    return GraphedAttention(graphed, [signature(x) for x in (q, k, v)], retain_graph)
