"""Lighthouse attention on a sequence sharded across the ranks of a process group (context parallelism).

Per rank (contiguous, tile-aligned shards: see shard.py):

  local   pyramid, norm scores, selection of the rank's whole tiles, gather   -> sub-sequence rows S/W
  a2a     sub-sequence q, k, v: sequence-sharded -> head-sharded (all S rows, H/W heads)
  SDPA    stock causal SDPA on (B, H/W, S, D): every rank the same work
  a2a     output back: head-sharded -> sequence-sharded (the rank's S/W rows, all heads)
  halo    each rank's last entry of every level >= 2 fans out into the first p**(l-1) - 1 tokens of the
          next rank (the scatter is shifted for causality): L-1 rows per head go to rank r+1
  local   scatter back (pull) into the rank's tokens

The tiles of a rank form a contiguous block of the causal sub-sequence (keys never leave their tile), so
the rank's sub-sequence rows are exactly rows [r*S/W, (r+1)*S/W) of the single-device sub-sequence and
the head-parallel SDPA sees the same S x S problem. Why this exchange and not all-to-all of q, k, v
(Ulysses on the whole sequence) or ring attention: see docs/context-parallel.md: it moves the
sub-sequence (S = N/p**(L-1) + (L-1)*p*k rows, about N/10 at 1M tokens) instead of the N-row inputs.

Gradients: the exchanges are differentiable all-to-alls (comm.py), so backward is the transposed exchange
in reverse order. The local stages are the PyTorch reference (impl="torch", plain autograd) or the Triton
kernels' stage functions (impl="triton": selection, fused gather and pull, wrapped in triton_stages.py).
"""

from __future__ import annotations

from typing import Optional

import torch

from ..config import LighthouseConfig
from ..plan import FLOAT_DTYPES, LighthousePlan, make_plan
from ..reference.gather import accumulation_dtype, gather_entries
from ..reference.layer import select_torch
from ..reference.rope import entry_positions, rotate
from ..rope import positions_for
from ..reference.scatter import inverse_map, source_positions
from ..sdpa import causal_sdpa, repeat_kv
from .comm import all_gather_ints, heads_to_sequence, resolve_group, send_to_next, sequence_to_heads
from .shard import expected_lengths, shard_len

import torch.distributed as dist


