"""RoPE after selection (LIGHTHOUSE_SPEC.md section 5a) written out plainly, for tests; no import from `lighthouse`.

Given the selection (pyramid indices, from `lighthouse.select` on the raw q, k), this materialises the pyramid
level by level, takes each selected row, rotates it with a plain RoPE at the position of the last token its
entry covers, runs causal softmax attention in float64 and scatters every output row to its fan-out range.
Differentiable (autograd), so tests compare gradients through it too.
"""

from __future__ import annotations

import math

import torch

#: A llama3 RoPE scaling small enough that short test sequences cross its wavelength bands.
LLAMA3 = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 64,
}


def plain_inv_freq(d: int, theta: float, scaling: dict | None = None) -> torch.Tensor:
    """RoPE frequencies as the RoPE paper (and transformers, in float32) define them: theta**(-2j/D)."""
    j = torch.arange(d // 2, dtype=torch.float32)
    w = (1.0 / torch.tensor(theta, dtype=torch.float32) ** (2 * j / d)).float()
    if scaling and scaling["rope_type"] == "linear":
        w = w / scaling["factor"]
    elif scaling and scaling["rope_type"] == "llama3":
        out = []
        ctx, lo, hi, fac = (
            scaling[x] for x in ("original_max_position_embeddings", "low_freq_factor", "high_freq_factor", "factor")
        )
        for wj in w.tolist():
            wavelen = 2 * math.pi / wj
            if wavelen < ctx / hi:
                out.append(wj)
            elif wavelen > ctx / lo:
                out.append(wj / fac)
            else:
                s = (ctx / wavelen - lo) / (hi - lo)
                out.append((1 - s) * wj / fac + s * wj)
        w = torch.tensor(out, dtype=torch.float32)
    return w


def plain_rope(rows: torch.Tensor, pos: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """rows (R, D) float64 rotated at pos (R,): pair (j, j + D/2) turns by pos * inv_freq[j] (the angle
    rounded to float32, as a float32 model computes it)."""
    angle = (pos.to(torch.float32)[:, None] * inv_freq[None, :]).double()
    half = rows.shape[-1] // 2
    a, b = rows[:, :half], rows[:, half:]
    return torch.cat([a * angle.cos() - b * angle.sin(), b * angle.cos() + a * angle.sin()], dim=-1)


def level_of(index: int, n_pad: int, levels: int, p: int):
    """Pyramid index -> (1-based level, entry i, span f)."""
    start = 0
    for level in range(1, levels + 1):
        f = p ** (level - 1)
        n = n_pad // f
        if index < start + n:
            return level, index - start, f
        start += n
    raise IndexError(index)


def last_positions(indices_row, n: int, n_pad: int, levels: int, p: int) -> list:
    """The last token each selected entry covers, (i + 1) * f - 1 (held at N - 1 inside the padding)."""
    out = []
    for index in indices_row:
        _, i, f = level_of(int(index), n_pad, levels, p)
        out.append(min((i + 1) * f - 1, n - 1))
    return out


def post_attention(
    q,
    k,
    v,
    indices,
    levels: int,
    p: int,
    n_pad: int,
    theta: float = 10000.0,
    scaling: dict | None = None,
    positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """Lighthouse with rope='post' on a fixed selection: (B, Hq, N, D) float64 output."""
    b, hq, n, d = q.shape
    hkv = k.shape[1]
    group = hq // hkv
    inv_freq = plain_inv_freq(d, theta, scaling)
    if positions is None:
        positions = torch.arange(n)[None].expand(b, n)
    positions = positions.expand(b, n)
    pad = lambda x: torch.cat([x.double(), x.new_zeros(*x.shape[:2], n_pad - n, d).double()], dim=2)  # noqa: E731
    q, k, v = pad(q), pad(k), pad(v)
    out = torch.zeros(b, hq, n, d, dtype=torch.float64)
    for bi in range(b):
        for h in range(hq):
            kv = h // group
            idx = indices[bi, kv].tolist()
            pyramids = {}
            for name, x in (("q", q[bi, h]), ("k", k[bi, kv]), ("v", v[bi, kv])):
                pyramids[name] = [x.view(n_pad // p**l, p**l, d).mean(1) for l in range(levels)]  # noqa: E741
            rows = {
                name: torch.stack(
                    [pyr[level_of(j, n_pad, levels, p)[0] - 1][level_of(j, n_pad, levels, p)[1]] for j in idx]
                )
                for name, pyr in pyramids.items()
            }
            pos = positions[bi][torch.tensor(last_positions(idx, n, n_pad, levels, p))]
            qs, ks, vs = plain_rope(rows["q"], pos, inv_freq), plain_rope(rows["k"], pos, inv_freq), rows["v"]
            s = len(idx)
            logits = (qs @ ks.T) / math.sqrt(d)
            logits = logits.masked_fill(torch.ones(s, s, dtype=torch.bool).triu(1), float("-inf"))
            out_sub = torch.softmax(logits, dim=-1) @ vs
            fan = torch.zeros(n, s, dtype=torch.float64)  # spec section 6: row of (l, i) -> [i f + f - 1, i f + 2f - 2]
            for r, j in enumerate(idx):
                _, i, f = level_of(j, n_pad, levels, p)
                fan[i * f + f - 1 : min(i * f + 2 * f - 1, n), r] = 1.0
            out[bi, h] = fan @ out_sub
    return out
