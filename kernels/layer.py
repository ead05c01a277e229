"""The Triton path of the whole layer, as one autograd.Function, its step sequence written once.

forward:  scores -> select -> gather (pooling on the fly) -> sdpa (stock SDPA on S rows) -> scatter
backward: fan_in (gather of dO) -> sdpa_bwd (autograd of the stock kernel) -> pool_bwd (scatter's transpose)
Each step is one named stage function below (`run_<stage>`); the layer, `lighthouse-bench profile` and
reports/h200/tools/gpu_validate.py call these same functions, so what the profiler times is what the layer runs.
Only the sub-sequence tensors and the selection maps are kept between the passes.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager, nullcontext
from typing import List, NamedTuple, Optional, Sequence

import torch

from lighthouse.plan import LighthousePlan
from lighthouse.reference.select import select_entries
from lighthouse.sdpa import causal_sdpa, repeat_kv, vjp

from . import alloc, precompile
from .finite_check import poll_pending
from .gather import gather_launches, gather_many, gather_rows
from .launch import Launch, stand_in
from .rope import RopeArgs, rope_args
from .scatter import pull_launches, pull_many, pull_rows
from .scores import score_pyramids, scores_launch
from .select import Selection, fits_in_kernel, select_in_kernel, select_launch, selection_from_indices

#: The stages of each pass, in the order the layer runs them (profile.csv's `stage` names).
STAGES = {"fwd": ("scores", "select", "gather", "sdpa", "scatter"), "bwd": ("fan_in", "sdpa_bwd", "pool_bwd")}


class Scores(NamedTuple):
    """What the scores stage hands the select stage: both score pyramids, their deferred finiteness check
    and, when the selection runs in the kernel, the inverse map the scoring kernel set to -1."""

    sq: torch.Tensor
    sk: torch.Tensor
    check: object
    inv: Optional[torch.Tensor]


def _fits(plan: LighthousePlan) -> bool:
    """fits_in_kernel(plan), once per plan."""
    hit = plan.memo.get("fits_in_kernel")
    if hit is None:
        hit = plan.memo["fits_in_kernel"] = fits_in_kernel(plan)
    return hit


def _level_views(pyr: torch.Tensor, plan: LighthousePlan):
    return [pyr[..., o : o + n] for o, n in zip(plan.offsets, plan.level_sizes)]


def _by_shape(fn, tensors):
    """fn (list, rotate -> list) over the tensors (q, k, v or their gradients), one call per distinct shape:
    one for q, k, v without GQA, else one for q and one for k, v. `rotate`: how many of the call's tensors,
    leading, are q or k (the ones RoPE turns in post mode). Results come back in the order of `tensors`."""
    groups = {}
    for i, t in enumerate(tensors):
        groups.setdefault(tuple(t.shape), []).append(i)
    out = [None] * len(tensors)
    for idx in groups.values():
        for i, r in zip(idx, fn([tensors[i] for i in idx], sum(i < 2 for i in idx))):
            out[i] = r
    return out


# ------------------------------------------------------------------------------------------- the stages
def run_scores(q, k, v, plan: LighthousePlan, gate: Optional[torch.Tensor] = None) -> Scores:
    """scores: the query and key score pyramids (check.raise_if_bad once the layer is launched). Records nothing
    for autograd with grad on (no torch.no_grad() here: its host time would sit before the first launch, PERF_NOTES
    step 23): the kernels write fresh tensors, and the scorers written in PyTorch run under no_grad themselves."""
    inv = None
    if _fits(plan):
        inv = alloc.empty(plan.batch, plan.kv_heads, plan.pyramid_len, dtype=torch.int32, device=q.device)
    sq, sk, check = score_pyramids(q, k, v, plan, gate, inv)
    return Scores(sq, sk, check, inv)


def run_select(scores: Scores, plan: LighthousePlan) -> Selection:
    """select: the sub-sequence and its maps, in the kernel; the PyTorch selection when a tile is too large
    to sort in registers (both read only the score pyramids, which no gradient reaches)."""
    if scores.inv is not None:
        return select_in_kernel(scores.sq, scores.sk, plan, scores.inv)
    scores.check.raise_if_bad()  # the PyTorch selection would be misled by NaN before the deferred check
    indices = select_entries(_level_views(scores.sq, plan), _level_views(scores.sk, plan), plan)
    return selection_from_indices(indices, plan)


def run_selection(q, k, v, plan: LighthousePlan, gate: Optional[torch.Tensor] = None):
    """scores + select: (Selection, the deferred finiteness check of the scores)."""
    scores = run_scores(q, k, v, plan, gate)
    return run_select(scores, plan), scores.check


def run_gather(q, k, v, sel: Selection, plan: LighthousePlan, rope: Optional[RopeArgs] = None) -> List[torch.Tensor]:
    """gather: the sub-sequence q, k, v, pooled on the fly; one launch for the three (two under GQA).
    rope (post mode): q and k rows rotated at their entries' last tokens in the same launch."""
    return _by_shape(lambda xs, rot: gather_many(xs, sel.lm_idx, sel.lm_pos, plan, rope=rope, rotate=rot), (q, k, v))


