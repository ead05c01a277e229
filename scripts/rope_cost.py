"""Issue 22's cost target: Lighthouse fwd+bwd with rope='post' against rope='pre', measured in one process.

    python scripts/rope_cost.py --out reports/h200/rope

Default point: N = 96K (98,304), k = 1536, L = 3, p = 4, bf16, B = 1, H = 8, D = 128, Triton path, cuDNN SDPA
(the issue's target: post at most 3% over pre). The two placements are timed in alternating rounds (pre, post,
pre, post, ...) with lighthouse.harness.timing.measure (CUDA events, L2 flushed before every repetition), so
clock drift or a neighbour on the machine hits both alike; dense cuDNN is timed once at the end, for scale.
Rows: `rope_cost.csv` (one per placement, pass and round); `rope_cost_summary.csv` the medians over rounds and
post / pre; `machine.json` the machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from lighthouse import LighthouseConfig, lighthouse_attention  # noqa: E402
from lighthouse.harness import machine  # noqa: E402
from lighthouse.harness.timing import measure, percentile  # noqa: E402
from lighthouse.sdpa import dense_attention  # noqa: E402

#: The options that name the point, and the columns of rope_cost.csv.
POINT = ("n", "topk", "levels", "pooling", "heads", "head_dim", "dtype")
COLUMNS = (*POINT, "impl", "rope", "pass", "round", "median_ms", "p20_ms", "p80_ms", "reps")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=98304)
    ap.add_argument("--topk", type=int, default=1536)
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--pooling", type=int, default=4)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--rep", type=int, default=30)
    ap.add_argument("--passes", default="fwdbwd,fwd,bwd")
    ap.add_argument("--impl", default="triton", choices=("triton", "torch"))
    ap.add_argument("--sdpa-backend", default=None, help="default: cudnn on CUDA, math on the CPU")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--no-dense", action="store_true", help="skip the dense cuDNN reference row")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    backend = args.sdpa_backend or ("cudnn" if device.type == "cuda" else "math")
    dtype = getattr(torch, args.dtype)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "machine.json").write_text(
        json.dumps(machine.collect(sys.argv, vars(args) | {"out": str(args.out)}), indent=2, default=str) + "\n"
    )
    g = torch.Generator(device=device).manual_seed(0)
    shape = (1, args.heads, args.n, args.head_dim)
    q, k, v = (torch.randn(shape, generator=g, device=device, dtype=dtype).requires_grad_() for _ in range(3))
    grad_out = torch.randn(shape, generator=g, device=device, dtype=dtype)
    base = LighthouseConfig(
        levels=args.levels, pooling=args.pooling, topk=args.topk, impl=args.impl, sdpa_backend=backend
    )
    fns = {
        rope: (lambda c=base.replace(rope=rope): lighthouse_attention(q, k, v, config=c)) for rope in ("pre", "post")
    }
    timing = dict(device=device, warmup=5, rep=args.rep, min_rep=min(5, args.rep), max_seconds=30.0)
    by = {}
    point = {key: getattr(args, key) for key in POINT}

    def row(t, **cells) -> dict:
        """A rope_cost.csv row: the point, `cells`, and the timing's figures."""
        figures = dict(median_ms=round(t.median_ms, 4), p20_ms=round(t.p20_ms, 4), p80_ms=round(t.p80_ms, 4))
        return {**point, **cells, **figures, "reps": len(t.samples_ms)}

    with open(args.out / "rope_cost.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for rnd in range(args.rounds):
            for pass_ in args.passes.split(","):
                for rope in ("pre", "post") if rnd % 2 == 0 else ("post", "pre"):
                    t = measure(fns[rope], pass_, (q, k, v), grad_out, **timing)
                    writer.writerow(row(t, impl=args.impl, rope=rope, round=rnd, **{"pass": pass_}))
                    fh.flush()
                    by.setdefault((pass_, rope), []).append(t.median_ms)
                    print(f"round {rnd} {pass_:7s} {rope:4s} {t.median_ms:9.3f} ms", flush=True)
        if not args.no_dense:
            t = measure(lambda: dense_attention(q, k, v, backend), "fwdbwd", (q, k, v), grad_out, **timing)
            dense = dict(topk=0, levels=0, pooling=0, impl="dense", rope="", round=0)
            writer.writerow(row(t, **dense, **{"pass": "fwdbwd"}))
            print(f"dense fwdbwd {t.median_ms:9.3f} ms")
    with open(args.out / "rope_cost_summary.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["pass", "pre_ms", "post_ms", "post_over_pre", "target_3pct_met"])
        for pass_ in args.passes.split(","):
            pre, post = percentile(by[(pass_, "pre")], 50), percentile(by[(pass_, "post")], 50)
            ratio = post / pre
            writer.writerow([pass_, f"{pre:.4f}", f"{post:.4f}", f"{ratio:.4f}", ratio <= 1.03])
            print(f"{pass_:7s} pre {pre:.3f} ms  post {post:.3f} ms  post/pre {ratio:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