def _local_problem(q, k, v) -> Optional[str]:
    """What is wrong with this rank's own tensors, before anything is exchanged (None when fine)."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            return f"{name} must be a torch.Tensor, got {type(t).__name__}"
        if t.dim() != 4:
            return f"{name} must have 4 dimensions (B, H, N/W, D), got shape {tuple(t.shape)}"
        if t.dtype not in FLOAT_DTYPES:
            return f"{name} must be float16, bfloat16, float32 or float64, got {t.dtype}"
    if k.dtype != q.dtype or v.dtype != q.dtype or k.device != q.device or v.device != q.device:
        return (
            f"q, k, v must share one dtype and device, got {q.dtype}/{q.device}, {k.dtype}/{k.device}, "
            f"{v.dtype}/{v.device}"
        )
    if k.shape != v.shape or k.shape[0] != q.shape[0] or k.shape[2] != q.shape[2] or k.shape[3] != q.shape[3]:
        return f"k and v shapes {tuple(k.shape)}, {tuple(v.shape)} do not match q {tuple(q.shape)} in B, N/W or D"
    return None


def _collective_device(q: torch.Tensor, group) -> torch.device:
    """gloo exchanges CPU tensors, NCCL CUDA tensors: the shape handshake goes where the backend wants it."""
    return torch.device("cpu") if dist.get_backend(group) == "gloo" else q.device


def shard_plan(q, k, v, group, config: LighthouseConfig, gate=None):
    """Validate the sharded call on every rank alike and size the rank's local problem.

    Returns (group, rank, world, local plan, global plan). Every rank raises the same error for a bad
    call (the shapes are exchanged first), so a bad shard never leaves the other ranks in a collective.
    """
    if config.scorer != "norm":
        raise ValueError(
            f"scorer={config.scorer!r} is not supported with cp_group: its scores need attention over the whole "
            f"sequence, not the rank's shard; context parallelism supports scorer='norm'"
        )
    if gate is not None:
        raise ValueError("gate= is only used by scorer='gla', which context parallelism does not support")
    group = resolve_group(group)
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    problem = _local_problem(q, k, v)
    dims = [0] * 5 if problem else [q.shape[2], q.shape[0], q.shape[1], k.shape[1], q.shape[3]]
    table = all_gather_ints([int(problem is None)] + dims, _collective_device(q, group), group)
    if problem:
        raise ValueError(f"cp_group rank {rank}: {problem}")
    bad = [r for r in range(world) if not table[r, 0]]
    if bad:
        raise ValueError(f"cp_group: the inputs of rank(s) {bad} are invalid (see the error on those ranks)")
    lengths = table[:, 1].tolist()
    heads = {tuple(row) for row in table[:, 2:].tolist()}
    if len(heads) != 1:
        raise ValueError(f"cp_group: ranks disagree on (B, Hq, Hkv, D): {sorted(heads)}; only the sequence is sharded")
    b, hq, hkv, d = heads.pop()
    n = sum(lengths)
    meta = dict(dtype=q.dtype, device="meta")
    global_plan = make_plan(config, torch.empty(b, hq, n, d, **meta), *(torch.empty(b, hkv, n, d, **meta),) * 2)
    want = expected_lengths(n, world, config)
    if lengths != want:
        raise ValueError(
            f"cp_group: the ranks hold {lengths} tokens of a sequence of N={n}; Lighthouse context parallelism "
            f"needs contiguous tile-aligned shards of {want} tokens "
            f"(lighthouse.distributed.shard_sequence cuts them)"
        )
    if hq % world:
        raise ValueError(
            f"cp_group: query heads Hq={hq} must be a multiple of the context-parallel world size W={world} "
            f"(the sub-sequence attention runs head-parallel)"
        )
    shard = shard_len(n, world, config)
    local_cfg = config.replace(topk=config.topk // world)
    plan = LighthousePlan(local_cfg, b, hq, hkv, lengths[rank], shard, d)
    return group, rank, world, plan, global_plan


def _uses_triton(q, plan: LighthousePlan) -> bool:
    from ..dispatch import resolve_impl

    return resolve_impl(plan.config.impl, q) == "triton"


def _agree_finite(run, q, group, rank: int, world: int, plan: LighthousePlan):
    """run() the rank's selection, which refuses NaN/Inf in q, k, v or an overflowed score (lighthouse/finite.py,
    as on one device), and make every rank raise when any rank did: a rank that raised alone would leave the
    others waiting in the next exchange. One tiny all-gather; the check itself already read the screen back."""
    try:
        result, problem = run(), None
    except ValueError as err:
        result, problem = None, str(err)
    table = all_gather_ints([int(problem is None)], _collective_device(q, group), group)
    if problem:
        first = rank * plan.padded_len
        raise ValueError(
            f"cp_group rank {rank} (its shard starts at token {first}; positions are within the shard): {problem}"
        )
    bad = [r for r in range(world) if not table[r, 0]]
    if bad:
        raise ValueError(f"cp_group: the inputs of rank(s) {bad} are not finite (see the error on those ranks)")
    return result


@torch.no_grad()
def _select_local(q, k, v, plan: LighthousePlan) -> torch.Tensor:
    """The rank's tiles, (B, Hkv, S/W) indices into its local pyramid; the Triton selection on CUDA."""
    if _uses_triton(q, plan):
        from ..kernels import select_triton

        return select_triton(q, k, v, plan)
    return select_torch(q, k, v, plan)


def _checked_selection(run_selection, q, k, v, plan: LighthousePlan):
    """The Triton scores + select stages, their deferred finiteness check read back at once."""
    sel, check = run_selection(q, k, v, plan)
    check.raise_if_bad()
    return sel


