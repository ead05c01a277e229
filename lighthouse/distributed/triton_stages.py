"""The local stages of the context-parallel layer on the Triton kernels (impl="triton").

The kernels' own layer (kernels/layer.py) is one autograd.Function from q, k, v to the output; under context
parallelism the exchanges sit between its gather and its scatter, so the same stage functions
(`run_gather`/`run_pool_bwd`, `run_scatter`/`run_fan_in`) are wrapped here as two autograd.Functions, and
the exchanges and the SDPA in between are ordinary autograd. The halo rows of the previous rank are added to
the first p**(l-1) - 1 tokens after the pull (rounded once more than the single-device path there).
"""

from __future__ import annotations

import torch

from ..plan import LighthousePlan


class TritonGather(torch.autograd.Function):
    """q, k, v (the rank's tokens) -> the rank's sub-sequence q, k, v, pooled on the fly (q, k rotated at global
    positions with `rope`, post mode); backward pulls (turning dq, dk back)."""

    @staticmethod
    def forward(ctx, q, k, v, sel, plan: LighthousePlan, rope=None):
        from ..kernels.layer import run_gather

        subs = run_gather(q.contiguous(), k.contiguous(), v.contiguous(), sel, plan, rope)
        ctx.sel, ctx.plan, ctx.rope = sel, plan, rope
        ctx.shapes = [(s.shape, s.dtype, s.device) for s in subs]
        return tuple(subs)

    @staticmethod
    def backward(ctx, *grads):
        from ..kernels.layer import run_pool_bwd

        grads = [
            torch.zeros(*shape, dtype=dt, device=dev) if g is None else g.contiguous()
            for g, (shape, dt, dev) in zip(grads, ctx.shapes)
        ]
        dq, dk, dv = run_pool_bwd(grads, ctx.sel, ctx.plan, ctx.rope)
        return dq, dk, dv, None, None, None


class TritonScatter(torch.autograd.Function):
    """The rank's sub-sequence output (+ the previous rank's halo rows) -> its tokens; backward fans in."""

    @staticmethod
    def forward(ctx, out_sub, halo, sel, plan: LighthousePlan):
        from ..kernels.layer import run_scatter

        out = run_scatter(out_sub.contiguous(), sel, plan)
        ctx.sel, ctx.plan, ctx.halo_dtype = sel, plan, halo.dtype
        for level in range(2, plan.config.levels + 1):
            m = min(plan.spans[level - 1] - 1, out.shape[2])
            out[:, :, :m] += halo[:, :, level - 2 : level - 1].to(out.dtype)
        return out

    @staticmethod
    def backward(ctx, d_out):
        from ..kernels.layer import run_fan_in

        plan = ctx.plan
        d_out = d_out.contiguous()
        d_sub = run_fan_in(d_out, ctx.sel, plan)
        d_halo = torch.stack(
            [d_out[:, :, : plan.spans[level - 1] - 1].float().sum(2) for level in range(2, plan.config.levels + 1)],
            dim=2,
        )
        return d_sub, d_halo.to(ctx.halo_dtype), None, None
