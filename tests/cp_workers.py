"""Worker processes for test_context_parallel.py: each rank runs every check and writes its findings.

A check runs all of its collectives before it judges anything, so no rank leaves a check early while
the others wait in a collective.

A check returns None when it passes, else a message; the test module asserts per check, so one spawn of
W processes (a few seconds of start-up) serves all the tests of one world size.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import time
import traceback

import torch
import torch.distributed as dist

import lighthouse
from lighthouse.config import LighthouseConfig
from lighthouse.distributed import shard_sequence
from lighthouse.sdpa import dense_attention

# Small problems that still cut the sequence unevenly (N not a multiple of W, the last shard shorter)
# and exercise every halo: the first p**(l-1) - 1 tokens of each shard pull from the previous rank.
CASES = {
    2: dict(cfg=LighthouseConfig(levels=3, pooling=4, topk=256, impl="torch"), n=4100),
    4: dict(cfg=LighthouseConfig(levels=3, pooling=2, topk=512, impl="torch"), n=2100),
}
TOL = dict(atol=1e-5, rtol=1e-5)


def _inputs(b, hq, hkv, n, d, seed):
    g = torch.Generator().manual_seed(seed)
    q, k, v, w = (torch.randn(b, h, n, d, generator=g) for h in (hq, hkv, hkv, hq))
    return q, k, v, w


def _shards(world, rank, cfg, *xs):
    return [shard_sequence(x, world, rank, cfg).detach().clone().requires_grad_() for x in xs]


def _close(name, got, want):
    try:
        torch.testing.assert_close(got, want, **TOL)
    except AssertionError as err:
        return f"{name}: {err}"
    return None


def check_values_and_grads(world, rank, hq, hkv, seed, rope="pre", positions=None, batch=1):
    """Forward rows and dq, dk, dv of the rank's shard against the single-device call on the whole input.
    rope='post': the rank rotates at global positions (the whole sequence's `positions` (B, N), or its token
    index when None), so its rows equal the single-device rows."""
    case = CASES[world]
    cfg, n = case["cfg"].replace(rope=rope, rope_theta=50.0), case["n"]
    q, k, v, w = _inputs(batch, hq, hkv, n, 8, seed)
    pos = None if positions is None else positions(batch, n)
    full = [x.clone().requires_grad_() for x in (q, k, v)]
    out_full = lighthouse.lighthouse_attention(*full, config=cfg, positions=pos)
    (out_full * w).sum().backward()
    ql, kl, vl = _shards(world, rank, cfg, q, k, v)
    pos_l = None if pos is None else shard_sequence(pos, world, rank, cfg, dim=1)
    out = lighthouse.lighthouse_attention(ql, kl, vl, config=cfg, cp_group=dist.group.WORLD, positions=pos_l)
    (out * shard_sequence(w, world, rank, cfg)).sum().backward()
    want = [shard_sequence(x, world, rank, cfg) for x in (out_full, *(f.grad for f in full))]
    for name, got, exp in zip(("out", "dq", "dk", "dv"), (out, ql.grad, kl.grad, vl.grad), want):
        problem = _close(name, got, exp)
        if problem:
            return problem
    return None


def check_triton_path(world, rank, rope="pre"):
    """impl='triton' (interpreted on the CPU): the fused gather/pull wrapped around the exchanges gives the
    single-device Triton result, values and gradients, GQA, uneven N (rope='post': global positions)."""
    cfg = LighthouseConfig(levels=3, pooling=2, topk=128 * world, impl="triton", rope=rope, rope_theta=50.0)
    n = 128 * world * 4 + 52
    q, k, v, w = _inputs(1, 2 * world, world, n, 16, seed=7)
    full = [x.clone().requires_grad_() for x in (q, k, v)]
    out_full = lighthouse.lighthouse_attention(*full, config=cfg)
    (out_full * w).sum().backward()
    ql, kl, vl = _shards(world, rank, cfg, q, k, v)
    out = lighthouse.lighthouse_attention(ql, kl, vl, config=cfg, cp_group=dist.group.WORLD)
    (out * shard_sequence(w, world, rank, cfg)).sum().backward()
    want = [shard_sequence(x, world, rank, cfg) for x in (out_full, *(f.grad for f in full))]
    for name, got, exp in zip(("out", "dq", "dk", "dv"), (out, ql.grad, kl.grad, vl.grad), want):
        problem = _close(f"triton {name}", got, exp)
        if problem:
            return problem
    return None


def check_selection(world, rank, hq, hkv, seed):
    """The rank's block of the sub-sequence equals the single-device selection, index for index."""
    cfg, n = CASES[world]["cfg"], CASES[world]["n"]
    q, k, v, _ = _inputs(2, hq, hkv, n, 8, seed)
    full = lighthouse.select(q, k, v, config=cfg)
    part = lighthouse.select(*_shards(world, rank, cfg, q, k, v), config=cfg, cp_group=dist.group.WORLD)
    s = full.shape[-1] // world
    want = full[..., rank * s : (rank + 1) * s]
    if part.shape != want.shape or not torch.equal(part, want):
        bad = (part != want).sum() if part.shape == want.shape else "shape"
        return f"selection differs: {bad} ({tuple(part.shape)} vs {tuple(want.shape)})"
    return None


