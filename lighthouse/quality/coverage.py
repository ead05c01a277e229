"""Coverage: the share of each query's dense attention mass on keys it sees at full resolution.

Definition (from LIGHTHOUSE_SPEC.md sections 4 and 6). Position t receives the output rows of the
sub-sequence entries (level l, entry i_l = (t + 1) // f_l - 1) that were emitted, at most one per level
(the scatter rule read backwards). Let R(t) be the latest sub-sequence position among those rows (none:
t receives nothing). Causal SDPA on the sub-sequence lets the row at R(t), and every earlier row of t,
attend to every sub-sequence entry at a position <= R(t). So t *sees token j at full resolution* when j
was emitted as a level-1 entry (a token, not a pooled span) at a sub-sequence position <= R(t); call that
set V(t) (it only holds tokens j <= t). Then

    coverage(t) = sum over j in V(t) of P_dense(t, j),   P_dense(t, j) = softmax_j(q_t . k_j / sqrt(D)), j <= t

and the reported figures are its mean over all (batch, query head, t) and its 10th percentile. A kv head's
selection is shared by the query heads of its group (GQA). Coverage is 1 when every token is emitted at
level 1; it says nothing about what the pooled entries add (that is what out_rel_err measures).

Computed without any N x N matrix: the level-1 entries are only k * p tokens per head, so the probabilities
exp(q_t . k_j / sqrt(D) - lse_t) are formed for those keys only, in query chunks, with the dense lse.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..plan import LighthousePlan
from .dense import DEFAULT_BLOCK_BYTES, query_chunk


def latest_source_row(indices: torch.Tensor, plan: LighthousePlan) -> torch.Tensor:
    """(B, Hkv, S) pyramid indices -> (B, Hkv, N): R(t), the latest sub-sequence position whose output
    row is scattered to position t, or -1 when t receives nothing."""
    b, h, s = indices.shape
    where = torch.full((b, h, plan.pyramid_len), -1, dtype=torch.long, device=indices.device)
    where.scatter_(-1, indices, torch.arange(s, device=indices.device).expand(b, h, s))
    t = torch.arange(plan.seq_len, device=indices.device)
    latest = torch.full((b, h, plan.seq_len), -1, dtype=torch.long, device=indices.device)
    for offset, span in zip(plan.offsets, plan.spans):
        entry = (t + 1) // span - 1
        rows = where[..., offset + entry.clamp(min=0)]
        latest = torch.maximum(latest, torch.where(entry >= 0, rows, -1))
    return latest


def full_resolution_tokens(indices: torch.Tensor, plan: LighthousePlan):
    """The level-1 entries of the sub-sequence per kv head: (tokens, positions), each (B, Hkv, k*p),
    ascending (the sub-sequence is in causal order). Padding tokens (>= N) are kept, flagged by the caller."""
    b, h, s = indices.shape
    is_token = indices < plan.level_sizes[0]
    count = int(is_token[0, 0].sum())
    positions = torch.arange(s, device=indices.device).expand(b, h, s)
    return indices[is_token].view(b, h, count), positions[is_token].view(b, h, count)


@torch.no_grad()
def coverage_per_query(
    q: torch.Tensor,
    k: torch.Tensor,
    lse: torch.Tensor,
    indices: torch.Tensor,
    plan: LighthousePlan,
    *,
    chunk: Optional[int] = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> torch.Tensor:
    """(B, Hq, N) float32 coverage(t) for q (B, Hq, N, D), k (B, Hkv, N, D), the dense lse (B, Hq, N) and
    the selection `indices` (B, Hkv, S) of `lighthouse.select` for the same q, k, v and configuration."""
    b, hq, n, d = q.shape
    group = hq // k.shape[1]
    tokens, positions = full_resolution_tokens(indices, plan)  # (B, Hkv, E)
    latest = latest_source_row(indices, plan)  # (B, Hkv, N)
    # |V(t)| = how many level-1 entries sit at a sub-sequence position <= R(t) (they are sorted)
    seen = torch.searchsorted(positions.contiguous(), latest.contiguous(), right=True)  # (B, Hkv, N)
    real = tokens < n
    keys = k.float().gather(2, tokens.clamp(max=n - 1)[..., None].expand(-1, -1, -1, d))
    if group > 1:
        keys, tokens, real, seen = (x.repeat_interleave(group, dim=1) for x in (keys, tokens, real, seen))
    e = tokens.shape[-1]
    rank = torch.arange(e, device=q.device)
    out = torch.empty(b, hq, n, dtype=torch.float32, device=q.device)
    step = chunk or query_chunk(b * hq, e, block_bytes)
    for start in range(0, n, step):
        end = min(n, start + step)
        scores = torch.matmul(q[:, :, start:end].float(), keys.transpose(-1, -2)).mul_(d**-0.5)
        t = torch.arange(start, end, device=q.device)
        visible = (rank < seen[:, :, start:end, None]) & real[:, :, None, :] & (tokens[:, :, None, :] <= t[:, None])
        # mask before exp: a future key's score may sit far above the lse (exp -> inf, inf * 0 -> NaN)
        probs = scores.sub_(lse[:, :, start:end, None]).masked_fill_(~visible, float("-inf")).exp_()
        out[:, :, start:end] = probs.sum(-1)
        del scores, probs, visible
    return out
