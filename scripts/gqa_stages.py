"""How the Triton layer's stages scale with the GQA group size (issue 24): large groups are where other trainable
sparse attentions put their kernels' effort.

    python scripts/gqa_stages.py --out reports/h200/gqa/stages        # one H200: about 2-4 minutes

For each N (with its k), head dim and group size g = Hq / Hkv (Hkv fixed, default 8: Hq = 8, 16, 32, 64), every
stage of the layer (`lighthouse-bench profile`'s own stage callables, profile.triton_stages: scores, select,
gather, sdpa, scatter, fan_in, sdpa_bwd, pool_bwd) is timed alone on its real inputs, on both clocks (as
launched and host ahead: the kernel alone). Writes OUT/stages.csv: one row per (point, stage) with both times,
the time per query head, and the host-ahead time relative to g = 1 at the same N, k and head dim (`vs_g1`: 1.0
means the stage does not grow with the group, g means it grows like the query heads). Prints the select and
gather rows as a table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def parse_pairs(text: str):
    """'64k:4096,96k:1536' -> [(65536, 4096), (98304, 1536)]."""
    from lighthouse.harness.options import parse_ints

    out = []
    for item in text.split(","):
        n, _, k = item.partition(":")
        if not k:
            raise ValueError(f"--points: N:k pairs such as 64k:4096, got {item!r}")
        out.append((parse_ints(n, "--points")[0], parse_ints(k, "--points")[0]))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--points", default="16k:1024,64k:4096,96k:1536", help="N:k pairs (default 16k:1024,64k:4096,96k:1536)"
    )
    ap.add_argument("--groups", default="1,2,4,8", help="group sizes Hq/Hkv (default 1,2,4,8)")
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dims", default="64,128")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--max-seconds", type=float, default=0.4, help="timed repetitions per stage (default 0.4 s)")
    args = ap.parse_args(argv)
    try:
        pairs = parse_pairs(args.points)
        groups = [int(g) for g in args.groups.split(",")]
        dims = [int(d) for d in args.head_dims.split(",")]
    except ValueError as err:
        print(f"Error: {err}")
        return 2
    if any(g < 1 for g in groups) or args.kv_heads < 1:
        print("Error: --groups and --kv-heads: whole numbers >= 1")
        return 2

    import torch

    from lighthouse.harness.points import Point, Shape
    from lighthouse.bench.profile import triton_stages
    from lighthouse.bench.inputs import random_inputs
    from lighthouse.harness.plain_csv import write_csv
    from lighthouse.harness.timing import measure
    from lighthouse.plan import make_plan

    if not torch.cuda.is_available():
        print("Error: gqa_stages needs a CUDA device (the Triton stages)")
        return 2
    dev = torch.device("cuda", torch.cuda.current_device())
    args.out.mkdir(parents=True, exist_ok=True)
    timing = dict(device=dev, warmup=3, rep=30, min_rep=5, max_seconds=args.max_seconds)
    rows = []
    for n, topk in pairs:
        for d in dims:
            g1 = {}
            for g in groups:
                point = Point(Shape(n, args.batch, g * args.kv_heads, args.kv_heads, d, "bf16"), 3, 4, topk, "norm")
                s = point.shape
                x = random_inputs(s, dev, 0)
                q, k, v = (t.detach() for t in x.leaves)
                plan = make_plan(point.config("triton", "cudnn"), q, k, v)
                for st in triton_stages(q, k, v, x.grad_out, None, plan):
                    t = measure(st.fn, st.mode, list(st.leaves), st.grad, **timing)
                    ahead = t.host_ahead_median_ms
                    if g == groups[0]:
                        g1[st.name] = ahead
                    base = g1.get(st.name)
                    rows.append(
                        {
                            "n": n,
                            "topk": topk,
                            "batch": s.batch,
                            "heads": s.heads,
                            "kv_heads": s.kv_heads,
                            "group": g,
                            "head_dim": d,
                            "dtype": s.dtype,
                            "stage": st.name,
                            "pass": st.pass_,
                            "ms": f"{t.median_ms:.5g}",
                            "host_ahead_ms": f"{ahead:.5g}" if ahead else "",
                            "host_ahead_ms_per_q_head": f"{ahead / s.heads:.5g}" if ahead else "",
                            "vs_g1": f"{ahead / base:.3f}" if ahead and base and groups[0] == 1 else "",
                            "host_ahead_timeouts": t.host_ahead_timeouts,
                        }
                    )
                del x, q, k, v
                torch.cuda.empty_cache()
                write_csv(args.out / "stages.csv", rows)  # rewritten per point: a cut run keeps its rows
                print(f"N={n} k={topk} D={d} g={g} (Hq={s.heads}/Hkv={s.kv_heads}) done", flush=True)
    print()
    shown = {"stage": "stage", "n": "N", "head_dim": "D", "group": "group", "ms": "ms as launched"}
    shown |= {"host_ahead_ms": "ms host ahead", "vs_g1": "vs g=1"}
    print(" | ".join(shown.values()))
    for r in (r for r in rows if r["stage"] in ("select", "gather", "fan_in", "pool_bwd", "scores")):
        print(" | ".join(str(r[column]) for column in shown))
    print(f"table: {args.out / 'stages.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