def check_module_and_mesh(world, rank):
    """LighthouseAttention(cp_group=mesh) equals the functional call; its dense phase equals dense SDPA."""
    from torch.distributed.device_mesh import init_device_mesh

    cfg, n = CASES[world]["cfg"], CASES[world]["n"]
    q, k, v, _ = _inputs(1, 4, 2, n, 8, seed=5)
    mesh = init_device_mesh("cpu", (world,))
    shards = _shards(world, rank, cfg, q, k, v)
    layer = lighthouse.LighthouseAttention(cfg, cp_group=mesh)
    got = layer(*shards)
    as_dict = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}  # config= as a dict of its fields
    got_dict = lighthouse.LighthouseAttention(config=as_dict, cp_group=mesh)(*shards)
    dense = layer.set_dense(True)(*shards)  # every collective runs before any verdict (no rank leaves early)
    want = shard_sequence(lighthouse.lighthouse_attention(q, k, v, config=cfg), world, rank, cfg)
    return (
        _close("module", got, want)
        or _close("module, config=dict", got_dict, want)
        or _close("dense phase", dense, shard_sequence(dense_attention(q, k, v), world, rank, cfg))
    )


def _expect_error(fn, *needles):
    try:
        fn()
    except ValueError as err:
        missing = [s for s in needles if s not in str(err)]
        return f"message {str(err)!r} lacks {missing}" if missing else None
    return "no ValueError raised"


