"""Lighthouse attention (arXiv 2605.06554): sub-quadratic causal attention for long-context training.

Pool Q, K, V into an L-level pyramid, select k entries per level with parameter-free scores, run dense
causal SDPA on the short mixed-resolution sub-sequence and scatter the result back.
"""

from .attention import lighthouse_attention, select
from .config import LighthouseConfig
from .module import LighthouseAttention

__all__ = ["LighthouseAttention", "LighthouseConfig", "lighthouse_attention", "select"]
__version__ = "0.1.0"
