"""Issue 22: the launch shape of the post-mode pooling-backward pull (kernels/scatter.py), picked by measurement.

    python scripts/tune_pull_post.py --out reports/h200/rope/tune-pull

At N = 96K (98,304), k = 1536, L = 3, p = 4, B = 1, H = 8, D = 128, bf16 (the issue's target point) the pull's
inputs are made as the layer's backward makes them (selection, gather, SDPA, fan-in and the SDPA's backward: its
dq, dk, dv of the sub-sequence; lighthouse/bench/profile.py does the same), then:

1. the pull alone (kernels.layer.run_pool_bwd), post mode, for every launch shape of the grid (warps, heads a
   program, token rows a program, dv in its own launch, hoisted inverse-map loads), each next to pre mode's pull
   on the same inputs, pre and post in alternating order, over --rounds rounds;
2. the --top fastest shapes (by the pull's host-ahead median) and today's default: the whole layer fwd+bwd in post
   mode against pre, alternating rounds (as scripts/rope_cost.py), post/pre taken round by round.

Timing: lighthouse.harness.timing.measure (CUDA events, L2 flushed before each repetition; as launched and host
ahead). The winner: the shape of step 2 with the lowest median post/pre (host ahead). Its module settings
(SETTINGS below) are what to make the default. Writes OUT/tune_pull_post.csv (one row per shape, stage, placement
and round, every setting a column), OUT/summary.csv (one row per shape) and OUT/machine.json. --quick: a small
grid and few repetitions (with --n/--topk/--heads it runs on the CPU under TRITON_INTERPRET: the smoke test).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import statistics
import sys
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from lighthouse import LighthouseConfig, lighthouse_attention  # noqa: E402
from lighthouse.harness import machine  # noqa: E402
from lighthouse.harness.timing import measure  # noqa: E402
from lighthouse.kernels import layer, precompile, scatter, sizes  # noqa: E402
from lighthouse.kernels.launch import stand_in  # noqa: E402
from lighthouse.kernels.rope import rope_args  # noqa: E402
from lighthouse.plan import make_plan  # noqa: E402


class Shape(NamedTuple):
    """A post-mode pull launch shape: the values of kernels/scatter.py's settings (SETTINGS)."""

    warps: int
    per_program: int
    block_t: int
    split: bool
    hoist: bool

    @property
    def name(self) -> str:
        return f"w{self.warps}_h{self.per_program}_t{self.block_t}_split{self.split:d}_hoist{self.hoist:d}"


#: Shape field -> the kernels/scatter.py setting that encodes it (the lead makes the winner the default there).
SETTINGS = dict(
    warps="POST_NUM_WARPS",
    per_program="MAX_HEADS",
    block_t="POST_BLOCK_T",
    split="POST_SPLIT_UNROTATED",
    hoist="POST_HOIST_INV",
)
DEFAULT = Shape(*(getattr(scatter, name) for name in SETTINGS.values()))
POINT = ("n", "topk", "levels", "pooling", "heads", "kv_heads", "head_dim", "dtype")
COLUMNS = (
    *POINT,
    "stage",
    "rope",
    "shape",
    "default",
    *Shape._fields,
    "heads_launched",
    "launches",
    "round",
    "median_ms",
    "p20_ms",
    "p80_ms",
    "host_ahead_ms",
    "host_ahead_p20_ms",
    "host_ahead_p80_ms",
    "reps",
)
SUMMARY = (
    "shape",
    "default",
    *Shape._fields,
    "heads_launched",
    "launches",
    "pull_post_ms",
    "pull_pre_ms",
    "pull_post_over_pre",
    "layer_post_ms",
    "layer_pre_ms",
    "layer_post_over_pre",
    "layer_post_over_pre_launched",
    "target_3pct_met",
    "winner",
)


def apply(shape: Shape) -> None:
    """Set kernels/scatter.py's post-mode settings to `shape` (its memo keys hold them: no stale launch)."""
    for field, name in SETTINGS.items():
        setattr(scatter, name, getattr(shape, field))