def check_errors(world, rank):
    """Bad groups and shards raise a ValueError naming the constraint, on every rank (no hang)."""
    cfg, n = CASES[world]["cfg"], CASES[world]["n"]
    q, k, v, _ = _inputs(1, 4, 2, n, 8, seed=6)
    grp = dist.group.WORLD
    shards = _shards(world, rank, cfg, q, k, v)
    as_dict = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    half = [x[:, :, : x.shape[2] // 2] for x in (q, k, v)]  # every rank: the same wrong shard
    from torch.distributed.device_mesh import init_device_mesh

    checks = [
        (lambda: lighthouse.lighthouse_attention(*half, config=cfg, cp_group=grp), "tile-aligned shards"),
        (
            lambda: lighthouse.lighthouse_attention(*shards, config=cfg.replace(topk=128), cp_group=grp),
            "multiple of 128 * W",
        ),
        (
            lambda: lighthouse.lighthouse_attention(*shards, config=cfg.replace(scorer="dilated"), cp_group=grp),
            "scorer='dilated'",
        ),
        (lambda: lighthouse.lighthouse_attention(shards[0][:, :3], *shards[1:], config=cfg, cp_group=grp), "Hq=3"),
        (lambda: lighthouse.lighthouse_attention(*shards, config=cfg, cp_group="world"), "cp_group must be"),
        (
            lambda: lighthouse.lighthouse_attention(
                shards[0][:, : 4 if rank else 2],
                *(x[:, : 2 if rank else 1] for x in shards[1:]),
                config=cfg,
                cp_group=grp,
            ),
            "disagree",
        ),
        (
            lambda: (
                lighthouse.lighthouse_attention(shards[0][0], *shards[1:], config=cfg, cp_group=grp)
                if rank == 0
                else lighthouse.lighthouse_attention(*shards, config=cfg, cp_group=grp)
            ),
            "4 dimensions" if rank == 0 else "rank(s) [0]",
        ),
    ]
    last = world - 1  # NaN in the last rank's v, Inf in rank 0's q: refused on every rank, the bad one named
    nan_v = [x.clone() for x in shards]
    if rank == last:
        nan_v[2][0, 1, 5, 0] = float("nan")
    inf_q = [x.clone() for x in shards]
    if rank == 0:
        inf_q[0][0, 0, 7, 3] = float("inf")
    checks += [
        (
            lambda: lighthouse.lighthouse_attention(*nan_v, config=as_dict, cp_group=grp),
            "v contains NaN or Inf" if rank == last else f"rank(s) [{last}] are not finite",
        ),
        (
            lambda: lighthouse.select(*inf_q, config=cfg, cp_group=grp),
            "position 7: q contains NaN" if rank == 0 else "rank(s) [0] are not finite",
        ),
    ]
    if world == 4:
        mesh2d = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "cp"))
        checks.append((lambda: lighthouse.lighthouse_attention(*shards, config=cfg, cp_group=mesh2d), "1-D DeviceMesh"))
    problems = [p for p in (_expect_error(fn, needle) for fn, needle in checks) if p]  # all run on every rank
    return "; ".join(problems) or None


def run_all(world, rank):
    return {
        "values_mha": lambda: check_values_and_grads(world, rank, world, world, seed=1),
        "values_gqa": lambda: check_values_and_grads(world, rank, 4, 2, seed=2),
        "values_post": lambda: check_values_and_grads(world, rank, 4, 2, seed=4, rope="post"),
        "values_post_positions": lambda: check_values_and_grads(
            world,
            rank,
            world,
            world,
            seed=5,
            rope="post",
            batch=2,
            positions=lambda b, n: torch.arange(n)[None] * 2 + torch.tensor([[3], [40_000]])[:b],
        ),
        "selection_gqa": lambda: check_selection(world, rank, 4, 2, seed=3),
        "module_mesh_dense": lambda: check_module_and_mesh(world, rank),
        "errors": lambda: check_errors(world, rank),
        # opt-in: the interpreted Triton kernels take minutes on the CPU (LIGHTHOUSE_CP_TEST_TRITON=1)
        **(
            {
                "triton": lambda: check_triton_path(world, rank),
                "triton_post": lambda: check_triton_path(world, rank, rope="post"),
            }
            if os.environ.get("LIGHTHOUSE_CP_TEST_TRITON")
            else {}
        ),
    }


def worker(rank, world, init_file, out_dir):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    # a finite timeout turns a collective mismatch into an error instead of a hung test run
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60)
    )
    findings = {}
    try:
        for name, check in run_all(world, rank).items():
            t0 = time.perf_counter()
            try:
                findings[name] = check()
            except Exception:  # noqa: BLE001 - reported to the test, which fails with it
                findings[name] = traceback.format_exc()
            dist.barrier()
            if os.environ.get("CP_TEST_TIMES"):
                print(f"rank {rank} {name}: {time.perf_counter() - t0:.2f} s", flush=True)
    finally:
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as fh:
            json.dump(findings, fh)
        dist.destroy_process_group()