def run_sdpa(q_sub, k_sub, v_sub, plan: LighthousePlan) -> torch.Tensor:
    """sdpa: stock causal SDPA on the S sub-sequence rows (autograd records it when grad is enabled)."""
    g = plan.group
    return causal_sdpa(q_sub, repeat_kv(k_sub, g), repeat_kv(v_sub, g), plan.config.sdpa_backend)


def run_scatter(out_sub: torch.Tensor, sel: Selection, plan: LighthousePlan) -> torch.Tensor:
    """scatter: each token position pulls its <= L sub-sequence rows (no atomics)."""
    return pull_rows(out_sub, sel.inv, plan, scatter=True)


def run_fan_in(d_out: torch.Tensor, sel: Selection, plan: LighthousePlan) -> torch.Tensor:
    """fan_in: the gradient of the scatter, dO summed into the S sub-sequence rows."""
    return gather_rows(d_out, sel.lm_idx, sel.lm_pos, plan, fan_in=True)


def run_sdpa_bwd(out_sub: torch.Tensor, subs: Sequence[torch.Tensor], d_out_sub: torch.Tensor, retain: bool = False):
    """sdpa_bwd: the stock SDPA backward, through autograd of the sdpa stage's graph (lighthouse.sdpa.vjp: what
    torch.autograd.grad does, without the sympy import its first call makes)."""
    return vjp([out_sub], subs, [d_out_sub], retain)


def run_pool_bwd(
    d_subs: Sequence[torch.Tensor], sel: Selection, plan: LighthousePlan, rope: Optional[RopeArgs] = None
) -> List[torch.Tensor]:
    """pool_bwd: the gradient of the gather, dq, dk, dv pulled from the sub-sequence gradients (in post mode
    dq and dk turned back by each entry's angle in the launch that pulls them, dv in a launch of its own)."""
    return _by_shape(lambda xs, rot: pull_many(xs, sel.inv, plan, scatter=False, rope=rope, rotate=rot), d_subs)


def run_forward(
    q,
    k,
    v,
    plan: LighthousePlan,
    gate: Optional[torch.Tensor],
    grad: bool,
    rope: Optional[RopeArgs] = None,
    selection=None,
):
    """The forward step sequence: (out, sel, sub-sequence q/k/v, out_sub). grad: the sub-sequence tensors are
    leaves and the sdpa graph is kept, for the backward. selection: run_selection's result when the caller ran
    it already (the layer does, before autograd's entry: see lighthouse_attention_triton)."""
    sel, check = run_selection(q, k, v, plan, gate) if selection is None else selection
    subs = run_gather(q, k, v, sel, plan, rope)
    v_sub = subs[2]  # the gathered rows themselves, not the leaf below (no autograd record for the screen)
    with torch.set_grad_enabled(grad):
        if grad:
            subs = [x.detach().requires_grad_() for x in subs]
        out_sub = run_sdpa(*subs, plan)
    out = run_scatter(out_sub.detach(), sel, plan)
    # the finiteness screen of v on the S gathered rows (not all N), and the check's copies to the host, queued once
    # the SDPA is: host work there would keep the GPU waiting at the forward's front (finite_check.py)
    check.watch_v(v_sub)
    # earlier calls' deferred checks that the GPU has passed, read without waiting: here, once this call's SDPA is
    # queued (before the first launch their event queries were host time the GPU waited through, PERF_NOTES step 23)
    # and before this call's own check joins them (an error names an earlier call)
    poll_pending()
    if grad:  # a training forward: the backward is queued before anyone waits for the GPU (finite_check.py)
        check.defer()
    else:
        check.raise_if_bad()
    return out, sel, subs, out_sub


