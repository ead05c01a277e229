"""Host-side cost of one Lighthouse forward + backward on the Triton path, measured on the CPU.

Issue 13 item 2: at N = 8K the H200 runs the layer in 1.42 ms fwd+bwd against a GPU floor of about 0.54 ms,
so the layer is bound by the host issuing its work. No GPU is needed to measure that host work: this script
replaces every Triton launch (`kernel[grid](...)`) by a no-op and the sub-sequence SDPA by one cheap autograd
op, keeps everything else (lighthouse_attention's dispatch, make_plan, the wrappers' allocations and derived
sizes, the finiteness screen, the autograd.Function), runs it on tiny CPU tensors many times and prints the
median microseconds per call and a cProfile breakdown sorted by tottime.

What it does NOT measure: the real Triton launch cost (about 10-20 us each on a GPU host), cuDNN's own host
work, and the CUDA-only parts of the deferred finiteness check (the pinned D2H copy and the event): on the
CPU that check reads the 0-dim value directly. It is CPU host time with stubbed kernels, not a GPU timing.

    PYTHONPATH=$PWD python3 reports/h200/tools/host_cost.py [--reps 2000] [--blocks 5] [--profile 25]

Before/after a change: run it once with PYTHONPATH pointing at a checkout of the older commit (the stubs
patch whichever `lighthouse` is imported), once at this one, alternately, on the same quiet machine.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import time

os.environ.setdefault("TRITON_INTERPRET", "1")  # impl='triton' accepts CPU tensors (the launches are stubbed)

import torch  # noqa: E402


class _NoLaunch:
    """Stands in for a @triton.jit function: kernel[grid](*args, **meta) does nothing."""

    def __init__(self, name, zero_args=()):
        self.name, self.zero_args = name, zero_args

    def __getitem__(self, grid):
        return self._launch if self.zero_args else _noop

    def _launch(self, *args, **kwargs):
        for i in self.zero_args:  # outputs the layer reads back (v_sub's finiteness screen): keep them finite
            for out in args[i] if isinstance(args[i], tuple) else (args[i],):
                out.zero_()


def _noop(*args, **kwargs):
    return None


def _stub_sdpa(q, k, v, backend=None):
    """One autograd op over q, k, v with the output's shape: the backward reaches every sub-sequence leaf."""
    return q + k + v


def install_stubs() -> None:
    from lighthouse.kernels import gather, layer, scatter, scores, select

    scores._norm_scores_kernel = _NoLaunch("scores")
    select._select_kernel = _NoLaunch("select")
    gather._gather_kernel = _NoLaunch("gather", zero_args=(2,))  # OUTS
    scatter._pull_kernel = _NoLaunch("pull")
    layer.causal_sdpa = _stub_sdpa


def one_call(attn, q, k, v, d_out, cfg):
    q.grad = k.grad = v.grad = None  # as a training step after zero_grad(set_to_none=True): no accumulation
    out = attn(q, k, v, config=cfg)
    out.backward(d_out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=2000, help="timed calls (after 200 warm-up calls)")
    ap.add_argument(
        "--blocks",
        type=int,
        default=5,
        help="the calls split into blocks; the best block's median "
        "is the least disturbed by other load on a shared CPU",
    )
    ap.add_argument("--seq-len", type=int, default=8192, help="N (8192: the issue's 8K point)")
    ap.add_argument("--heads", type=int, default=1, help="query and kv heads (host work does not depend on it)")
    ap.add_argument("--head-dim", type=int, default=1, help="D; tiny, so the CPU's real tensor work stays small")
    ap.add_argument("--profile", type=int, default=25, help="rows of the cProfile table (0: none)")
    args = ap.parse_args()

    torch.set_num_threads(1)
    install_stubs()
    from lighthouse import lighthouse_attention
    from lighthouse.config import LighthouseConfig

    cfg = LighthouseConfig(levels=3, pooling=4, topk=512, scorer="norm", impl="triton", sdpa_backend=None)
    shape = (1, args.heads, args.seq_len, args.head_dim)
    q, k, v = (torch.randn(shape, dtype=torch.bfloat16).requires_grad_() for _ in range(3))
    d_out = torch.randn(shape, dtype=torch.bfloat16)

    for _ in range(200):
        one_call(lighthouse_attention, q, k, v, d_out, cfg)
    times, block_medians = [], []
    per_block = max(1, args.reps // args.blocks)
    for _ in range(args.blocks):
        block = []
        for _ in range(per_block):
            t0 = time.perf_counter()
            one_call(lighthouse_attention, q, k, v, d_out, cfg)
            block.append(time.perf_counter() - t0)
        block_medians.append(statistics.median(block) * 1e6)
        times += block
    times.sort()
    med = statistics.median(times) * 1e6
    p10, p90 = times[len(times) // 10] * 1e6, times[9 * len(times) // 10] * 1e6
    print(
        f"host time per fwd+bwd (CPU, stubbed kernels, N={args.seq_len}, k=512, L=3, p=4, bf16): "
        f"median {med:.1f} us, best block median {min(block_medians):.1f} us "
        f"(p10 {p10:.1f}, p90 {p90:.1f}; {len(times)} calls in {args.blocks} blocks)"
    )

    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(min(args.reps, 500)):
            one_call(lighthouse_attention, q, k, v, d_out, cfg)
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(args.profile)
        print(buf.getvalue())


if __name__ == "__main__":
    main()
