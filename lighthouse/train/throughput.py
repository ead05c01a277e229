"""One throughput point: build the model, take optimizer steps, measure; every outcome becomes a row.

Training setup: the same `Trainer` step as the recipe and the study (the run's precision, `mixed` = fp32 master
weights under bf16 autocast by default on CUDA; gradient clipping; AdamW), so tokens/s describes real training.
Timing: the first step is timed alone (first_step_s: Triton compilation, autotuning, allocator warm-up), then
`warmup` more untimed steps, then `steps` timed steps with CUDA events around each whole step (forward, loss,
backward, optimizer step, zero_grad; the CPU clock after a synchronisation on the CPU). tokens/s = batch * N /
median step time. Attention share: every attention call of the timed steps is bracketed in place by
lighthouse.hf.AttentionTimer (forward, the recomputed forward under checkpointing, and backward), and its total
per step is divided by the median step time. Peak memory: torch.cuda.max_memory_allocated over the timed steps.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass
from typing import Optional

import torch

from ..plan import plan_for

from .. import hf
from ..harness import tables
from .mfu import mfu, model_flops_per_step, peak_tflops
from .model import count_parameters
from .precision import PRECISIONS
from .presets import TrainPreset
from .trainer import Trainer

#: Precisions of a training run (the CSV's `dtype` column): see lighthouse.train.precision.
DTYPES = PRECISIONS


@dataclass(frozen=True)
class TrainPoint:
    preset: TrainPreset
    attention: str  # dense | lighthouse
    seq: int

    def label(self) -> str:
        p = self.preset
        rope = "" if p.rope == "pre" else f" rope={p.rope}"
        lh = f" k{p.topk} L{p.levels} p{p.pooling} {p.scorer}{rope}" if self.attention == "lighthouse" else ""
        return f"{p.name} N={self.seq} {self.attention}{lh}"


@dataclass(frozen=True)
class RunOptions:
    device: torch.device
    dtype: str = "mixed"  # a precision of lighthouse.train.precision (mixed, bf16, fp16, fp32)
    steps: int = 3
    warmup: int = 1
    checkpointing: bool = True
    recompute: bool = True  # lighthouse.hf's recomputed Lighthouse backward (memory)
    impl: str = "auto"
    sdpa_backend: Optional[str] = None
    loss: str = "auto"
    loss_chunk: int = 8192
    seed: int = 0
    peak_tflops: Optional[float] = None
    clip: float = 1.0  # gradient clipping (global norm); 0 = off

    def trainer_options(self) -> dict:
        """The model and step settings these options fix, as Trainer's (and arm_rows') keywords. The seed and
        the clipping stay with the caller: an arm trains at its own seed, the recipe takes its clip apart."""
        keys = ("impl", "sdpa_backend", "checkpointing", "recompute", "loss", "loss_chunk")
        return {key: getattr(self, key) for key in keys}


def point_columns(point: TrainPoint, opts: RunOptions) -> dict:
    """The key columns of the TRAIN table for this point (and its fixed parameters)."""
    p = point.preset
    lh = point.attention == "lighthouse"
    return {
        "preset": p.name,
        "attention": point.attention,
        "n": point.seq,
        "batch": p.batch,
        "hidden": p.hidden,
        "layers": p.layers,
        "ffn": p.ffn,
        "heads": p.heads,
        "kv_heads": p.kv_heads,
        "head_dim": p.head_dim,
        "vocab": p.vocab,
        **tables.config_cells(p if lh else None),
        "dense_layers": " ".join(str(i) for i in p.dense_layer_indices()) if lh else None,
        "device": opts.device.type,
        "dtype": opts.dtype,
        "checkpointing": int(opts.checkpointing),
        "recompute": int(opts.recompute) if lh else None,
        "impl": opts.impl if lh else None,
        "sdpa_backend": opts.sdpa_backend or "auto",
        "seed": opts.seed,
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        try:
            torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001 - a lost context is reported by the caller
            pass


def measure_point(point: TrainPoint, opts: RunOptions) -> dict:
    """The TRAIN row of one point: status ok with the measurements, or invalid / oom / error with a reason."""
    row = point_columns(point, opts)
    try:
        row.update(_measure(point, opts))
        row["status"] = "ok"
    except ValueError as err:
        row.update(status="invalid", reason=str(err))
    except Exception as err:  # noqa: BLE001 - one point never stops the run
        if _is_oom(err):
            row.update(status="oom", reason=str(err).splitlines()[0][:300])
        else:
            row.update(
                status="error", reason=f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"
            )
    free_memory(opts.device)
    return row


def _measure(point: TrainPoint, opts: RunOptions) -> dict:
    device, p, n = opts.device, point.preset, point.seq
    lh = point.attention == "lighthouse"
    cfg = p.lighthouse(opts.impl, opts.sdpa_backend)
    # the library's plan gives S; raises ValueError (invalid) for an N Lighthouse cannot take
    s_sel = plan_for(cfg, p.batch, p.heads, p.kv_heads, n, p.head_dim).selected_len if lh else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer = Trainer(
        p, n, point.attention, device, opts.dtype, seed=opts.seed, clip=opts.clip, **opts.trainer_options()
    )
    model, loss_fn = trainer.model, trainer.loss_fn
    g = torch.Generator(device="cpu").manual_seed(opts.seed)
    tokens = torch.randint(0, p.vocab, (p.batch, n + 1), generator=g).to(device)
    inputs, labels = tokens[:, :-1], tokens[:, 1:]

    def step():
        return trainer.step(inputs, labels)[0]

    sync(device)
    t0 = time.perf_counter()
    step()
    sync(device)
    first_step_s = time.perf_counter() - t0
    for _ in range(opts.warmup):
        step()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times_ms = []
    with hf.timing_attention(device) as timer:
        for _ in range(opts.steps):
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                last = step()
                end.record()
                end.synchronize()
                times_ms.append(start.elapsed_time(end))
            else:
                t = time.perf_counter()
                last = step()
                times_ms.append((time.perf_counter() - t) * 1e3)
        fwd_ms, bwd_ms = timer.total_ms()
    if not torch.isfinite(last.detach()).item():
        raise RuntimeError(f"the loss is not finite ({last.item()})")
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    median = statistics.median(times_ms)
    q = statistics.quantiles(times_ms, n=5) if len(times_ms) > 1 else [median] * 4
    params = count_parameters(model)
    n_dense = p.layers if not lh else len(p.dense_layer_indices())
    flops = model_flops_per_step(
        params["non_embedding"], p.batch, n, p.heads, p.head_dim, n_dense, p.layers - n_dense, s_sel
    )
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    attention_ms = (fwd_ms + bwd_ms) / len(times_ms)
    return {
        "loss_impl": loss_fn.impl,
        "clip": opts.clip,
        "s_sel": s_sel,
        "params_total": params["total"],
        "params_non_embedding": params["non_embedding"],
        "steps": len(times_ms),
        "median_step_ms": median,
        "p20_step_ms": q[0],
        "p80_step_ms": q[-1],
        "tokens_per_s": p.batch * n / (median / 1e3),
        "first_step_s": first_step_s,
        "attention_ms": attention_ms,
        "attention_share": attention_ms / median,
        "peak_mem_gib": peak,
        "model_tflop_per_step": flops / 1e12,
        "mfu": mfu(flops, median, opts.peak_tflops or peak_tflops(device_name)),
    }
