"""The collectives context parallelism needs, differentiable, on torch.distributed alone.

One all-to-all (`dist.all_to_all_single`: NCCL on GPUs, gloo on the CPU) moves the selected sub-sequence
from sequence sharding to head sharding and back; its adjoint is the same all-to-all with the roles of the
chunks swapped, so forward and backward each cost one collective per tensor.

Why a small autograd.Function of our own rather than a library one: `torch.distributed.nn.functional.
all_to_all_single` is deprecated from torch 2.13 on (FutureWarning), and the suggested replacement lives in
the private `torch.distributed._functional_collectives`. The Function below calls only the public,
stable `dist.all_to_all_single`, which every torch >= 2.5 has on both backends.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def resolve_group(group):
    """A ProcessGroup, or a 1-D DeviceMesh (its group), -> the ProcessGroup; clear errors otherwise."""
    if not dist.is_available() or not dist.is_initialized():
        raise ValueError(
            "cp_group needs torch.distributed to be initialised (torchrun + dist.init_process_group, "
            "backend 'nccl' on GPUs or 'gloo' on the CPU)"
        )
    try:
        from torch.distributed.device_mesh import DeviceMesh
    except ImportError:  # pragma: no cover - very old torch
        DeviceMesh = ()
    if isinstance(group, DeviceMesh):
        if group.ndim != 1:
            raise ValueError(
                f"cp_group must be a 1-D DeviceMesh (the context-parallel dimension, e.g. mesh['cp']), "
                f"got a {group.ndim}-D mesh with dimensions {group.mesh_dim_names}"
            )
        return group.get_group()
    if isinstance(group, dist.ProcessGroup):
        return group
    raise ValueError(
        f"cp_group must be a torch.distributed ProcessGroup or a 1-D DeviceMesh, got {type(group).__name__}"
    )


class _AllToAll(torch.autograd.Function):
    """Equal-split all-to-all along dim 0 (W chunks out, W chunks in); backward is the same exchange."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        x = x.contiguous()
        out = torch.empty_like(x)
        dist.all_to_all_single(out, x, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous()
        out = torch.empty_like(grad)
        dist.all_to_all_single(out, grad, group=ctx.group)
        return out, None


def all_to_all(x: torch.Tensor, group) -> torch.Tensor:
    """x (W, ...): chunk j goes to rank j; the result's chunk j came from rank j. Differentiable."""
    return _AllToAll.apply(x, group)


def sequence_to_heads(group, *xs: torch.Tensor):
    """(B, H_i, S/W, D) rows of this rank, all heads -> (B, H_i/W, S, D) all rows, this rank's heads.

    Several tensors (q, k, v) travel in ONE all-to-all: one collective instead of three, and a single
    node in the autograd graph, so every rank runs the backward exchanges in the same order."""
    world = dist.get_world_size(group)
    b, _, s_local, d = xs[0].shape
    heads = [x.shape[1] // world for x in xs]
    chunks = torch.cat([x.reshape(b, world, h, s_local, d).transpose(0, 1) for x, h in zip(xs, heads)], dim=2)
    got = all_to_all(chunks, group)  # (W, B, sum H_i/W, S/W, D); chunk j: rank j's rows of my heads
    full = got.permute(1, 2, 0, 3, 4).reshape(b, sum(heads), world * s_local, d)
    return full.split(heads, dim=1)


def heads_to_sequence(x: torch.Tensor, group) -> torch.Tensor:
    """The inverse of sequence_to_heads for one tensor: (B, H/W, S, D) -> (B, H, S/W, D)."""
    world = dist.get_world_size(group)
    b, h_local, s, d = x.shape
    chunks = x.reshape(b, h_local, world, s // world, d).permute(2, 0, 1, 3, 4)  # (W, B, H/W, S/W, D)
    got = all_to_all(chunks, group)  # chunk j: my rows of rank j's heads
    return got.transpose(0, 1).reshape(b, world * h_local, s // world, d)


def send_to_next(x: torch.Tensor, group) -> torch.Tensor:
    """Each rank's x goes to the next rank; rank 0 gets zeros. Differentiable (the gradient goes back).

    Written as an all-to-all in which every rank sends x to rank r+1 (the last rank to rank 0, which
    drops it): x is a handful of rows, so the zero chunks cost nothing, and every rank has the same
    autograd graph, hence the same backward collectives in the same order."""
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    zero = torch.zeros_like(x)
    chunks = torch.stack([x if j == (rank + 1) % world else zero for j in range(world)])
    got = all_to_all(chunks, group)[(rank - 1) % world]
    return got if rank > 0 else got * 0


def all_gather_ints(values, device, group) -> torch.Tensor:
    """A few integers of every rank, (W, len(values)) int64: the shapes each rank holds."""
    mine = torch.tensor(values, dtype=torch.int64, device=device)
    out = [torch.empty_like(mine) for _ in range(dist.get_world_size(group))]
    dist.all_gather(out, mine, group=group)
    return torch.stack(out).cpu()