# ------------------------------------------------------------------------------------------- precompiling
def planned_launches(q, k, v, plan: LighthousePlan, rope: Optional[RopeArgs] = None, grad: bool = True) -> List[Launch]:
    """The Triton launches of one call, forward and (grad) backward, in the order the stages make them, built by the
    stages' own wrappers on meta stand-ins (no memory, nothing runs): what kernels/precompile.py compiles before the
    first launch. The tensors the call makes are stood in for as the stages make them (the SDPA's output and
    gradients, and dO, contiguous). Keep in step with run_forward and LighthouseFunction.backward:
    tests/ops/test_precompile.py compares this list with the launches a real forward + backward makes."""
    q, k, v = (stand_in(x) for x in (q, k, v))
    if rope is not None:
        rope = rope._replace(
            inv_freq=stand_in(rope.inv_freq), positions=None if rope.positions is None else stand_in(rope.positions)
        )
    meta = torch.device("meta")
    b, hkv, s, p_len = plan.batch, plan.kv_heads, plan.selected_len, plan.pyramid_len
    launches: List[Launch] = []
    # scores and select (run_scores, run_select; score_pyramids' buffer)
    inv = torch.empty(b, hkv, p_len, dtype=torch.int32, device=meta) if fits_in_kernel(plan) else None
    pyr = torch.empty(2, b, hkv, p_len, dtype=torch.float32, device=meta)
    if plan.config.scorer == "norm":
        flag = torch.empty(1, dtype=torch.int32, device=meta)
        launches.append(scores_launch(q, k, pyr[0], pyr[1], inv, flag, 1, plan))
    if inv is not None:
        sel, launch = select_launch(pyr[0], pyr[1], plan, inv)
        launches.append(launch)
    else:  # selection_from_indices' maps
        maps = [torch.empty(b, hkv, s, dtype=torch.int64, device=meta) for _ in range(3)]
        sel = Selection(*maps, torch.empty(b, hkv, p_len, dtype=torch.int32, device=meta))

    def gather(xs, rot, fan_in=False):
        outs, made = gather_launches(xs, sel.lm_idx, sel.lm_pos, plan, fan_in, rope, rot)
        launches.extend(made)
        return outs

    def pull(xs, rot, scatter):
        outs, made = pull_launches(xs, sel.inv, plan, scatter, rope=rope, rotate=rot)
        launches.extend(made)
        return outs

    def fresh(x):  # a new contiguous tensor like x (not torch.empty_like: on meta it imports torch.fx, 0.5 s)
        return torch.empty(x.shape, dtype=x.dtype, device=meta)

    subs = _by_shape(gather, (q, k, v))  # run_gather
    (out,) = pull([fresh(subs[0])], 0, True)  # run_scatter of the SDPA's output
    if grad:
        gather([fresh(out)], 0, fan_in=True)  # run_fan_in of dO
        _by_shape(lambda xs, rot: pull(xs, rot, False), [fresh(x) for x in subs])  # run_pool_bwd
    return launches


def warm_sdpa(q, k, v, plan: LighthousePlan, grad: bool) -> None:
    """The stock SDPA's first call on the sub-sequence's shapes and layout, forward and (grad) backward, on zeros,
    so that what its first call costs (cuDNN builds and caches a graph per shape; either backend loads its kernels
    at their first launch) is paid while the Triton kernels compile, not after them. Changes nothing but caches;
    its tensors are freed before the call allocates its own. Its backward runs inside the caller's forward, so the
    caller's saved-tensor hooks are kept off its graph: a non-reentrant activation checkpoint's would recompute the
    caller's region from there (and, re-entering the precompile's lock, hang)."""
    b, s = plan.batch, plan.selected_len
    subs = [
        torch.zeros(b, x.shape[1], s, x.shape[3], dtype=x.dtype, device=x.device, requires_grad=grad) for x in (q, k, v)
    ]
    # detach: a saved output kept as itself would hold its own grad_fn (a cycle, freed only by the garbage collector).
    # Without a backward nothing is saved, and no hooks are set (inside disable_saved_tensors_hooks setting them raises)
    hooks = torch.autograd.graph.saved_tensors_hooks(torch.Tensor.detach, lambda x: x) if grad else nullcontext()
    with hooks, torch.set_grad_enabled(grad):
        out = run_sdpa(*subs, plan)
    if grad:  # dO as the fan-in makes it: contiguous
        vjp([out], subs, [torch.zeros(out.shape, dtype=out.dtype, device=out.device)])


