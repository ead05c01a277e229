"""`lighthouse-bench quality`: every point of a grid measured against dense attention, row by row.

The grid, suites and conventions are `sweep`'s: the same options and suite files give the same points. One row
per (inputs, layer, point) goes to quality.csv (tables.QUALITY) through the harness's row loop, which owns
--out, --resume, Ctrl-C, failures (ok / oom / invalid / unsupported / error) and the charts.

The dense reference (the only N^2 work besides the dilated scorer) is computed once per (shape, inputs,
layer) and shared by every configuration of that shape: one (shape, inputs) group is one item of the loop;
invalid points become rows before any tensor is allocated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..harness import failures
from ..harness.loop import Item, RowLoop, RunError
from ..harness.points import nothing_can_run
from ..harness.tables import QUALITY

QUALITY_FILE = "quality.csv"
#: Suite used when none is given: the issue's grid on CUDA, the sweep's CPU smoke preset on the CPU.
DEFAULT_SUITE = {"cuda": "quality", "cpu": "quick"}


@dataclass
class QualitySpec:
    """A resolved quality run: the sweep grid's points plus what to measure them on."""

    suite: Optional[str]
    device: str
    points: list  # grid Points
    inputs: List[str]
    seed: int = 0
    needles_per_bucket: int = 4
    heldout: Optional[Path] = None
    options: dict = field(default_factory=dict)
    rope_theta: float = 10000.0  # the RoPE of the post rows and of needle-rope's rotated view (not checkpoints')


def resolve(
    suite: Optional[str],
    flags: Dict[str, object],
    inputs: str,
    needles: int,
    heldout: Optional[Path],
    cuda_available: bool,
) -> QualitySpec:
    """Suite + grid flags exactly as `sweep` reads them (timing keys of a suite are ignored) + the inputs."""
    from ..harness import points
    from .inputs import parse_inputs

    device = flags.get("device") or ("cuda" if cuda_available else "cpu")
    spec = points.resolve(suite or DEFAULT_SUITE.get(str(device), "quick"), flags, cuda_available)
    kinds = parse_inputs(inputs)
    if needles < 1:
        raise ValueError(f"--needles must be >= 1 (needles per depth bucket), got {needles}")
    if heldout is not None and not Path(heldout).is_file():
        raise ValueError(f"--heldout: no such file {heldout}")
    options = {
        "suite": spec.suite,
        "device": spec.device,
        "seed": spec.seed,
        "inputs": kinds,
        "needles": needles,
        "heldout": str(heldout) if heldout else None,
        "grid": spec.options.get("grid"),
        "rope_theta": spec.options["rope_theta"],
    }
    return QualitySpec(
        spec.suite,
        spec.device,
        spec.points,
        kinds,
        spec.seed,
        needles,
        heldout,
        options,
        rope_theta=spec.options["rope_theta"],
    )


def _point_cells(point, device: str) -> dict:
    return {"device": device, **point.cells()}


def plan_groups(spec: QualitySpec):
    """[(shape, inputs kind, [points])] in run order: shapes as the sweep orders them, inputs as given."""
    by_shape: Dict = {}
    for p in spec.points:
        by_shape.setdefault(p.shape, []).append(p)
    return [(shape, kind, pts) for shape, pts in by_shape.items() for kind in spec.inputs]


def _input_sets(shape, kind: str, spec: QualitySpec, device):
    """Yields QualityInputs: one for random/needle, one per layer for a checkpoint."""
    from .inputs import checkpoint_layers, synthetic

    if kind.startswith("checkpoint:"):
        yield from checkpoint_layers(kind, shape.batch, shape.n, shape.dtype, device, spec.seed, spec.heldout)
    else:
        yield synthetic(
            kind,
            shape.batch,
            shape.heads,
            shape.kv_heads,
            shape.n,
            shape.head_dim,
            shape.dtype,
            device,
            spec.seed,
            spec.needles_per_bucket,
            spec.rope_theta,
        )


def run(
    spec: QualitySpec,
    out: Path,
    *,
    resume: bool = False,
    plot: bool = True,
    argv: Optional[Sequence[str]] = None,
    console=None,
) -> int:
    """Measure every (inputs, point) into out/quality.csv through the harness's row loop; returns the exit code
    (0; 130 Ctrl-C; 1 device lost or nothing ok; 2 every row invalid or unsupported). Raises RunError (a
    ValueError naming the option) for a bad --out or a --resume of another run."""
    from ..harness.device import resolve_device
    from .evaluate import lighthouse_impl

    why = nothing_can_run(spec.points)
    if why:
        raise RunError(why)
    dev = resolve_device(spec.device)
    impl = lighthouse_impl(dev)
    loop = RowLoop(
        "quality",
        out,
        QUALITY,
        QUALITY_FILE,
        resume=resume,
        options={**spec.options, "impl": impl},
        argv=argv,
        console=console,
        classify=classify,
    )
    done = set(loop.prepare())  # oom/error/torn rows are run again
    groups = plan_groups(spec)
    info = loop.begin()
    loop.console.print(
        f"[bold]lighthouse-bench quality[/] suite={spec.suite} device={spec.device} "
        f"{info.get('gpu') or info.get('cpu')}: {len(spec.points)} points x {len(spec.inputs)} inputs "
        f"({','.join(spec.inputs)}) -> {loop.path}"
    )
    items = [
        Item(
            f"{shape.label()} {kind}",
            lambda shape=shape, kind=kind, pts=pts: _group_rows(shape, kind, pts, spec, dev, impl, done, loop.key),
            weight=len(pts),
        )
        for shape, kind, pts in groups
    ]
    outcome = loop.run(items, total=sum(len(pts) for _, _, pts in groups), device=dev)

    def charts(path: Path):
        from .charts import quality_charts

        return quality_charts(path) if plot else []

    return loop.finish(outcome, charts=charts)


