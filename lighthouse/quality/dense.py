"""The dense causal reference, computed in query chunks so that it runs at N = 128K.

Each chunk of queries [a, b) is scored against its causal prefix keys [0, b) in float32, so the largest
temporary is (B, H, chunk, N) and never N x N. Besides the output this returns the per-query log-sum-exp
of the scaled scores, which turns any later score q_t . k_j / sqrt(D) into the dense attention probability
exp(score - lse_t) without recomputing the whole row (that is how coverage is measured).

Written here rather than taken from SDPA because no public SDPA entry point returns the log-sum-exp.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..sdpa import repeat_kv

#: Largest float32 score block per chunk (bytes); the chunk length follows from it.
DEFAULT_BLOCK_BYTES = 1 << 30


@dataclass
class DenseReference:
    """Dense causal attention of (q, k, v) in float32: out (B, Hq, N, D) and lse (B, Hq, N)."""

    out: torch.Tensor
    lse: torch.Tensor


def query_chunk(rows: int, keys: int, block_bytes: int = DEFAULT_BLOCK_BYTES) -> int:
    """Queries per chunk so that one (rows, chunk, keys) float32 block stays within block_bytes."""
    return max(1, block_bytes // (4 * max(1, rows) * max(1, keys)))


@torch.no_grad()
def dense_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    chunk: Optional[int] = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> DenseReference:
    """softmax(q k^T / sqrt(D) + causal mask) v in float32, chunked over queries; GQA kv heads repeated.

    q (B, Hq, N, D); k, v (B, Hkv, N, D) with Hq a multiple of Hkv, any float dtype (upcast once).
    """
    b, hq, n, d = q.shape
    group = hq // k.shape[1]
    scale = d**-0.5
    qf = q.float()
    kf, vf = repeat_kv(k.float(), group), repeat_kv(v.float(), group)
    out = torch.empty(b, hq, n, d, dtype=torch.float32, device=q.device)
    lse = torch.empty(b, hq, n, dtype=torch.float32, device=q.device)
    step = chunk or query_chunk(b * hq, n, block_bytes)
    keys = torch.arange(n, device=q.device)
    for start in range(0, n, step):
        end = min(n, start + step)
        scores = torch.matmul(qf[:, :, start:end], kf[:, :, :end].transpose(-1, -2)).mul_(scale)
        future = keys[None, :end] > torch.arange(start, end, device=q.device)[:, None]
        scores.masked_fill_(future, float("-inf"))
        row_lse = torch.logsumexp(scores, dim=-1)
        probs = scores.sub_(row_lse[..., None]).exp_()
        out[:, :, start:end] = torch.matmul(probs, vf[:, :, :end])
        lse[:, :, start:end] = row_lse
        del scores, probs
    return DenseReference(out, lse)
