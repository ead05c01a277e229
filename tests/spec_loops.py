"""A literal, loop-by-loop reading of LIGHTHOUSE_SPEC.md sections 3, 4 and 6 for tiny problems.

Independent of the library's vectorised code (Python sets, Fractions, explicit loops), so tests can
cross-check configurations the golden vectors do not cover: several tiles, odd pooling factors, GQA.
"""

from __future__ import annotations

from fractions import Fraction

import torch


def level_scores(tok: torch.Tensor, f: int) -> list:
    """Max-pool one head's token scores over spans of f tokens."""
    return [max(tok[i * f:(i + 1) * f].tolist()) for i in range(len(tok) // f)]


def top_by(scores: list, cands: list, count: int, exclude=()) -> list:
    """`count` candidates with the largest score, ties to the lower index."""
    pool = [c for c in cands if c not in exclude]
    return sorted(pool, key=lambda c: (-scores[c], c))[:count]


def select_loops(sq_tok: torch.Tensor, sk_tok: torch.Tensor, n: int, levels: int, p: int, topk: int) -> list:
    """One (batch, head): the emitted (level, index) entries in causal order, spec sections 3 and 4."""
    tiles = topk // 128
    n_l = [n // p ** l for l in range(levels)]
    chunk = n_l[-1] // tiles
    sq = [level_scores(sq_tok, p ** l) for l in range(levels)]
    sk = [level_scores(sk_tok, p ** l) for l in range(levels)]
    emitted = []  # (key, level, index)
    for t in range(tiles):
        cands = list(range(t * chunk, (t + 1) * chunk))
        for level in range(levels, 1, -1):
            f = p ** (level - 1)
            s_q = top_by(sq[level - 1], cands, 64)
            s_k = top_by(sk[level - 1], cands, 64, exclude=set(s_q))
            refined = set(s_q) | set(s_k)
            for i in cands:
                key = Fraction((i + 1) * f) - Fraction(1, 2 ** (level - 1)) if i in refined else Fraction(i * f)
                emitted.append((key, level, i))
            cands = sorted(p * i + j for i in refined for j in range(p))
        emitted.extend((Fraction(i), 1, i) for i in cands)
    emitted.sort()
    assert len({e[0] for e in emitted}) == len(emitted), "position keys must never tie"
    return [(level, i) for _, level, i in emitted]


def pyramid_index(level: int, i: int, n: int, p: int) -> int:
    return sum(n // p ** j for j in range(level - 1)) + i


def scatter_loops(out_sub: torch.Tensor, entries: list, n_real: int, p: int) -> torch.Tensor:
    """Spec section 6 as written: row of entry (l, i) added to positions [i f + f - 1, i f + 2f - 2] < N."""
    out = torch.zeros(n_real, out_sub.shape[-1], dtype=torch.float64)
    for row, (level, i) in enumerate(entries):
        f = p ** (level - 1)
        for t in range(i * f + f - 1, min(i * f + 2 * f - 1, n_real)):
            out[t] += out_sub[row].double()
    return out
