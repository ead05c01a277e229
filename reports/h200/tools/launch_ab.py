"""Does kernels/launch.py's direct launch cut the host's work? Both paths in one process, in alternating blocks.

    python reports/h200/tools/launch_ab.py --out reports/h200/host-work/direct-ab    # one H200: under a minute

The lent host's speed moves from run to run by more than a launch's cost (PERF_NOTES steps 16 and 22), so the two
paths are compared inside one process: blocks of warm training calls alternate between the direct launch and
Triton's own dispatch (`kernels.launch.ENABLED`), and each figure is the median over its arm's calls. Per call:
`front`, from the layer's entry to the sub-sequence SDPA's call (the host work the GPU waits through when the host
is not ahead), `fwd` and `fwdbwd` host time (a device synchronisation before each call, outside the timed region).
Per launch: the forward's three launches before the SDPA (scores, select, gather), recorded from one warm call and
made again one at a time (same arguments: the same outputs are written), a synchronisation every 8 launches.
Rows (`launch_ab.csv`): n, topk, what, arm, median_us, p20_us, p80_us, samples; `machine.json` beside it.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from lighthouse import LighthouseConfig, lighthouse_attention  # noqa: E402
from lighthouse.harness import machine  # noqa: E402
from lighthouse.kernels import launch, layer  # noqa: E402

ARMS = ("direct", "triton")


def _quantiles(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2], xs[len(xs) // 5], xs[(4 * len(xs)) // 5]


def point(n: int, topk: int, args) -> list:
    cfg = LighthouseConfig(levels=3, pooling=4, topk=topk, impl="triton")
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (
        torch.randn(1, args.heads, n, args.head_dim, device="cuda", dtype=torch.bfloat16, generator=g).requires_grad_()
        for _ in range(3)
    )
    grad = torch.randn(1, args.heads, n, args.head_dim, device="cuda", dtype=torch.bfloat16, generator=g)
    stamp = [0.0]
    real_sdpa = layer.causal_sdpa

    def stamped(*a, **kw):
        stamp[0] = time.perf_counter()
        return real_sdpa(*a, **kw)

    layer.causal_sdpa = stamped
    samples = {}
    try:

        def call(arm):
            launch.ENABLED = arm == "direct"
            for t in (q, k, v):
                t.grad = None
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = lighthouse_attention(q, k, v, config=cfg)
            t1 = time.perf_counter()
            out.backward(grad)
            t2 = time.perf_counter()
            torch.cuda.synchronize()
            return {"front": stamp[0] - t0, "fwd": t1 - t0, "fwdbwd": t2 - t0}

        for arm in ARMS * 3:  # compile, fill both paths' caches
            for _ in range(5):
                call(arm)
        for block in range(args.blocks):
            arm = ARMS[block % 2]
            for _ in range(args.reps):
                for what, sec in call(arm).items():
                    samples.setdefault((what, arm), []).append(sec)
        # the forward's launches before the SDPA, made again one by one
        made = []
        real_call = launch.Launch.__call__
        launch.Launch.__call__ = lambda self: made.append(self) or real_call(self)
        try:
            launch.ENABLED = True
            with torch.no_grad():
                lighthouse_attention(q.detach(), k.detach(), v.detach(), config=cfg)
        finally:
            launch.Launch.__call__ = real_call
        torch.cuda.synchronize()
        front = made[:3]
        for block in range(args.blocks):
            arm = ARMS[block % 2]
            launch.ENABLED = arm == "direct"
            for one in front:
                name = f"launch:{one.kernel.fn.__name__}"
                for i in range(args.reps):
                    if i % 8 == 0:
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    one()
                    samples.setdefault((name, arm), []).append(time.perf_counter() - t0)
        torch.cuda.synchronize()
    finally:
        layer.causal_sdpa = real_sdpa
        launch.ENABLED = True
    rows = []
    for (what, arm), xs in samples.items():
        med, p20, p80 = _quantiles([1e6 * x for x in xs])
        rows.append(
            dict(
                n=n,
                topk=topk,
                what=what,
                arm=arm,
                median_us=round(med, 2),
                p20_us=round(p20, 2),
                p80_us=round(p80, 2),
                samples=len(xs),
            )
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq", default="8192,98304")
    ap.add_argument("--topk", default="512,1536")
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--blocks", type=int, default=20, help="alternating blocks (even: direct, odd: Triton's)")
    ap.add_argument("--reps", type=int, default=40, help="calls (or launches) per block")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("Error: launch_ab.py needs CUDA (the direct launch is CUDA-only)")
    rows = []
    for n, topk in zip((int(x) for x in args.seq.split(",")), (int(x) for x in args.topk.split(","))):
        rows += point(n, topk, args)
    by = {(r["n"], r["what"], r["arm"]): r["median_us"] for r in rows}
    for n, what in sorted({(r["n"], r["what"]) for r in rows}):
        d, t = by[(n, what, "direct")], by[(n, what, "triton")]
        print(f"{n:>6} {what:28s} direct {d:8.1f} us  triton {t:8.1f} us  ({d - t:+.1f})")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        with open(args.out / "launch_ab.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        (args.out / "machine.json").write_text(json.dumps(machine.collect(sys.argv), indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