def _last_entry_rows(out_sub: torch.Tensor, inv: torch.Tensor, plan: LighthousePlan) -> torch.Tensor:
    """(B, Hq, L-1, D): the output rows of the rank's last entry of levels 2..L (zeros where not emitted);
    they fan out past the shard's end, into the next rank's first tokens."""
    last = [o + n - 1 for o, n in zip(plan.offsets[1:], plan.level_sizes[1:])]
    rows = inv[..., last].repeat_interleave(plan.group, dim=1)  # (B, Hq, L-1)
    d = out_sub.shape[-1]
    got = out_sub.gather(2, rows.clamp(min=0)[..., None].expand(-1, -1, -1, d))
    return got * (rows >= 0)[..., None]


def scatter_back_shard(
    out_sub: torch.Tensor, halo: torch.Tensor, inv: torch.Tensor, plan: LighthousePlan
) -> torch.Tensor:
    """The reference pull (reference/scatter.py) over the rank's tokens, with the previous rank's last
    entries (`halo`, row l-2 for level l) feeding the first p**(l-1) - 1 tokens. Same summation order."""
    levels = plan.config.levels
    ext = torch.cat([halo, out_sub], dim=2).to(accumulation_dtype(out_sub.dtype))
    t = torch.arange(plan.seq_len, device=out_sub.device)
    d = out_sub.shape[-1]
    total = None
    for level in range(1, levels + 1):
        rows = source_positions(inv, plan, level)
        rows = torch.where(rows >= 0, rows + (levels - 1), -1)
        if level > 1:
            rows = torch.where(t < plan.spans[level - 1] - 1, level - 2, rows)
        rows = rows.repeat_interleave(plan.group, dim=1)
        pulled = ext.gather(2, rows.clamp(min=0)[..., None].expand(-1, -1, -1, d)) * (rows >= 0)[..., None]
        total = pulled if total is None else total + pulled
    return total.to(out_sub.dtype)


def context_parallel_lighthouse_attention(
    q, k, v, group, config: LighthouseConfig, gate=None, positions=None
) -> torch.Tensor:
    """Lighthouse attention of this rank's shard: q (B, Hq, N_r, D), k, v (B, Hkv, N_r, D) -> (B, Hq, N_r, D),
    equal to the rank's rows of the single-device result on the whole sequence.

    rope='post': entries are rotated at GLOBAL positions, the last token of each entry's span counted from the
    start of the whole sequence (rank * shard length + local token), or positions[b, local token] when the
    rank's token positions (N_r,) or (B, N_r) are given. An entry never straddles two shards (the shards are
    whole tiles), so the rank needs no other rank's positions."""
    group, rank, world, plan, _ = shard_plan(q, k, v, group, config, gate)
    positions = positions_for(config, positions, q)
    offset = rank * plan.padded_len  # global index of the rank's first token
    triton = _uses_triton(q, plan)
    if triton:
        from ..kernels.layer import run_selection
        from ..kernels.rope import rope_args
        from .triton_stages import TritonGather, TritonScatter

        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        sel = _agree_finite(lambda: _checked_selection(run_selection, q, k, v, plan), q, group, rank, world, plan)
        q_sub, k_sub, v_sub = TritonGather.apply(q, k, v, sel, plan, rope_args(plan, q.device, positions, offset))
        inv = sel.inv.long()
    else:
        indices = _agree_finite(lambda: _select_local(q, k, v, plan), q, group, rank, world, plan)
        q_sub = gather_entries(q, indices, plan, plan.group)
        k_sub = gather_entries(k, indices, plan, 1)
        v_sub = gather_entries(v, indices, plan, 1)
        if plan.config.rope == "post":
            pos = entry_positions(indices, plan, positions, offset)
            q_sub, k_sub = rotate(q_sub, pos.repeat_interleave(plan.group, dim=1), plan), rotate(k_sub, pos, plan)
        inv = inverse_map(indices, plan)
    g = plan.group
    if plan.kv_heads % world:  # kv heads cannot be split W ways: send them repeated per query head
        k_sub, v_sub, g = repeat_kv(k_sub, g), repeat_kv(v_sub, g), 1
    q_h, k_h, v_h = sequence_to_heads(group, q_sub, k_sub, v_sub)
    out_h = causal_sdpa(q_h, repeat_kv(k_h, g), repeat_kv(v_h, g), plan.config.sdpa_backend)
    out_sub = heads_to_sequence(out_h, group)
    halo = send_to_next(_last_entry_rows(out_sub, inv, plan), group)
    if triton:
        return TritonScatter.apply(out_sub, halo, sel, plan)
    return scatter_back_shard(out_sub, halo, inv, plan)


