"""Stage gather, spec section 1: mean-pool Q, K, V into the L-level pyramid (concatenated along the sequence)
and take the selected rows of it."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..plan import LighthousePlan


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half types, the dtype itself for float32/float64."""
    return torch.promote_types(dtype, torch.float32)


def pad_sequence(x: torch.Tensor, plan: LighthousePlan) -> torch.Tensor:
    """Zero-pad (B, H, N, D) to N_pad; the padded tail never reaches a real token's output (causal)."""
    pad = plan.padded_len - plan.seq_len
    return F.pad(x, (0, 0, 0, pad)) if pad else x


def pyramid(x: torch.Tensor, plan: LighthousePlan) -> torch.Tensor:
    """(B, H, N_pad, D) -> (B, H, sum n_l, D): level l entry i = mean(x[i*f_l : (i+1)*f_l]).

    Means accumulate in at least float32 and are rounded once to x's dtype.
    """
    b, h, n, d = x.shape
    xf = x.to(accumulation_dtype(x.dtype))
    levels = [x] + [xf.view(b, h, n // f, f, d).mean(dim=3).to(x.dtype) for f in plan.spans[1:]]
    return torch.cat(levels, dim=2)


def gather_entries(x: torch.Tensor, indices: torch.Tensor, plan: LighthousePlan, group: int) -> torch.Tensor:
    """Pooled rows of x at the selected pyramid indices: (B, H, S, D); kv indices shared by `group` heads."""
    pyr = pyramid(pad_sequence(x, plan), plan)
    idx = indices.repeat_interleave(group, dim=1) if group > 1 else indices
    return pyr.gather(2, idx[..., None].expand(-1, -1, -1, x.shape[-1]))
