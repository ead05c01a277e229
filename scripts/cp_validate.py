"""Context-parallel parity on real devices, before `sweep --cp`: each rank's output and dq, dk, dv against
the single-device call on the same full inputs (computed on every rank), for each impl and dtype.

    torchrun --standalone --nproc-per-node 2 scripts/cp_validate.py              # GPUs, NCCL
    torchrun --standalone --nproc-per-node 2 scripts/cp_validate.py --device cpu --impl torch   # gloo

Exit 0 when every rank is within tolerance (fp32: 1e-5; bf16: 2e-2 relative norm), else 1.
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.distributed as dist


def rel(a, b) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--impl", default="torch,triton", help="comma list of torch, triton")
    ap.add_argument(
        "--n",
        type=int,
        default=65536 + 100,
        help="sequence length (not a multiple of the layer's 128-token tile on purpose: padded, the last "
        "shard shorter)",
    )
    args = ap.parse_args()

    import lighthouse
    from lighthouse.config import LighthouseConfig
    from lighthouse.distributed import shard_sequence

    cuda = args.device == "cuda"
    if cuda:
        import os

        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")
    world, rank = dist.get_world_size(), dist.get_rank()
    dev = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    n = args.n if cuda else 4100
    hq, hkv, d = (8, 2, 128) if cuda else (4, 2, 16)
    ok = True
    for impl in args.impl.split(","):
        for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 2e-2)):
            if dtype == torch.bfloat16 and not cuda:
                continue
            topk = 512 * world if cuda else 128 * world
            cfg = LighthouseConfig(levels=3, pooling=4, topk=topk, impl=impl)
            g = torch.Generator(device=dev).manual_seed(0)
            q, k, v, w = (torch.randn(1, h, n, d, generator=g, device=dev, dtype=dtype) for h in (hq, hkv, hkv, hq))
            full = [x.clone().requires_grad_() for x in (q, k, v)]
            out_full = lighthouse.lighthouse_attention(*full, config=cfg)
            out_full.backward(w)
            part = [shard_sequence(x, world, rank, cfg).clone().requires_grad_() for x in (q, k, v)]
            out = lighthouse.lighthouse_attention(*part, config=cfg, cp_group=dist.group.WORLD)
            out.backward(shard_sequence(w, world, rank, cfg).contiguous())
            errs = {
                name: rel(got, shard_sequence(want, world, rank, cfg))
                for name, got, want in zip(
                    ("out", "dq", "dk", "dv"), (out, *(p.grad for p in part)), (out_full, *(f.grad for f in full))
                )
            }
            bad = {k_: e for k_, e in errs.items() if not e <= tol}
            ok &= not bad
            print(
                f"rank {rank} impl={impl} {str(dtype)[6:]} N={n} W={world}: "
                + " ".join(f"{k_}={e:.2e}" for k_, e in errs.items())
                + (f"  FAIL {sorted(bad)}" if bad else "  ok"),
                flush=True,
            )
            del q, k, v, w, full, out_full, part, out
    flag = torch.tensor([int(ok)], device=dev)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    dist.destroy_process_group()
    return 0 if int(flag) else 1


if __name__ == "__main__":
    sys.exit(main())
