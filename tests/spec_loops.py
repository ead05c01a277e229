"""A literal, loop-by-loop reading of LIGHTHOUSE_SPEC.md sections 1-6 for tiny problems.

Independent of the library's code (no import from `lighthouse`): the scores (section 2) are computed here in
float64 from their definitions, selection uses Python sets, sorts and Fractions, the attention on the
sub-sequence is an explicit float64 softmax. Tests use it to cross-check configurations the golden vectors do
not cover (several tiles, odd pooling factors, GQA, padding, tied scores) and the scorers themselves.
"""

from __future__ import annotations

from fractions import Fraction

import torch


# ------------------------------------------------------------------------- section 2: token scores
def _group_max(per_query_head: torch.Tensor, hkv: int) -> torch.Tensor:
    """(B, Hq, N) -> (B, Hkv, N): a kv head's score is the max over the query heads of its group
    (query head h belongs to kv head h // (Hq / Hkv))."""
    b, hq, n = per_query_head.shape
    group = hq // hkv
    out = torch.empty(b, hkv, n, dtype=torch.float64)
    for h in range(hkv):
        out[:, h] = per_query_head[:, h * group].clone()
        for j in range(1, group):
            out[:, h] = torch.maximum(out[:, h], per_query_head[:, h * group + j])
    return out


