"""What each RoPE placement is handed, and what dense attention sees, for one set of quality inputs.

A set holds q, k in one of two spaces (QualityInputs.rotated):

- position-free (`random`, `needle`): the q, k a Lighthouse layer is given, whatever its placement. `pre`
  reads them as already rotated, so dense attention sees them as they are; `post` reads them as the raw
  projections and rotates its selection, so dense attention sees them rotated at positions 0..N-1.
- rotated (`needle-rope`, `checkpoint:PATH`): q, k are the model's view, already rotated at positions 0..N-1.
  Dense attention sees them as they are and `pre` gets them; `post` gets them un-rotated (the raw projections)
  and rotates after selection.

The rotation is the one `post` applies (lighthouse.rope: the model's frequencies, dimension j paired with
j + D/2, the angle rounded to float32), computed in float64 and rounded once to q's dtype, so that `post`
rotating a raw row lands on the view up to that rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import LighthouseConfig
from ..rope import inverse_frequencies


@dataclass
class View:
    """q, k as the layer gets them, and as dense attention sees them (the dense reference and coverage)."""

    q: torch.Tensor
    k: torch.Tensor
    dense_q: torch.Tensor
    dense_k: torch.Tensor
    #: Which dense reference this view needs: "given" (the set's q, k) or "rotated" (them rotated).
    dense_key: str


def rotate_sequence(x: torch.Tensor, config: LighthouseConfig, *, inverse: bool = False) -> torch.Tensor:
    """x (B, H, N, D) rotated by the config's RoPE at positions 0..N-1 (`inverse`: turned back), in x's dtype."""
    n, d = x.shape[-2], x.shape[-1]
    inv_freq = inverse_frequencies(config, d).to(x.device)
    angle = (torch.arange(n, device=x.device, dtype=torch.float32)[:, None] * inv_freq).double()
    cos, sin = angle.cos(), angle.sin() * (-1.0 if inverse else 1.0)
    lo, hi = x.double().chunk(2, dim=-1)
    return torch.cat([lo * cos - hi * sin, hi * cos + lo * sin], dim=-1).to(x.dtype)


def view_for(q: torch.Tensor, k: torch.Tensor, rotated: bool, config: LighthouseConfig) -> View:
    """The View of a set's q, k (`rotated`: they are the model's rotated view) for the placement config.rope."""
    if config.rope == "pre":
        return View(q, k, q, k, "given")
    if rotated:
        return View(rotate_sequence(q, config, inverse=True), rotate_sequence(k, config, inverse=True), q, k, "given")
    return View(q, k, rotate_sequence(q, config), rotate_sequence(k, config), "rotated")
