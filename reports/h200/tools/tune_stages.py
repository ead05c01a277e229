"""Launch-configuration experiment for the Triton stages on the GPU (reports/PERF_NOTES.md, step 4).

    python reports/h200/tools/tune_stages.py --out DIR

Times each non-SDPA stage alone (CUDA events, L2 flush, median) under a few block sizes and warp counts,
the fused three-tensor launches against three single launches, and the whole layer forward+backward
against SDPA on S in the same run, at the paper's operating point and at N=262144. Writes DIR/tune.csv.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import torch

from lighthouse import LighthouseConfig, lighthouse_attention
from lighthouse.harness.timing import measure
from lighthouse.kernels import gather, scatter, select
from lighthouse.kernels.layer import run_selection
from lighthouse.kernels.scores import score_pyramids
from lighthouse.plan import make_plan
from lighthouse.sdpa import causal_sdpa

DEV = torch.device("cuda")
ROWS = []


def ms(fn, grad=None, leaves=()):
    t = measure(
        fn,
        "fwd" if grad is None else "fwdbwd",
        list(leaves),
        grad,
        device=DEV,
        warmup=3,
        rep=30,
        min_rep=5,
        max_seconds=1.5,
    )
    return t.median_ms


def rec(n, stage, variant, t):
    ROWS.append(dict(n=n, stage=stage, variant=variant, ms=round(t, 5)))
    print(f"N={n:>7} {stage:<14} {variant:<28} {t:8.4f} ms", flush=True)


def point(n, topk):
    g = torch.Generator(device=DEV).manual_seed(0)
    q, k, v, go = (torch.randn(1, 8, n, 128, device=DEV, dtype=torch.bfloat16, generator=g) for _ in range(4))
    cfg = LighthouseConfig(levels=3, pooling=4, topk=topk, impl="triton", sdpa_backend="cudnn")
    plan = make_plan(cfg, q, k, v)
    with torch.no_grad():
        sq, sk, _ = score_pyramids(q, k, v, plan)
        rec(n, "scores", "default", ms(lambda: score_pyramids(q, k, v, plan)))
        for w in (4, 8, 16):
            select.NUM_WARPS = w
            rec(n, "select", f"warps={w}", ms(lambda: select.select_in_kernel(sq, sk, plan)))
        select.NUM_WARPS = None
        sel, _ = run_selection(q, k, v, plan)
        for br in (32, 64):
            for w in (4, 8):
                gather.BLOCK_R, gather.NUM_WARPS = br, w
                rec(
                    n,
                    "gather_qkv",
                    f"fused r={br} w={w}",
                    ms(lambda: gather.gather_many([q, k, v], sel.lm_idx, sel.lm_pos, plan)),
                )
                if w == 4:
                    rec(
                        n,
                        "gather_qkv",
                        f"single x3 r={br} w={w}",
                        ms(lambda: [gather.gather_rows(x, sel.lm_idx, sel.lm_pos, plan) for x in (q, k, v)]),
                    )
                rec(
                    n,
                    "fanin_gather",
                    f"r={br} w={w}",
                    ms(lambda: gather.gather_rows(go, sel.lm_idx, sel.lm_pos, plan, fan_in=True)),
                )
        gather.BLOCK_R, gather.NUM_WARPS = 32, 4
        subs = gather.gather_many([q, k, v], sel.lm_idx, sel.lm_pos, plan)
        out_sub = causal_sdpa(*subs, "cudnn")
        for bt in (16, 32, 64):
            for w in (4, 8):
                scatter.BLOCK_T, scatter.NUM_WARPS = bt, w
                rec(
                    n,
                    "pool_bwd_x3",
                    f"fused t={bt} w={w}",
                    ms(lambda: scatter.pull_many(subs, sel.inv, plan, scatter=False)),
                )
                rec(
                    n,
                    "pool_bwd_x3",
                    f"single x3 t={bt} w={w}",
                    ms(lambda: [scatter.pull_rows(x, sel.inv, plan, scatter=False) for x in subs]),
                )
                rec(n, "scatter", f"t={bt} w={w}", ms(lambda: scatter.pull_rows(out_sub, sel.inv, plan, scatter=True)))
        scatter.BLOCK_T, scatter.NUM_WARPS = 32, 4
    # whole layer (current defaults) against SDPA on S, same run
    leaves = [x.detach().requires_grad_() for x in (q, k, v)]
    rec(n, "layer_fwdbwd", "defaults", ms(lambda: lighthouse_attention(*leaves, config=cfg), go, leaves))
    s = plan.selected_len
    sub = [torch.randn(1, 8, s, 128, device=DEV, dtype=torch.bfloat16, requires_grad=True) for _ in range(3)]
    rec(
        n,
        "sdpa_S_fwdbwd",
        f"S={s}",
        ms(lambda: causal_sdpa(*sub, "cudnn"), torch.randn(1, 8, s, 128, device=DEV, dtype=torch.bfloat16), sub),
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="out/tune")
    ap.add_argument("--points", default="98304:1536,262144:4096")
    args = ap.parse_args()
    for spec in args.points.split(","):
        n, k = (int(x) for x in spec.split(":"))
        point(n, k)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "tune.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(ROWS[0]))
        w.writeheader()
        w.writerows(ROWS)


if __name__ == "__main__":
    main()
