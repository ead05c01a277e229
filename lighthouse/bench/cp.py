"""`sweep --cp W`: the sweep's rows under context parallelism, one process per rank (launched by torchrun).

Every rank builds the same seeded full inputs, keeps its shard and times the same task; the ranks agree on
each row's status (the worst one), the timing is rank 0's (the collectives keep the ranks in step) and
`peak_mem_gib` is the largest per-rank peak. Only rank 0 writes results.csv, machine.json and the charts.

Rows: `lighthouse_<impl>_cp<W>` (lighthouse_attention with cp_group=, lighthouse.distributed) and the dense
baseline `ring_cp<W>`: PyTorch's own context-parallel SDPA (ring attention,
torch.distributed.tensor.experimental.context_parallel, its default head/tail load balancing), which needs
the CUDA SDPA kernels it templates (flash, efficient, cuDNN): `unsupported` elsewhere. No floor rows.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import List, Optional

import torch
import torch.distributed as dist

from ..distributed import shard_sequence
from ..harness.points import SweepSpec, Task
from ..harness.tables import IMPLS
from .inputs import Inputs, random_inputs
from .result import Result

STATUS_ORDER = ("ok", "unsupported", "invalid", "oom", "error")  # agreement: the worst status wins


def lighthouse_impl(impl: str, world: int) -> str:
    return f"{IMPLS[impl]}_cp{world}"


def ring_impl(world: int) -> str:
    return f"ring_cp{world}"


@dataclass
class CpContext:
    world: int
    rank: int
    group: object
    device: torch.device
    mesh: object = None
    _held: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def writer(self) -> bool:
        return self.rank == 0

    def release(self) -> None:
        self._held.close()
        self._held = contextlib.ExitStack()


def start(world: int, device: str) -> CpContext:
    """Join the process group torchrun set up (nccl on CUDA, gloo on the CPU); check its size is W."""
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        raise ValueError(
            f"--cp {world} runs one process per rank: launch it with "
            f"torchrun --nproc-per-node {world} -m lighthouse.cli sweep --cp {world} ..."
        )
    size = int(os.environ["WORLD_SIZE"])
    if size != world:
        raise ValueError(f"--cp {world} but torchrun started {size} processes (--nproc-per-node must equal --cp)")
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    dev = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    return CpContext(world, dist.get_rank(), dist.group.WORLD, dev)


def from_writer(value, ctx: CpContext):
    """Rank 0's `value` on every rank (a picklable object: a refusal, the rows --resume skips), so a check only
    rank 0 can make (it alone reads --out) ends the same way everywhere instead of leaving ranks in a collective."""
    box = [value if ctx.writer else None]
    dist.broadcast_object_list(box, src=0, group=ctx.group)
    return box[0]


def plan(spec: SweepSpec, impls: List[str], world: int) -> List[Task]:
    """Per shape (N ascending): the ring baseline for each pass, then every point's Lighthouse rows."""
    tasks: List[Task] = []
    for shape in spec.shapes:
        for pass_ in spec.passes:
            tasks.append(Task("dense", ring_impl(world), pass_, shape, invalid=shape.invalid_reason()))
        for point in (p for p in spec.points if p.shape == shape):
            try:
                s_sel, invalid = point.plan().selected_len, None
            except ValueError as err:
                s_sel, invalid = None, str(err)
            for impl in impls:
                for pass_ in spec.passes:
                    tasks.append(Task("lighthouse", lighthouse_impl(impl, world), pass_, shape, point, s_sel, invalid))
    return tasks


def preflight(task: Task, ctx: CpContext) -> Optional[str]:
    if task.kind == "lighthouse" and task.impl.startswith(IMPLS["triton"]):
        from ..harness.device import kernels_unavailable_reason

        return kernels_unavailable_reason(ctx.device)
    if task.kind == "dense" and ctx.device.type != "cuda":
        return "PyTorch's ring attention (context_parallel) templates the CUDA SDPA kernels: CUDA only"
    if task.kind == "dense":
        try:
            from torch.distributed.tensor.experimental import context_parallel  # noqa: F401
        except ImportError:
            return f"torch {torch.__version__} has no torch.distributed.tensor.experimental.context_parallel"
    return None


def _shards(x: Inputs, ctx: CpContext, config) -> Inputs:
    """This rank's shard of the full inputs, as fresh leaves (the full tensors are dropped)."""
    cut = [shard_sequence(t.detach(), ctx.world, ctx.rank, config).clone() for t in (x.q, x.k, x.v, x.grad_out)]
    return Inputs(*(t.requires_grad_() for t in cut[:3]), cut[3])


def build(task: Task, bench, backend: Optional[str]):
    """(callable, leaves, grad_out) of a task under context parallelism (cf. runner.build)."""
    ctx: CpContext = bench.cp
    full = random_inputs(task.shape, ctx.device, bench.seed)
    if task.kind == "dense":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.tensor.experimental import context_parallel

        from ..sdpa import dense_attention

        if ctx.mesh is None:
            ctx.mesh = init_device_mesh(ctx.device.type, (ctx.world,))
        bufs = [t.detach() for t in (full.q, full.k, full.v, full.grad_out)]
        ctx.release()
        ctx._held.enter_context(
            context_parallel(ctx.mesh, buffers=bufs, buffer_seq_dims=[2] * 4, no_restore_buffers=set(bufs))
        )
        with torch.no_grad():
            for t in bufs:  # now this rank's (head/tail) shard, still in the full-size storage: compact it
                t.set_(t.clone())
        del full
        q, k, v = (t.requires_grad_() for t in bufs[:3])
        return (lambda: dense_attention(q, k, v)), [q, k, v], bufs[3]
    impl = task.impl.removeprefix("lighthouse_").rsplit("_cp", 1)[0]
    cfg = task.point.config(impl, backend)  # the point's own config: its rope placement travels with it
    x = _shards(full, ctx, cfg)
    del full

    def run():
        from .. import lighthouse_attention

        return lighthouse_attention(x.q, x.k, x.v, config=cfg, cp_group=ctx.group)

    return run, x.leaves, x.grad_out


def agree(result: Result, ctx: CpContext) -> Result:
    """One row for all ranks: the worst status, rank 0's timing, the largest per-rank peak memory."""
    code = STATUS_ORDER.index(result.status) if result.status in STATUS_ORDER else len(STATUS_ORDER) - 1
    peak = result.timing.peak_bytes if result.timing is not None and result.timing.peak_bytes is not None else -1
    t = torch.tensor([code, peak], dtype=torch.int64, device=ctx.device if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    worst, peak_max = int(t[0]), int(t[1])
    if worst != code:
        return Result(
            STATUS_ORDER[worst],
            result.reason or f"another rank reported {STATUS_ORDER[worst]}",
            sdpa_backend=result.sdpa_backend,
        )
    if result.timing is not None and peak_max >= 0:
        result.timing.peak_bytes = peak_max
    return result
