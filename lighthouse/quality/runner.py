"""`lighthouse-bench quality`: every point of a grid measured against dense attention, row by row.

The grid, suites and conventions are `sweep`'s: the same options and suite files give the same points;
one row per (inputs, layer, point) is appended to quality.csv the moment it is measured (results.QUALITY);
statuses ok / oom / invalid / unsupported / error; --resume skips rows with a final status and retries the
rest; machine.json records where and from what code; a rich progress bar; charts at the end.

The dense reference (the only N^2 work besides the dilated scorer) is computed once per (shape, inputs,
layer) and shared by every configuration of that shape; invalid points become rows before any tensor is
allocated.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..harness import machine
from ..harness.tables import QUALITY, append_row, claim_results_file, keep_final, row_key

QUALITY_FILE, MACHINE_FILE = "quality.csv", "machine.json"
#: Suite used when none is given: the issue's grid on CUDA, the sweep's CPU smoke preset on the CPU.
DEFAULT_SUITE = {"cuda": "quality", "cpu": "quick"}
EXIT_INTERRUPTED, EXIT_DEVICE_LOST = 130, 1


class QualityError(ValueError):
    """The run cannot start (output folder in the way, nothing to resume)."""


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


def resolve(suite: Optional[str], flags: Dict[str, object], inputs: str, needles: int, heldout: Optional[Path],
            cuda_available: bool) -> QualitySpec:
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
    options = {"suite": spec.suite, "device": spec.device, "seed": spec.seed, "inputs": kinds, "needles": needles,
               "heldout": str(heldout) if heldout else None}
    return QualitySpec(spec.suite, spec.device, spec.points, kinds, spec.seed, needles, heldout, options)


def _point_cells(point, device: str) -> dict:
    s = point.shape
    return {"device": device, "dtype": s.dtype, "n": s.n, "batch": s.batch, "heads": s.heads, "kv_heads": s.kv_heads,
            "head_dim": s.head_dim, "levels": point.levels, "pooling": point.pooling, "topk": point.topk,
            "scorer": point.scorer}


def _status(exc: BaseException) -> Tuple[str, str]:
    import torch

    from .evaluate import Unsupported

    text = " ".join(str(exc).split())
    text = text if len(text) <= 400 else text[:397] + "..."
    if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in text.lower():
        return "oom", text or "out of memory"
    if isinstance(exc, Unsupported):
        return "unsupported", text
    if isinstance(exc, ValueError):
        return "invalid", text
    return "error", f"{type(exc).__name__}: {text}"


def _free(device) -> None:
    import torch

    gc.collect()
    if getattr(device, "type", "cpu") == "cuda":
        torch.cuda.empty_cache()


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
        yield synthetic(kind, shape.batch, shape.heads, shape.kv_heads, shape.n, shape.head_dim, shape.dtype,
                        device, spec.seed, spec.needles_per_bucket)


def run(spec: QualitySpec, out: Path, *, resume: bool = False, plot: bool = True, argv: Optional[Sequence[str]] = None,
        console=None) -> int:
    """Measure every (inputs, point) into out/quality.csv; returns the exit code (0, 130 Ctrl-C, 1 device lost)."""
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ..bench.runner import device_ok, resolve_device
    from .dense import dense_reference
    from .evaluate import dense_needle_recall, lighthouse_impl, measure_point

    console = console or Console()
    path = claim_results_file(out, QUALITY_FILE, resume, QualityError)
    out.mkdir(parents=True, exist_ok=True)
    done = set(keep_final(path, QUALITY)) if resume else set()  # oom/error/torn rows are run again

    dev = resolve_device(spec.device)
    impl = lighthouse_impl(dev)
    machine_path = out / MACHINE_FILE
    previous = machine.read(machine_path) if resume else None
    info = machine.collect(argv, {**spec.options, "out": str(out), "resume": resume, "impl": impl})
    machine.write(machine_path, info, previous)
    groups = plan_groups(spec)
    total = sum(len(pts) for _, _, pts in groups)
    console.print(f"[bold]lighthouse-bench quality[/] suite={spec.suite} device={spec.device} "
                  f"{info.get('gpu') or info.get('cpu')}: {len(spec.points)} points x {len(spec.inputs)} inputs "
                  f"({','.join(spec.inputs)}) -> {path}")
    counts: Dict[str, int] = {}
    start, interrupted, lost = time.perf_counter(), False, None

    def write(cells: dict, status: str, reason: str = "", figures: Optional[dict] = None) -> None:
        append_row(path, QUALITY, {**cells, "impl": impl, "status": status, "reason": reason or None,
                                   "seed": spec.seed, **(figures or {})})
        counts[status] = counts.get(status, 0) + 1

    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[rows]}"),
                        TimeElapsedColumn(), console=console)
    try:
        with progress:
            bar = progress.add_task("starting", total=total or 1, rows="")
            for shape, kind, points in groups:
                if lost:
                    break
                label = f"{shape.label()} {kind}"
                try:
                    sets = list(_input_sets(shape, kind, spec, dev))  # a checkpoint's layers: failures caught here
                except Exception as exc:  # noqa: BLE001 - a bad checkpoint/heldout: every row of the group says why
                    status, reason = _status(exc)
                    sets = []
                    for p in points:
                        cells = {**_point_cells(p, spec.device), "inputs": kind, "layer": None}
                        if row_key({k: _cell(v) for k, v in cells.items()}, QUALITY) not in done:
                            write(cells, status, reason)
                    progress.update(bar, advance=len(points))
                for x in sets:
                    layer_cells = {"inputs": kind, "layer": x.layer}
                    if x.layer is not None:  # a checkpoint: the model's own head shape
                        layer_cells.update(heads=x.q.shape[1], kv_heads=x.k.shape[1], head_dim=x.q.shape[-1])
                    todo = []
                    for p in points:
                        cells = {**_point_cells(p, spec.device), **layer_cells}
                        if row_key({k: _cell(v) for k, v in cells.items()}, QUALITY) in done:
                            continue
                        try:
                            p.plan()
                        except ValueError as err:  # invalid: no tensor allocated
                            write(cells, "invalid", str(err), {"seconds": 0.0})
                            continue
                        todo.append((p, cells))
                    if not todo:
                        continue
                    progress.update(bar, description=f"{label}: dense reference")
                    try:
                        ref = dense_reference(x.q, x.k, x.v)
                        dense_recall = dense_needle_recall(x, ref)
                    except Exception as exc:  # noqa: BLE001
                        status, reason = _status(exc)
                        for p, cells in todo:
                            write(cells, status, f"dense reference: {reason}")
                        ref = None
                        if not device_ok(dev):
                            lost = f"the CUDA context is lost after the dense reference of {label}: {reason}"
                            break
                    for p, cells in todo if ref is not None else []:
                        progress.update(bar, description=f"{label} L{p.levels} p{p.pooling} k{p.topk} {p.scorer}")
                        t0 = time.perf_counter()
                        try:
                            figures = measure_point(x, ref, p.levels, p.pooling, p.topk, p.scorer)
                            if dev.type == "cuda":
                                torch.cuda.synchronize(dev)
                            status, reason = "ok", ""
                        except Exception as exc:  # noqa: BLE001 - classified, recorded, never fatal
                            figures, (status, reason) = {}, _status(exc)
                        figures.update(seconds=round(time.perf_counter() - t0, 3), dense_needle_recall=dense_recall)
                        write(cells, status, reason, figures)
                        progress.update(bar, advance=1, rows=" ".join(f"{k}={v}" for k, v in sorted(counts.items())))
                        if status != "ok":
                            _free(dev)
                            if not device_ok(dev):
                                lost = f"the CUDA context is lost after {label} L{p.levels} p{p.pooling} k{p.topk}: {reason}"
                                break
                    ref = None
                    _free(dev)
                    if lost:
                        break
                x = sets = None
                _free(dev)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        machine.write(machine_path, machine.finish(info, time.perf_counter() - start, interrupted), previous)

    console.print(f"rows: {' '.join(f'{k}={v}' for k, v in sorted(counts.items())) or 'nothing new to run'} -> {path}")
    if lost:
        console.print(f"[red]Stopped: {lost}[/]; continue with --resume --out {out}")
        return EXIT_DEVICE_LOST
    if interrupted:
        console.print(f"[yellow]Interrupted.[/] Continue with lighthouse-bench quality ... --resume --out {out}")
        return EXIT_INTERRUPTED
    if plot:
        try:
            from .charts import quality_charts

            for chart in quality_charts(path):
                console.print(f"chart: {chart}")
        except Exception as err:  # noqa: BLE001 - the rows are safe on disk
            console.print(f"[red]charts failed ({type(err).__name__}: {err}); the results are complete[/]")
    return 0


def _cell(v) -> str:
    from ..harness.tables import cell

    return cell(v)


def describe(spec: QualitySpec, console=None) -> Tuple[int, int]:
    """--dry-run: the points and how many rows would be measured or marked invalid; (rows, invalid rows)."""
    from rich.console import Console

    console = console or Console()
    invalid = 0
    for p in spec.points:
        try:
            note = f"S={p.plan().selected_len}"
        except ValueError as err:
            note, invalid = f"invalid: {err}", invalid + 1
        console.print(f"  {p.shape.label()}  L{p.levels} p{p.pooling} k{p.topk} {p.scorer}  {note}", highlight=False)
    rows = len(spec.points) * len(spec.inputs)
    console.print(f"{len(spec.points)} points x {len(spec.inputs)} inputs ({', '.join(spec.inputs)}) = {rows} rows "
                  f"({invalid * len(spec.inputs)} invalid; a checkpoint gives one row per layer)")
    return rows, invalid * len(spec.inputs)