def _kv_head(x: torch.Tensor, hq: int) -> torch.Tensor:
    """k or v (B, Hkv, N, D) seen from every query head: head h reads kv head h // group."""
    group = hq // x.shape[1]
    return torch.stack([x[:, h // group] for h in range(hq)], dim=1)


def norm_scores(q: torch.Tensor, k: torch.Tensor) -> tuple:
    """sq[t] = ||q_t|| (max over the group), sk[t] = ||k_t||, float64, (B, Hkv, N)."""
    sq = q.double().pow(2).sum(-1).sqrt()
    sk = k.double().pow(2).sum(-1).sqrt()
    return _group_max(sq, k.shape[1]), sk


def _causal_softmax_attention(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """softmax(a b^T / sqrt(D), causal) c for one head's (n, D) float64 rows."""
    logits = a @ b.T / a.shape[-1] ** 0.5
    n = a.shape[0]
    future = torch.ones(n, n, dtype=torch.bool).triu(1)
    return torch.softmax(logits.masked_fill(future, float("-inf")), dim=-1) @ c


def dilated_scores(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, d: int) -> tuple:
    """Spec section 2, `dilated`: per query head and offset o, causal softmax attention over the strided
    tokens o, o+d, ... as attn(Q, K, V) (sq) and attn(K, Q, V) (sk); norms, then the group max."""
    b, hq, n, _ = q.shape
    kq, vq = _kv_head(k, hq).double(), _kv_head(v, hq).double()
    q = q.double()
    sq = torch.empty(b, hq, n, dtype=torch.float64)
    sk = torch.empty(b, hq, n, dtype=torch.float64)
    for bi in range(b):
        for h in range(hq):
            for o in range(d):
                t = torch.arange(o, n, d)
                sq[bi, h, t] = _causal_softmax_attention(q[bi, h, t], kq[bi, h, t], vq[bi, h, t]).norm(dim=-1)
                sk[bi, h, t] = _causal_softmax_attention(kq[bi, h, t], q[bi, h, t], vq[bi, h, t]).norm(dim=-1)
    return _group_max(sq, k.shape[1]), _group_max(sk, k.shape[1])


def gla_parallel(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, log_gate: torch.Tensor) -> torch.Tensor:
    """Simple GLA, parallel form, one head: o_t = D^-1/2 * sum_{s<=t} exp(G_t - G_s) (a_t . b_s) c_s with
    G the running sum of the log-gate (float64, (n, D) rows)."""
    cum = log_gate.double().cumsum(0)
    decay = torch.exp(cum[:, None] - cum[None, :]).tril()
    return ((a @ b.T) * decay) @ c / a.shape[-1] ** 0.5


def gla_recurrent(q, k, v, g, scale, **_):
    """Simple GLA, recurrent form, in fla's calling convention ((B, T, H, D), g (B, T, H)):
    S_t = exp(g_t) S_{t-1} + k_t^T v_t, o_t = scale * q_t S_t. Returns (o, final state) like fla."""
    b, t_len, h, d = q.shape
    state = torch.zeros(b, h, d, v.shape[-1], dtype=torch.float64)
    out = torch.empty(b, t_len, h, v.shape[-1], dtype=torch.float64)
    for t in range(t_len):
        state = (
            torch.exp(g[:, t].double())[..., None, None] * state
            + k[:, t].double()[..., :, None] * v[:, t].double()[..., None, :]
        )
        out[:, t] = scale * torch.einsum("bhd,bhde->bhe", q[:, t].double(), state)
    return out.to(q.dtype), state


def gla_scores(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gate: torch.Tensor) -> tuple:
    """Spec section 2, `gla`: norms of GLA(Q, K, V) (sq) and GLA(K, Q, V) (sk) per query head with its
    log-gate (B, Hq, N), then the group max."""
    b, hq, n, _ = q.shape
    kq, vq = _kv_head(k, hq).double(), _kv_head(v, hq).double()
    q = q.double()
    sq = torch.empty(b, hq, n, dtype=torch.float64)
    sk = torch.empty(b, hq, n, dtype=torch.float64)
    for bi in range(b):
        for h in range(hq):
            sq[bi, h] = gla_parallel(q[bi, h], kq[bi, h], vq[bi, h], gate[bi, h]).norm(dim=-1)
            sk[bi, h] = gla_parallel(kq[bi, h], q[bi, h], vq[bi, h], gate[bi, h]).norm(dim=-1)
    return _group_max(sq, k.shape[1]), _group_max(sk, k.shape[1])


def padded(scores: torch.Tensor, n_pad: int) -> torch.Tensor:
    """Token scores (B, H, N) extended to N_pad with -inf (padded tokens never outrank a real one)."""
    tail = torch.full((*scores.shape[:-1], n_pad - scores.shape[-1]), float("-inf"), dtype=scores.dtype)
    return torch.cat([scores, tail], dim=-1)


# ----------------------------------------------------------------------- sections 3 and 4: selection
def level_scores(tok: torch.Tensor, f: int) -> list:
    """Max-pool one head's token scores over spans of f tokens."""
    return [max(tok[i * f : (i + 1) * f].tolist()) for i in range(len(tok) // f)]


def top_by(scores: list, cands: list, count: int, exclude=()) -> list:
    """`count` candidates with the largest score, ties to the lower index."""
    pool = [c for c in cands if c not in exclude]
    return sorted(pool, key=lambda c: (-scores[c], c))[:count]


def select_loops(sq_tok: torch.Tensor, sk_tok: torch.Tensor, n: int, levels: int, p: int, topk: int) -> list:
    """One (batch, head): the emitted (level, index) entries in causal order, spec sections 3 and 4."""
    tiles = topk // 128
    n_l = [n // p**lv for lv in range(levels)]
    chunk = n_l[-1] // tiles
    sq = [level_scores(sq_tok, p**lv) for lv in range(levels)]
    sk = [level_scores(sk_tok, p**lv) for lv in range(levels)]
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
    return sum(n // p**j for j in range(level - 1)) + i


def scatter_loops(out_sub: torch.Tensor, entries: list, n_real: int, p: int) -> torch.Tensor:
    """Spec section 6 as written: row of entry (l, i) added to positions [i f + f - 1, i f + 2f - 2] < N."""
    out = torch.zeros(n_real, out_sub.shape[-1], dtype=torch.float64)
    for row, (level, i) in enumerate(entries):
        f = p ** (level - 1)
        for t in range(i * f + f - 1, min(i * f + 2 * f - 1, n_real)):
            out[t] += out_sub[row].double()
    return out


# ----------------------------------------------------------------- sections 1, 5, 6: the whole layer
def pooled_row(x: torch.Tensor, level: int, i: int, p: int) -> torch.Tensor:
    """Spec section 1 on one (N, D) head: the mean of tokens [i f, (i+1) f), zeros past the end (padding)."""
    f = p ** (level - 1)
    rows = x[i * f : (i + 1) * f].double()
    return torch.cat([rows, torch.zeros(f - rows.shape[0], x.shape[-1], dtype=torch.float64)]).mean(0)


def attention_loops(q, k, v, levels: int, p: int, topk: int, n_pad: int, sq=None, sk=None):
    """The whole layer for (B, Hq, N, D) inputs from the spec alone (float64): norm scores unless sq, sk
    (B, Hkv, N) are given, selection per (batch, kv head), pooled rows gathered one by one, explicit causal
    softmax on the sub-sequence, scatter as in section 6. Returns (entries[b][kv head], out)."""
    b, hq, n, d = q.shape
    hkv = k.shape[1]
    group = hq // hkv
    if sq is None:
        sq, sk = norm_scores(q, k)
    sq, sk = padded(sq, n_pad), padded(sk, n_pad)
    entries = [[select_loops(sq[bi, h], sk[bi, h], n_pad, levels, p, topk) for h in range(hkv)] for bi in range(b)]
    out = torch.zeros(b, hq, n, d, dtype=torch.float64)
    for bi in range(b):
        for h in range(hq):
            sel = entries[bi][h // group]
            rows = [
                [pooled_row(x[bi, hh], level, i, p) for level, i in sel]
                for x, hh in ((q, h), (k, h // group), (v, h // group))
            ]
            qs, ks, vs = (torch.stack(r) for r in rows)
            out[bi, h] = scatter_loops(_causal_softmax_attention(qs, ks, vs), sel, n, p)
    return entries, out
