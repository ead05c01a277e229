"""The Triton path of the whole layer, as one autograd.Function.

forward:  scores -> selection -> gather (pooling on the fly) -> stock SDPA on S rows -> pull (scatter)
backward: fan-in gather of dO -> SDPA backward (autograd of the stock kernel) -> pull (pooling backward)
Only the sub-sequence tensors and the selection maps are kept between the passes.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Optional

import torch

from lighthouse.plan import LighthousePlan
from lighthouse.reference.selection import select_entries
from lighthouse.sdpa import causal_sdpa, repeat_kv

from . import alloc
from .gather import gather_many, gather_rows
from .pull import pull_many, pull_rows
from .scores import score_pyramids
from .select import Selection, fits_in_kernel, select_in_kernel, selection_from_indices


def _level_views(pyr: torch.Tensor, plan: LighthousePlan):
    return [pyr[..., o:o + n] for o, n in zip(plan.offsets, plan.level_sizes)]


@torch.no_grad()
def run_selection(q, k, v, plan: LighthousePlan, gate: Optional[torch.Tensor] = None):
    """Scores and selection, and the deferred finiteness check of the scores (call its raise_if_bad once
    the layer is launched). Falls back to the PyTorch selection when a tile is too large to sort in
    registers."""
    if fits_in_kernel(plan):
        inv = alloc.empty(plan.batch, plan.kv_heads, plan.pyramid_len, dtype=torch.int32, device=q.device)
        sq, sk, check = score_pyramids(q, k, v, plan, gate, inv)
        return select_in_kernel(sq, sk, plan, inv), check
    sq, sk, check = score_pyramids(q, k, v, plan, gate)
    check.raise_if_bad()  # the PyTorch selection would be misled by NaN before the deferred check
    indices = select_entries(_level_views(sq, plan), _level_views(sk, plan), plan)
    return selection_from_indices(indices, plan), check


def _by_shape(fn, tensors):
    """fn (list -> list) over the tensors, one call per distinct shape: one for q, k, v without GQA, else
    one for q and one for k, v. Results come back in the order of `tensors`."""
    groups = {}
    for i, t in enumerate(tensors):
        groups.setdefault(tuple(t.shape), []).append(i)
    out = [None] * len(tensors)
    for idx in groups.values():
        for i, r in zip(idx, fn([tensors[i] for i in idx])):
            out[i] = r
    return out


def gather_qkv(q, k, v, sel: Selection, plan: LighthousePlan):
    """The sub-sequence q, k, v: one launch for the three (two under GQA)."""
    return _by_shape(lambda xs: gather_many(xs, sel.lm_idx, sel.lm_pos, plan), (q, k, v))


_RETAIN = threading.local()


@contextmanager
def retain_inner_graph():
    """Keep the sub-sequence SDPA graph through backward, so that backward(retain_graph=True) can run
    again on the same forward (the benchmark times backward alone that way). Off by default: the backward
    then frees the sub-sequence tensors before it allocates dq, dk and dv, which keeps peak memory down
    by four (B, H, S, D) tensors."""
    before = getattr(_RETAIN, "on", False)
    _RETAIN.on = True
    try:
        yield
    finally:
        _RETAIN.on = before


class LighthouseFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, plan: LighthousePlan, gate):
        sel, check = run_selection(q, k, v, plan, gate)
        q_sub, k_sub, v_sub = gather_qkv(q, k, v, sel, plan)
        with torch.enable_grad():
            leaves = [x.detach().requires_grad_() for x in (q_sub, k_sub, v_sub)]
            out_sub = causal_sdpa(leaves[0], repeat_kv(leaves[1], plan.group), repeat_kv(leaves[2], plan.group),
                                  plan.config.sdpa_backend)
        out = pull_rows(out_sub.detach(), sel.inv, plan, scatter=True)
        check.raise_if_bad()
        ctx.plan, ctx.sel, ctx.leaves, ctx.out_sub = plan, sel, leaves, out_sub
        return out

    @staticmethod
    def backward(ctx, d_out):
        plan, sel = ctx.plan, ctx.sel
        if ctx.out_sub is None:
            raise RuntimeError(
                "Lighthouse's Triton backward already ran on this forward and freed its sub-sequence tensors; "
                "to run backward twice (retain_graph=True), run both inside "
                "`with lighthouse.kernels.retain_inner_graph():`")
        d_out_sub = gather_rows(d_out, sel.lm_idx, sel.lm_pos, plan, fan_in=True)
        retain = getattr(_RETAIN, "on", False)
        d_subs = torch.autograd.grad(ctx.out_sub, ctx.leaves, d_out_sub, retain_graph=retain)
        if not retain:
            ctx.leaves = ctx.out_sub = None  # freed before dq, dk, dv are allocated
        dq, dk, dv = _by_shape(lambda xs: pull_many(xs, sel.inv, plan, scatter=False), d_subs)
        return dq, dk, dv, None, None


def lighthouse_attention_triton(q, k, v, plan: LighthousePlan, gate: Optional[torch.Tensor] = None) -> torch.Tensor:
    if torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v)):
        return LighthouseFunction.apply(q, k, v, plan, gate)
    with torch.no_grad():
        sel, check = run_selection(q, k, v, plan, gate)
        subs = gather_qkv(q, k, v, sel, plan)
        out_sub = causal_sdpa(subs[0], repeat_kv(subs[1], plan.group), repeat_kv(subs[2], plan.group),
                              plan.config.sdpa_backend)
        out = pull_rows(out_sub, sel.inv, plan, scatter=True)
        check.raise_if_bad()
        return out


def select_triton(q, k, v, plan: LighthousePlan, gate: Optional[torch.Tensor] = None) -> torch.Tensor:
    sel, check = run_selection(q, k, v, plan, gate)
    check.raise_if_bad()
    return sel.indices
