"""A study's curves as the report and the charts read them: one list of rows per job, values at a step."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..harness.tables import TRAIN_CURVE, num, read_rows


#: A curve file's endings: plain while a study runs, gzip once a finished study is packed for committing.
CURVE_SUFFIXES = (".csv", ".csv.gz")


def curve_files(out: Path) -> Dict[str, Path]:
    """job id -> its curve file, curves/<job>.csv or curves/<job>.csv.gz (reports/h200/study/tools/pack_curves.py
    packs a finished study). Re-runs and partial files are left out: the report never reads them."""
    folder = Path(out) / "curves"
    files: Dict[str, Path] = {}
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        suffix = next((s for s in CURVE_SUFFIXES if path.name.endswith(s)), None)
        if suffix is None or ".redo" in path.name or ".partial" in path.name:
            continue
        job = path.name[: -len(suffix)]
        if job in files:
            raise ValueError(f"{out}: job {job} has both {files[job].name} and {path.name}; keep one")
        files[job] = path
    return files


def pack_curves(out: Path) -> int:
    """gzip every plain curve of a finished study in place (curves/<job>.csv -> .csv.gz); returns how many.

    The curves are committed because the intervals and charts are computed from them, and as plain CSV they are
    most of a study folder's size. The packed file has no name or time stamp in its header (mtime 0), so packing
    is deterministic; it is read back and compared row for row before the plain file is removed."""
    packed = 0
    for job, path in curve_files(out).items():
        if path.name.endswith(".gz"):
            continue
        target = path.with_name(f"{job}.csv.gz")
        with open(target, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as fh:
            fh.write(path.read_bytes())
        if read_rows(target, TRAIN_CURVE) != read_rows(path, TRAIN_CURVE):
            target.unlink()
            raise ValueError(f"{target} does not read back as {path}; left unpacked")
        path.unlink()
        packed += 1
    return packed


def load_curves(out: Path) -> Dict[str, List[dict]]:
    return {
        job: sorted(read_rows(path, TRAIN_CURVE)[0], key=lambda r: int(r["step"]))
        for job, path in curve_files(out).items()
    }


def at_step(rows: Sequence[dict], step: int, column: str) -> Optional[float]:
    for r in rows:
        if int(r["step"]) == step:
            return num(r.get(column))
    return None


def val_curve(rows: Sequence[dict], column: str = "val_loss", upto: Optional[int] = None) -> List[Tuple[int, float]]:
    return [
        (int(r["step"]), num(r[column]))
        for r in rows
        if num(r.get(column)) is not None and (upto is None or int(r["step"]) <= upto)
    ]


def interpolate(points: Sequence[Tuple[float, float]], x: float) -> Optional[float]:
    """Linear interpolation in sorted (x, y) points; None outside their range."""
    if not points or x < points[0][0] or x > points[-1][0]:
        return None
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[-1][1]
