"""The pure PyTorch implementation: the executable spec every kernel is tested against.

Readable first, vectorised over batch, heads and tiles, runs on any device, differentiable through
autograd exactly as LIGHTHOUSE_SPEC.md section 7 says (selection is a constant). One module per stage, the
same names as the Triton kernels' (`lighthouse.kernels`): scores, select, gather, scatter, and layer (the
whole call), so `reference/X.py` is the spec `kernels/X.py` is tested against.
"""

from .layer import lighthouse_attention_torch, select_torch

__all__ = ["lighthouse_attention_torch", "select_torch"]