def _ints(text: str, name: str, allowed=None) -> List[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--{name} must be comma-separated integers, got {text!r}") from None
    bad = [x for x in values if (x not in allowed if allowed is not None else x < 1)]
    if not values or bad:
        what = f"values in {sorted(allowed)}" if allowed is not None else "integers >= 1"
        raise ValueError(f"--{name} takes {what}, got {text!r}")
    return values


def grid(args) -> List[Shape]:
    """The shapes to time: the product of the options' values, today's default first (always timed)."""
    if args.quick:
        shapes = [Shape(4, 1, 32, True, True)]
    else:
        pow2 = {1, 2, 4, 8, 16, 32, 64, 128}
        shapes = [
            Shape(w, h, t, bool(s), bool(x))
            for w, h, t, s, x in itertools.product(
                _ints(args.warps, "warps", {1, 2, 4, 8, 16, 32}),
                _ints(args.per_program, "per-program"),
                # the kernel caps a program's rows at 8192 / D (padded): a larger ask would run, and be recorded, wrong
                _ints(args.block_t, "block-t", {t for t in pow2 if 16 <= t <= 8192 // sizes.next_pow2(args.head_dim)}),
                _ints(args.split, "split", {0, 1}),
                _ints(args.hoist, "hoist", {0, 1}),
            )
        ]
    return [DEFAULT] + [s for s in shapes if s != DEFAULT]


def pull_inputs(q, k, v, grad_out, plan):
    """(sel, the SDPA backward's dq, dk, dv of the sub-sequence, rope args): the pull's inputs as the layer's
    backward makes them (lighthouse/bench/profile.py's triton_stages)."""
    rope = rope_args(plan, q.device)
    with torch.no_grad():
        sel, check = layer.run_selection(q, k, v, plan)
        check.raise_if_bad()
        subs = [x.detach().requires_grad_() for x in layer.run_gather(q, k, v, sel, plan, rope)]
    with torch.enable_grad():
        out_sub = layer.run_sdpa(*subs, plan)
    with torch.no_grad():
        d_out_sub = layer.run_fan_in(grad_out, sel, plan)
    return sel, list(layer.run_sdpa_bwd(out_sub, subs, d_out_sub)), rope


def launched(shape: Optional[Shape], d_subs, sel, plan, rope) -> list:
    """The pull launches `shape` makes (None: pre mode's, with `plan` pre's and rope None), built on stand-ins
    (nothing runs, no memory): their compile-time arguments, for the CSV and for precompiling."""
    apply(DEFAULT if shape is None else shape)
    made = []
    inv = stand_in(sel.inv)
    rope_meta = None if rope is None else rope._replace(inv_freq=stand_in(rope.inv_freq))

    def pull(xs, rot):  # as layer.run_pool_bwd: one pull per shape of the gradients (GQA: dq, then dk with dv)
        outs, launches = scatter.pull_launches(xs, inv, plan, False, rope=rope_meta, rotate=rot)
        made.extend(launches)
        return outs

    layer._by_shape(pull, [stand_in(x) for x in d_subs])
    return made


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=98304)
    ap.add_argument("--topk", type=int, default=1536)
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--pooling", type=int, default=4)
    ap.add_argument("--heads", type=int, default=8, help="query heads (kv heads: --kv-heads, default the same)")
    ap.add_argument("--kv-heads", type=int, default=None)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    ap.add_argument("--warps", default="4,8", help="POST_NUM_WARPS values")
    ap.add_argument("--per-program", default="1,2,4,8", help="MAX_HEADS values (heads a program)")
    ap.add_argument("--block-t", default="16,32", help="POST_BLOCK_T values (token rows a program)")
    ap.add_argument("--split", default="0,1", help="POST_SPLIT_UNROTATED values (dv in its own launch)")
    ap.add_argument("--hoist", default="0,1", help="POST_HOIST_INV values (inverse-map loads first)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds over the pull grid")
    ap.add_argument("--rep", type=int, default=20, help="repetitions of a pull measurement")
    ap.add_argument("--top", type=int, default=3, help="shapes timed in the whole layer")
    ap.add_argument("--layer-rounds", type=int, default=4)
    ap.add_argument("--layer-rep", type=int, default=30)
    ap.add_argument(
        "--quick", action="store_true", help="the default and one other shape, one round and repetition, top 1"
    )
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except ValueError as err:
        print(f"Error: {err}", file=sys.stderr)
        return 2
    finally:
        apply(DEFAULT)


def run(args) -> int:
    for name in ("rounds", "rep", "top", "layer_rounds", "layer_rep"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    shapes = grid(args)
    if args.quick:
        args.rounds, args.rep, args.top, args.layer_rounds, args.layer_rep = 1, 1, 1, 1, 1
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    dtype = getattr(torch, args.dtype)
    hkv = args.kv_heads or args.heads
    base = dict(levels=args.levels, pooling=args.pooling, topk=args.topk, impl="triton")
    backend = "cudnn" if cuda else "math"
    post_cfg = LighthouseConfig(**base, sdpa_backend=backend, rope="post")
    pre_cfg = post_cfg.replace(rope="pre")
    g = torch.Generator(device=device).manual_seed(0)
    q = torch.randn(1, args.heads, args.n, args.head_dim, generator=g, device=device, dtype=dtype)
    k, v = (torch.randn(1, hkv, args.n, args.head_dim, generator=g, device=device, dtype=dtype) for _ in range(2))
    grad_out = torch.randn(q.shape, generator=g, device=device, dtype=dtype)
    plan = make_plan(post_cfg, q, k, v)
    pre_plan = make_plan(pre_cfg, q, k, v)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "machine.json").write_text(
        json.dumps(machine.collect(sys.argv, vars(args) | {"out": str(args.out)}), indent=2, default=str) + "\n"
    )
    sel, d_subs, rope = pull_inputs(q, k, v, grad_out, plan)
    shown = {s: launched(s, d_subs, sel, plan, rope) for s in shapes}
    shown[None] = launched(None, d_subs, sel, pre_plan, None)
    if cuda:  # every shape's kernels compiled at once, in threads (kernels/precompile.py), before any timing
        precompile.warm([x for made in shown.values() for x in made], device)
    point = dict(
        n=args.n,
        topk=args.topk,
        levels=args.levels,
        pooling=args.pooling,
        heads=args.heads,
        kv_heads=hkv,
        head_dim=args.head_dim,
        dtype=args.dtype,
    )
    pre_shape = dict(warps=scatter.NUM_WARPS, per_program=1, block_t=scatter.BLOCK_T, split=False, hoist=False)

    def cells(shape: Optional[Shape]) -> dict:
        made = shown[shape]
        settings = pre_shape if shape is None else shape._asdict()  # pre: one head a program, its own settings
        return dict(
            shape="pre" if shape is None else shape.name,
            default="" if shape is None else shape == DEFAULT,
            **settings,
            heads_launched=max(x.kwargs["HEADS"] for x in made),
            launches=len(made),
        )

    rows: List[dict] = []
    pull: Dict[Optional[Shape], List[tuple]] = {}  # shape (None: pre) -> per round (launched, host ahead) medians
    ratios: Dict[Shape, List[tuple]] = {}  # layer: shape -> per round (post/pre launched, post/pre host ahead)
    layer_ms: Dict[Optional[Shape], List[float]] = {}

    def timed(stage, shape, rnd, fn, pass_, leaves, grad, rep) -> tuple:
        warmup = 1 if args.quick else 3
        t = measure(
            fn, pass_, leaves, grad, device=device, warmup=warmup, rep=rep, min_rep=min(5, rep), max_seconds=2.0
        )
        ahead = t.host_ahead_median_ms if t.host_ahead_ms else t.median_ms
        rows.append(
            dict(
                **point,
                stage=stage,
                rope="pre" if shape is None else "post",
                **cells(shape),
                round=rnd,
                median_ms=round(t.median_ms, 4),
                p20_ms=round(t.p20_ms, 4),
                p80_ms=round(t.p80_ms, 4),
                host_ahead_ms=round(ahead, 4),
                host_ahead_p20_ms=round(t.host_ahead_p20_ms or t.p20_ms, 4),
                host_ahead_p80_ms=round(t.host_ahead_p80_ms or t.p80_ms, 4),
                reps=len(t.samples_ms),
            )
        )
        label = "pre" if shape is None else shape.name
        print(f"round {rnd} {stage:6} {label:28} {t.median_ms:9.4f} ms  host ahead {ahead:9.4f} ms", flush=True)
        return t.median_ms, ahead

    def pull_fn(shape: Optional[Shape]):
        def fn():
            apply(DEFAULT if shape is None else shape)
            with torch.no_grad():
                if shape is None:
                    return layer.run_pool_bwd(d_subs, sel, pre_plan, None)[0]
                return layer.run_pool_bwd(d_subs, sel, plan, rope)[0]

        return fn

    # 1. the pull alone, every shape next to pre, the order of each pair and of the grid alternating by round
    for rnd in range(args.rounds):
        for i, shape in enumerate(shapes if rnd % 2 == 0 else shapes[::-1]):
            for s in (None, shape) if (rnd + i) % 2 == 0 else (shape, None):
                pull.setdefault(s, []).append(timed("pull", s, rnd, pull_fn(s), "fwd", (), None, args.rep))
    d_subs.clear()  # the sub-sequence gradients freed before the layer runs
    pre_pull = statistics.median(x[1] for x in pull[None])
    ranked = sorted(shapes, key=lambda s: statistics.median(x[1] for x in pull[s]))
    finalists = ranked[: args.top] + ([DEFAULT] if DEFAULT not in ranked[: args.top] and not args.quick else [])

    # 2. the whole layer fwd+bwd, the finalists in post mode against pre, alternating rounds
    leaves = [x.detach().requires_grad_() for x in (q, k, v)]

    def layer_fn(shape: Optional[Shape]):
        def fn():
            apply(DEFAULT if shape is None else shape)
            return lighthouse_attention(*leaves, config=pre_cfg if shape is None else post_cfg)

        return fn

    for rnd in range(args.layer_rounds):
        order = [None, *finalists] if rnd % 2 == 0 else [*finalists[::-1], None]
        got = {s: timed("layer", s, rnd, layer_fn(s), "fwdbwd", leaves, grad_out, args.layer_rep) for s in order}
        for s in order:
            layer_ms.setdefault(s, []).append(got[s][1])
        for s in finalists:
            ratios.setdefault(s, []).append((got[s][0] / got[None][0], got[s][1] / got[None][1]))

    def ratio(shape, which):
        return statistics.median(r[which] for r in ratios[shape])

    winner = min(finalists, key=lambda s: ratio(s, 1))
    with open(args.out / "tune_pull_post.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    with open(args.out / "summary.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=SUMMARY)
        writer.writeheader()
        for shape in ranked:
            post_pull = statistics.median(x[1] for x in pull[shape])
            row = {k: v for k, v in cells(shape).items() if k in SUMMARY}
            row.update(pull_post_ms=f"{post_pull:.4f}", pull_pre_ms=f"{pre_pull:.4f}")
            row.update(pull_post_over_pre=f"{post_pull / pre_pull:.4f}", winner=shape == winner)
            if shape in ratios:
                row.update(
                    layer_post_ms=f"{statistics.median(layer_ms[shape]):.4f}",
                    layer_pre_ms=f"{statistics.median(layer_ms[None]):.4f}",
                    layer_post_over_pre=f"{ratio(shape, 1):.4f}",
                    layer_post_over_pre_launched=f"{ratio(shape, 0):.4f}",
                    target_3pct_met=ratio(shape, 1) <= 1.03,
                )
            writer.writerow(row)
    for shape in finalists:
        tag = "winner" if shape == winner else "default" if shape == DEFAULT else "finalist"
        host_ahead, as_launched = ratio(shape, 1), ratio(shape, 0)
        print(f"{tag:8} {shape.name}: fwd+bwd post/pre {host_ahead:.4f} host ahead, {as_launched:.4f} as launched")
    settings = ", ".join(f"{SETTINGS[field]} = {value!r}" for field, value in winner._asdict().items())
    print(f"as the default, in kernels/scatter.py: {settings}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