def context_parallel_select(q, k, v, group, config: LighthouseConfig, gate=None) -> torch.Tensor:
    """This rank's block of the single-device selection: (B, Hkv, S/W) indices into the concatenated
    pyramid of the WHOLE (padded) sequence, i.e. rows [r*S/W, (r+1)*S/W) of `lighthouse.select`."""
    group, rank, world, plan, global_plan = shard_plan(q, k, v, group, config, gate)
    local = _agree_finite(lambda: _select_local(q, k, v, plan), q, group, rank, world, plan)
    shift = torch.zeros(plan.pyramid_len, dtype=torch.long, device=local.device)
    for lo, n, go in zip(plan.offsets, plan.level_sizes, global_plan.offsets):
        shift[lo : lo + n] = go - lo + rank * n  # level entry i of rank r is entry r * n_l(local) + i
    return local + shift[local]


def context_parallel_dense_attention(q, k, v, group, backend: Optional[str] = None) -> torch.Tensor:
    """Dense causal SDPA of this rank's contiguous shard (the recovery phase under context parallelism):
    all-to-all of q, k, v to head parallelism (Ulysses), full SDPA, all-to-all back. Shards may differ in
    length; the shorter ones are zero-padded at the end, which causal attention never lets real tokens see."""
    group = resolve_group(group)
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    problem = _local_problem(q, k, v)
    dims = [0] * 4 if problem else [q.shape[2], q.shape[1], k.shape[1], q.shape[3]]
    table = all_gather_ints([int(problem is None)] + dims, _collective_device(q, group), group)
    if problem or not bool(table[:, 0].all()):
        raise ValueError(f"cp_group rank {rank}: {problem or 'another rank has invalid inputs'}")
    lengths = table[:, 1].tolist()
    hq, hkv = int(table[0, 2]), int(table[0, 3])
    if hq % world:
        raise ValueError(f"cp_group: query heads Hq={hq} must be a multiple of the world size W={world}")
    if any(lengths[r] < lengths[r + 1] for r in range(world - 1)):
        raise ValueError(f"cp_group: shards must be contiguous with the shorter ones last, got lengths {lengths}")
    longest, n_r = lengths[0], q.shape[2]
    pad = lambda x: torch.nn.functional.pad(x, (0, 0, 0, longest - n_r)) if longest > n_r else x  # noqa: E731
    g = hq // hkv
    k, v = (repeat_kv(x, g) for x in (k, v)) if hkv % world else (k, v)
    g = 1 if hkv % world else g
    q_h, k_h, v_h = sequence_to_heads(group, pad(q), pad(k), pad(v))
    keep = torch.cat([torch.arange(r * longest, r * longest + lengths[r], device=q.device) for r in range(world)])
    q_h, k_h, v_h = (x.index_select(2, keep) for x in (q_h, k_h, v_h))  # padding out of the sequence
    out_h = causal_sdpa(q_h, repeat_kv(k_h, g), repeat_kv(v_h, g), backend)
    full = torch.zeros(*out_h.shape[:2], world * longest, out_h.shape[-1], dtype=out_h.dtype, device=out_h.device)
    full = full.index_copy(2, keep, out_h)
    return heads_to_sequence(full, group)[:, :, :n_r]
