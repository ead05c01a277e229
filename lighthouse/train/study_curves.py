"""A study's curves as the report and the charts read them: one list of rows per job, values at a step."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..harness.tables import TRAIN_CURVE, num, read_rows


def load_curves(out: Path) -> Dict[str, List[dict]]:
    curves = {}
    for path in sorted((Path(out) / "curves").glob("*.csv")):
        if ".redo" in path.suffixes or ".partial" in path.name:
            continue
        rows = read_rows(path, TRAIN_CURVE)[0]
        curves[path.stem] = sorted(rows, key=lambda r: int(r["step"]))
    return curves


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
