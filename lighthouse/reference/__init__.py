"""The pure PyTorch implementation: the executable spec every kernel is tested against.

Readable first, vectorised over batch, heads and tiles, runs on any device, differentiable through
autograd exactly as LIGHTHOUSE_SPEC.md section 7 says (selection is a constant).
"""

from .attention import lighthouse_attention_torch, select_torch

__all__ = ["lighthouse_attention_torch", "select_torch"]
