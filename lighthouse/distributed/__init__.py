"""Context parallelism: Lighthouse attention on a sequence sharded across ranks, through torch.distributed.

`lighthouse.lighthouse_attention(q, k, v, cp_group=group, ...)` with each rank holding its contiguous,
tile-aligned shard (`shard_sequence` cuts one) returns the rank's rows of the single-device output.
"""

from .attention import (
    context_parallel_dense_attention,
    context_parallel_lighthouse_attention,
    context_parallel_select,
)
from .shard import expected_lengths, shard_bounds, shard_len, shard_sequence

__all__ = [
    "context_parallel_dense_attention",
    "context_parallel_lighthouse_attention",
    "context_parallel_select",
    "expected_lengths",
    "shard_bounds",
    "shard_len",
    "shard_sequence",
]
