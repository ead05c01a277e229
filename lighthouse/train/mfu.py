"""Model FLOPs utilisation of a training step: the FLOPs the model needs, over the step time, over the peak.

model FLOPs per step = 6 * P_nonembedding * tokens + sum over layers of causal attention forward+backward,
where P_nonembedding counts every parameter except the input embedding table (the LM head is a matmul on every
token and counts), tokens = batch * N, and a layer's attention is dense causal attention over N tokens for a
dense layer and over its S selected entries for a Lighthouse layer (lighthouse.harness.flops: 2*B*Hq*n^2*D
forward, x3.5 forward+backward). Recomputation under activation checkpointing and Lighthouse's linear-time
scoring/gather/scatter are not model FLOPs (they are the price of the method, visible in the step time).

Peak: the datasheet dense bf16 tensor-core TFLOP/s of the GPU (no sparsity), or --peak-tflops. On a CPU or an
unknown GPU the MFU is left empty.
"""

from __future__ import annotations

from typing import Optional

from ..harness.flops import causal_attention_flops

#: Dense bf16 TFLOP/s (datasheet, without sparsity), matched against the device name, first match wins.
BF16_PEAK_TFLOPS = (
    ("GB200", 2500.0),
    ("B200", 2250.0),
    ("H200", 989.4),
    ("H100", 989.4),
    ("H800", 989.4),
    ("GH200", 989.4),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("A10G", 70.0),
)


def peak_tflops(device_name: Optional[str]) -> Optional[float]:
    if not device_name:
        return None
    for key, value in BF16_PEAK_TFLOPS:
        if key in device_name:
            return value
    return None


def model_flops_per_step(
    non_embedding_params: int,
    batch: int,
    seq: int,
    heads: int,
    head_dim: int,
    dense_layers: int,
    lighthouse_layers: int,
    selected_len: Optional[int],
) -> float:
    """The formula of the module docstring; selected_len is S (unused when there are no Lighthouse layers)."""
    tokens = batch * seq
    linear = 6.0 * non_embedding_params * tokens
    attention = dense_layers * causal_attention_flops(seq, batch, heads, head_dim, "fwdbwd")
    if lighthouse_layers:
        attention += lighthouse_layers * causal_attention_flops(selected_len, batch, heads, head_dim, "fwdbwd")
    return linear + attention


def mfu(flops_per_step: float, step_ms: Optional[float], peak: Optional[float]) -> Optional[float]:
    if step_ms is None or not step_ms > 0 or not peak:
        return None
    return flops_per_step / (step_ms * 1e-3) / (peak * 1e12)