def _precompile(q, k, v, plan: LighthousePlan, rope: Optional[RopeArgs], grad: bool, key) -> None:
    """Compile this configuration's kernels before its first launch (kernels/precompile.py), once per plan and key,
    with the stock SDPA's first call on the sub-sequence's shape run meanwhile (warm_sdpa)."""
    precompile.precompile(
        (plan, *key),
        lambda: planned_launches(q, k, v, plan, rope, grad),
        q.device,
        alongside=lambda: warm_sdpa(q, k, v, plan, grad),
    )
    plan.memo[key] = True


# ------------------------------------------------------------------------------------------- the layer
#: How many retain_inner_graph blocks are open, in any thread. Process-wide, not thread-local: on CUDA
#: autograd runs the backward on its own device thread, which a thread-local switch set by the caller's
#: thread would not reach (the H200 run of tests/ops/test_triton_path.py showed it).
_RETAIN_DEPTH = [0]
_RETAIN_LOCK = threading.Lock()


def _retaining() -> bool:
    return _RETAIN_DEPTH[0] > 0


@contextmanager
def retain_inner_graph():
    """Keep the sub-sequence SDPA graph through backward, so that backward(retain_graph=True) can run
    again on the same forward (the benchmark times backward alone that way). Off by default: the backward
    then frees the sub-sequence tensors before it allocates dq, dk and dv, which keeps peak memory down
    by four (B, H, S, D) tensors. In force when the forward or the backward runs inside it, whichever thread
    autograd runs the backward on (the switch is process-wide while the block is open: Lighthouse calls on
    other threads meanwhile keep those four tensors too, which costs memory, never correctness)."""
    with _RETAIN_LOCK:
        _RETAIN_DEPTH[0] += 1
    try:
        yield
    finally:
        with _RETAIN_LOCK:
            _RETAIN_DEPTH[0] -= 1


class LighthouseFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, plan: LighthousePlan, gate, rope, selection=None):
        out, sel, leaves, out_sub = run_forward(q, k, v, plan, gate, grad=True, rope=rope, selection=selection)
        ctx.plan, ctx.sel, ctx.leaves, ctx.out_sub, ctx.rope = plan, sel, leaves, out_sub, rope
        ctx.retain = _retaining()  # a forward inside the block lets its backwards outside it repeat
        return out

    @staticmethod
    def backward(ctx, d_out):
        plan, sel = ctx.plan, ctx.sel
        if ctx.out_sub is None:
            raise RuntimeError(
                "Lighthouse's Triton backward already ran on this forward and freed its sub-sequence tensors; "
                "to run backward twice (retain_graph=True), run both inside "
                "`with lighthouse.kernels.retain_inner_graph():`"
            )
        d_out_sub = run_fan_in(d_out, sel, plan)
        retain = ctx.retain or _retaining()
        d_subs = run_sdpa_bwd(ctx.out_sub, ctx.leaves, d_out_sub, retain)
        if not retain:
            ctx.leaves = ctx.out_sub = None  # freed before dq, dk, dv are allocated
        dq, dk, dv = run_pool_bwd(d_subs, sel, plan, ctx.rope)
        poll_pending()  # the checks the GPU has passed, without waiting
        return dq, dk, dv, None, None, None, None


def lighthouse_attention_triton(
    q, k, v, plan: LighthousePlan, gate: Optional[torch.Tensor] = None, positions: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """positions (1 or B, N) int64 or None: token positions of rope='post' (None: 0..N-1)."""
    rope = rope_args(plan, q.device, positions)
    grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    key = ("precompiled", q.dtype, q.device, grad, positions is None)  # all that the kernels specialise on, but sizes
    if key not in plan.memo:  # a warm call's only cost: one dict lookup
        _precompile(q, k, v, plan, rope, grad, key)
    # scores and select (no gradient flows through them) are launched before autograd's entry: its host time then
    # runs beside their kernels instead of before the first one, while the GPU waits (PERF_NOTES step 23)
    selection = run_selection(q, k, v, plan, gate)
    if grad:
        return LighthouseFunction.apply(q, k, v, plan, gate, rope, selection)
    with torch.no_grad():
        return run_forward(q, k, v, plan, gate, grad=False, rope=rope, selection=selection)[0]


def select_triton(q, k, v, plan: LighthousePlan, gate: Optional[torch.Tensor] = None) -> torch.Tensor:
    sel, check = run_selection(q, k, v, plan, gate)
    check.raise_if_bad()
    return sel.indices
