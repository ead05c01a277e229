"""Planted needles: the training-free counterpart of the paper's passkey test.

A needle is a pair (query i, key j = i - depth * i): k_j points along q_i with the median norm of the other
keys (so a score that looks only at magnitudes cannot find it by its size), v_j is a random direction with
the median norm of the other values (distinctive: nearly orthogonal to everything else), and |q_i| is set,
per needle, to the smallest value at which dense causal attention puts at least `target_mass` of query i's
probability on key j (so "dense retrieves it" holds by construction, and is tested). That norm exists only
when k_j projects further along q_i's direction than every other key i sees; a direction where it does not
(common at small D and long N) is re-drawn, and `plant` raises UnreachableNeedles when re-drawing fails.

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
#: Draws of a needle direction before `plant` gives up on an unreachable needle.
MAX_DRAWS = 200
BISECTION_STEPS = 64
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


def _causal_others(n: int, i_pos: torch.Tensor, j_pos: torch.Tensor) -> torch.Tensor:
    """(M, N) bool: the keys query i sees (causal), without the needle key j."""
    others = torch.arange(n, device=i_pos.device)[None, :] <= i_pos[:, None]
    others[torch.arange(i_pos.numel(), device=i_pos.device), j_pos] = False
    return others


def _mass_on_needle(
    query: torch.Tensor, keys: torch.Tensor, others: torch.Tensor, j_pos: torch.Tensor, scale: float
) -> torch.Tensor:
    """(B, Hkv, M) dense probability of key j for the needle queries (B, Hkv, M, D), keys (B, Hkv, N, D),
    both float64: 1 / (1 + sum_o exp(score_o - score_j)), from a masked logsumexp, so no score is ever
    exponentiated on its own (masked keys are -inf, never inf * 0)."""
    b, h, m, _ = query.shape
    scores = torch.matmul(query, keys.transpose(-1, -2)) * scale  # (B, Hkv, M, N)
    own = scores.gather(-1, j_pos.view(1, 1, m, 1).expand(b, h, m, 1))
    rest = torch.logsumexp((scores - own).masked_fill(~others, float("-inf")), dim=-1)
    return torch.sigmoid(-rest)


class UnreachableNeedles(ValueError):
    """Some needle's key cannot get `target_mass` of its query's dense attention at any query norm."""


@torch.no_grad()
def plant(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    needles: Needles,
    *,
    seed: int = 0,
    target_mass: float = TARGET_MASS,
    max_draws: int = MAX_DRAWS,
) -> None:
    """Write the needles into q, k, v (SDPA layout, in place). Query heads of a GQA group share the
    direction of their kv head's needle key; |q_i| is found by bisection per (batch, kv head, needle).

    A needle is reachable only when k_j projects further along its direction u than every other key that
    i sees: one competitor at or beyond k_j keeps j's probability <= 1/2 at every norm (small D and long N
    make this common). Unreachable directions are re-drawn, at most `max_draws` draws in all; then
    UnreachableNeedles (a ValueError, so a quality run records the rows as invalid with this reason)."""
    if not 0.5 < target_mass < 1:
        raise ValueError(f"needles: target_mass={target_mass} must be in (0.5, 1)")
    b, hq, n, d = q.shape
    hkv = k.shape[1]
    group = hq // hkv
    g = torch.Generator().manual_seed(seed + 7919)
    i_pos, j_pos = needles.query.to(q.device), needles.key.to(q.device)
    m = i_pos.numel()
    key_norm = k.float().norm(dim=-1).median()
    value_norm = v.float().norm(dim=-1).median()
    u = _unit((b, hkv, m, d), g, q.device)
    v[:, :, j_pos] = (_unit((b, hkv, m, d), g, q.device) * value_norm).to(v.dtype)
    others = _causal_others(n, i_pos, j_pos)
    for _ in range(max_draws):
        k[:, :, j_pos] = (u * key_norm).to(k.dtype)
        keys = k.double()  # as stored (rounded)
        # every competitor's lead over k_j along u; a re-drawn k_j also moves the competitors of every later
        # needle, so every needle is checked again
        proj = torch.matmul(u.double(), keys.transpose(-1, -2))  # (B, Hkv, M, N)
        own = proj.gather(-1, j_pos.view(1, 1, m, 1).expand(b, hkv, m, 1))[..., 0]
        worst = proj.masked_fill(~others, float("-inf")).amax(-1) - own  # (B, Hkv, M)
        unreachable = worst >= 0
        if not bool(unreachable.any()):
            break
        u = torch.where(unreachable[..., None], _unit((b, hkv, m, d), g, q.device), u)
    else:
        raise UnreachableNeedles(
            f"needles: {int(unreachable.sum())} of {unreachable.numel()} needles (batch x kv heads x needles) "
            f"still unreachable after {max_draws} draws at N={n}, head_dim={d}: another key that query i sees "
            f"projects as far along the needle direction as k_j (median key norm), so no query norm puts "
            f"{target_mass:g} of dense attention on it; use a larger head_dim or a shorter N"
        )
    del proj
    scale = d**-0.5
    # the mass rises from 1 / (1 + competitors) at norm 0 towards 1; every competitor is at least -worst below
    # k_j along u, so at norm log(competitors * t / (1 - t)) / (scale * -worst) it is >= t (twice that for
    # the rounding of the stored query)
    competitors = others.sum(-1).double()  # (M,)
    lo = torch.zeros(b, hkv, m, dtype=torch.float64, device=q.device)
    hi = 2 * torch.log(competitors * target_mass / (1 - target_mass)) / (scale * -worst)

    def stored(norm):  # the needle queries as q will hold them
        return (u * norm[..., None]).to(q.dtype).double()

    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        ok = _mass_on_needle(stored(mid), keys, others, j_pos, scale) >= target_mass
        hi = torch.where(ok, mid, hi)
        lo = torch.where(ok, lo, mid)
    missed = ~(_mass_on_needle(stored(hi), keys, others, j_pos, scale) >= target_mass)  # NaN counts as missed
    if bool(missed.any()):  # a norm too large for q's dtype (fp16 overflows past 65504)
        raise UnreachableNeedles(
            f"needles: {int(missed.sum())} of {missed.numel()} needles need a query norm that {q.dtype} cannot "
            f"hold to put {target_mass:g} of dense attention on k_j (largest bound {float(hi.max()):.3g}) at "
            f"N={n}, head_dim={d}; use bf16 or fp32"
        )
    q[:, :, i_pos] = stored(hi).repeat_interleave(group, dim=1).to(q.dtype)


def needle_hits(
    out: torch.Tensor, v: torch.Tensor, needles: Needles, threshold: float = RETRIEVED_COSINE
) -> torch.Tensor:
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