def classify(exc: BaseException) -> Tuple[str, str]:
    """The harness's classifier, with the quality run's own `cannot run here` (the gla scorer without fla)."""
    from .evaluate import Unsupported

    return failures.classify(exc, unsupported=(Unsupported,))


def _group_rows(shape, kind: str, points, spec: QualitySpec, dev, impl: str, done, key):
    """The rows of one (shape, inputs) group: one dense reference per input set (a checkpoint gives one set per
    layer), shared by every point; a failure of the inputs or of the reference becomes every point's row."""
    import torch

    from ..harness.device import device_ok, free_memory
    from .dense import dense_reference
    from .evaluate import dense_needle_recall, measure_point, view_of

    def row(cells: dict, status: str, reason: str = "", figures: Optional[dict] = None) -> dict:
        return {**cells, "impl": impl, "status": status, "reason": reason or None, "seed": spec.seed, **(figures or {})}

    try:
        sets = list(_input_sets(shape, kind, spec, dev))  # a checkpoint's layers: failures caught here
    except Exception as exc:  # noqa: BLE001 - a bad checkpoint/heldout: every row of the group says why
        status, reason = classify(exc)
        for p in points:
            cells = {**_point_cells(p, spec.device), "inputs": kind, "layer": None}
            if key(cells) not in done:
                yield row(cells, status, reason)
        return
    for x in sets:
        layer_cells = {"inputs": kind, "layer": x.layer}
        if x.layer is not None:  # a checkpoint: the model's own head shape
            layer_cells.update(heads=x.q.shape[1], kv_heads=x.k.shape[1], head_dim=x.q.shape[-1])
        todo = []
        for p in points:
            cells = {**_point_cells(p, spec.device), **layer_cells}
            if key(cells) in done:
                continue
            try:
                check_point(p, kind)
            except ValueError as err:  # invalid: no tensor allocated
                yield row(cells, "invalid", str(err), {"seconds": 0.0})
                continue
            todo.append((p, cells))
        # one placement at a time: its view of x, and dense attention on what that view's model sees (shared
        # by both placements where it is the same, see placement.py)
        refs: Dict[str, tuple] = {}
        for rope in dict.fromkeys(p.rope for p, _ in todo):
            points_here = [(p, cells) for p, cells in todo if p.rope == rope]
            try:
                view = view_of(x, rope)
                if view.dense_key not in refs:
                    refs.clear()  # one dense reference alive at a time
                    free_memory(dev)
                    ref = dense_reference(view.dense_q, view.dense_k, x.v)
                    refs[view.dense_key] = (ref, dense_needle_recall(x, ref))
                ref, dense_recall = refs[view.dense_key]
            except Exception as exc:  # noqa: BLE001 - every point of the set gets the reference's failure
                status, reason = classify(exc)
                for p, cells in points_here:
                    yield row(cells, status, f"dense reference: {reason}")
                if not device_ok(dev):
                    return  # the row loop stops the run: the CUDA context is lost
                continue
            for p, cells in points_here:
                t0 = time.perf_counter()
                try:
                    figures = measure_point(x, ref, p.levels, p.pooling, p.topk, p.scorer, rope=rope, view=view)
                    if dev.type == "cuda":
                        torch.cuda.synchronize(dev)
                    status, reason = "ok", ""
                except Exception as exc:  # noqa: BLE001 - classified, recorded, never fatal
                    figures, (status, reason) = {}, classify(exc)
                figures.update(seconds=round(time.perf_counter() - t0, 3), dense_needle_recall=dense_recall)
                yield row(cells, status, reason, figures)
                if status != "ok":
                    free_memory(dev)
                    if not device_ok(dev):
                        return
            view = ref = None
        refs.clear()
        free_memory(dev)


def describe(spec: QualitySpec, console=None) -> Tuple[int, int]:
    """--dry-run: the points and how many rows would be measured or marked invalid; (rows, invalid rows)."""
    from rich.console import Console

    console = console or Console()
    invalid = 0
    for p in spec.points:
        notes = []
        for kind in spec.inputs:
            try:
                notes.append(f"S={check_point(p, kind).selected_len}")
            except ValueError as err:
                notes.append(f"{kind}: invalid: {err}")
                invalid += 1
        rope = "" if p.rope == "pre" else f" rope={p.rope}"
        note = "; ".join(dict.fromkeys(notes))
        console.print(
            f"  {p.shape.label()}  L{p.levels} p{p.pooling} k{p.topk} {p.scorer}{rope}  {note}", highlight=False
        )
    rows = len(spec.points) * len(spec.inputs)
    console.print(
        f"{len(spec.points)} points x {len(spec.inputs)} inputs ({', '.join(spec.inputs)}) = {rows} rows "
        f"({invalid} invalid; a checkpoint gives one row per layer)"
    )
    return rows, invalid


#: Why `needle` inputs under `post` are not measured (placement.py: dense attention sees them rotated).
NEEDLE_POST = (
    "inputs=needle with rope=post: the needles are planted in the scores dense attention sees under pre; post "
    "rotates q and k, which moves every needle (dense recall falls to about 0), so use inputs needle-rope to "
    "compare the placements"
)


def check_point(p, kind: str):
    """The point's plan, or ValueError naming why this (point, inputs) pair cannot be measured."""
    if kind == "needle" and p.rope == "post":
        raise ValueError(NEEDLE_POST)
    return p.plan()
