"""Planted needles: the training-free counterpart of the paper's passkey test.

A needle is a pair (query i, key j = i - depth * i): k_j points along q_i with the median norm of the other
keys (so a score that looks only at magnitudes cannot find it by its size), v_j is a random direction with
the median norm of the other values (distinctive: nearly orthogonal to everything else), and |q_i| is set,
per needle, to the smallest value at which dense causal attention puts at least `target_mass` of query i's
probability on key j (so "dense retrieves it" holds by construction, and is tested).

depth = (i - j) / i: 0% is the token just before the query, 100% the first token of the sequence. The
10 depth buckets are [0, 10%), ..., [90%, 100%]; queries are spread over the second half of the sequence.
A needle is retrieved when the attention output at i has cosine >= 0.5 with v_j.
The same positions are used in every batch row and head; directions differ per (batch, head).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import torch

from ..harness.tables import QUALITY_BUCKETS

BUCKETS = 10
RETRIEVED_COSINE = 0.5
TARGET_MASS = 0.9
BUCKET_COLUMNS = QUALITY_BUCKETS  # the CSV columns, owned by results.py


@dataclass(frozen=True)
class Needles:
    """Positions of the planted pairs, shared by every (batch, head): query i, key j, depth (i - j) / i."""

    query: torch.Tensor  # (M,) long
    key: torch.Tensor  # (M,) long
    depth: torch.Tensor  # (M,) float64

    @property
    def bucket(self) -> torch.Tensor:
        """Depth bucket 0..9 of each needle (100% falls in the last one)."""
        return (self.depth * BUCKETS).floor().clamp(max=BUCKETS - 1).long()


def place_needles(n: int, per_bucket: int, seed: int = 0) -> Needles:
    """`per_bucket` needles per depth bucket in a sequence of n tokens, no position used twice.

    Query positions are drawn from [n/2, n), depths uniformly inside each bucket."""
    if n < 8 * BUCKETS * max(1, per_bucket):
        raise ValueError(f"needles: N={n} is too short for {per_bucket} needles per depth bucket")
    g = torch.Generator().manual_seed(seed)
    used, qs, ks, ds = set(), [], [], []
    for bucket in range(BUCKETS):
        placed = 0
        while placed < per_bucket:
            i = int(torch.randint(n // 2, n, (1,), generator=g))
            depth = (bucket + float(torch.rand((), generator=g))) / BUCKETS
            j = i - max(1, round(depth * i))
            if j < 0 or i in used or j in used:
                continue
            used.update((i, j))
            qs.append(i), ks.append(j), ds.append((i - j) / i)
            placed += 1
    return Needles(torch.tensor(qs), torch.tensor(ks), torch.tensor(ds, dtype=torch.float64))


def _unit(shape, g: torch.Generator, device) -> torch.Tensor:
    x = torch.randn(*shape, generator=g, dtype=torch.float32).to(device)
    return x / x.norm(dim=-1, keepdim=True)


@torch.no_grad()
def plant(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, needles: Needles, *, seed: int = 0,
          target_mass: float = TARGET_MASS) -> None:
    """Write the needles into q, k, v (SDPA layout, in place). Query heads of a GQA group share the
    direction of their kv head's needle key; |q_i| is found by bisection per (batch, query head, needle)."""
    b, hq, n, d = q.shape
    hkv = k.shape[1]
    group = hq // hkv
    g = torch.Generator().manual_seed(seed + 7919)
    i_pos, j_pos = needles.query.to(q.device), needles.key.to(q.device)
    m = i_pos.numel()
    key_norm = k.float().norm(dim=-1).median()
    value_norm = v.float().norm(dim=-1).median()
    u = _unit((b, hkv, m, d), g, q.device)
    k[:, :, j_pos] = (u * key_norm).to(k.dtype)
    v[:, :, j_pos] = (_unit((b, hkv, m, d), g, q.device) * value_norm).to(v.dtype)
    # projections of every key on every needle direction, with the keys as stored (rounded)
    proj = torch.matmul(u, k.float().transpose(-1, -2))  # (B, Hkv, M, N)
    own = proj.gather(-1, j_pos.view(1, 1, m, 1).expand(b, hkv, m, 1))
    causal = torch.arange(n, device=q.device)[None, :] <= i_pos[:, None]  # (M, N)
    others = causal.clone()
    others[torch.arange(m, device=q.device), j_pos] = False  # every key i may see except the needle itself
    gap = (proj - own) * others  # masked entries are 0 here and dropped below
    scale = d ** -0.5
    lo = torch.zeros(b, hkv, m, device=q.device)
    hi = torch.full((b, hkv, m), 1e4, device=q.device)

    def mass(s):  # dense probability of key j for a query s * u
        z = gap * (s * scale)[..., None]
        top = z.masked_fill(~others, -1e30).amax(-1, keepdim=True)
        rest = ((z - top).exp() * others).sum(-1).log() + top[..., 0]
        return torch.sigmoid(-rest)

    for _ in range(60):
        mid = (lo + hi) / 2
        ok = mass(mid) >= target_mass
        hi = torch.where(ok, mid, hi)
        lo = torch.where(ok, lo, mid)
    q_needle = (u * hi[..., None]).repeat_interleave(group, dim=1)
    q[:, :, i_pos] = q_needle.to(q.dtype)


def needle_hits(out: torch.Tensor, v: torch.Tensor, needles: Needles,
                threshold: float = RETRIEVED_COSINE) -> torch.Tensor:
    """(B, Hq, M) bool: cosine(out[b, h, i], v[b, h // group, j]) >= threshold."""
    group = out.shape[1] // v.shape[1]
    at_i = out[:, :, needles.query.to(out.device)].double()
    vj = v[:, :, needles.key.to(v.device)].double().repeat_interleave(group, dim=1)
    cos = (at_i * vj).sum(-1) / (at_i.norm(dim=-1) * vj.norm(dim=-1)).clamp(min=1e-300)
    return cos >= threshold


def recall_figures(hits: torch.Tensor, needles: Needles) -> Dict[str, Optional[float]]:
    """needle_recall (all needles) and recall_dXX per depth bucket; None for a bucket with no needle."""
    per_needle = hits.double().reshape(-1, hits.shape[-1]).mean(0).cpu()  # over batch and heads
    bucket = needles.bucket
    out: Dict[str, Optional[float]] = {"needle_recall": float(per_needle.mean())}
    for b, name in enumerate(BUCKET_COLUMNS):
        sel = bucket == b
        out[name] = float(per_needle[sel].mean()) if bool(sel.any()) else None
    return out
