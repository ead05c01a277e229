"""The figures of one configuration on one set of inputs, against that set's dense reference.

Pure measurement (no files, no grid): `measure_point` returns a dict of CSV cells or raises; the runner
turns exceptions into statuses. Everything is chunked (see `dense`, `coverage`, `metrics`), so it runs at
N = 128K on one GPU.
"""

from __future__ import annotations

import importlib.util
from typing import Dict, Optional

import torch

from .. import lighthouse_attention, select
from ..config import LighthouseConfig
from ..plan import make_plan
from .coverage import coverage_per_query
from .dense import DenseReference
from .inputs import QualityInputs
from .metrics import distribution_figures, output_figures
from .needles import needle_hits, recall_figures


class Unsupported(RuntimeError):
    """This configuration cannot run here (the gla scorer without flash-linear-attention or without CUDA)."""


def unsupported_reason(scorer: str, device: torch.device) -> Optional[str]:
    if scorer == "gla":
        if importlib.util.find_spec("fla") is None:
            return "scorer gla needs flash-linear-attention: pip install '.[gla]'"
        if device.type != "cuda":
            return "scorer gla (flash-linear-attention) needs CUDA"
    return None


def lighthouse_impl(device: torch.device) -> str:
    """What impl="auto" runs here, as the sweep's CSV spells it."""
    if device.type == "cuda":
        from .. import kernels

        if kernels.available(device):
            return "lighthouse_triton"
    return "lighthouse_torch"


def dense_needle_recall(x: QualityInputs, ref: DenseReference) -> Optional[float]:
    """Recall of the dense reference itself (1 by construction; recorded so a report can show it)."""
    if x.needles is None:
        return None
    return recall_figures(needle_hits(ref.out, x.v, x.needles), x.needles)["needle_recall"]


@torch.no_grad()
def measure_point(x: QualityInputs, ref: DenseReference, levels: int, pooling: int, topk: int, scorer: str,
                  impl: str = "auto") -> Dict[str, object]:
    """out_rel_err, cos_median, cos_p10, coverage, coverage_p10 (+ needle_recall and recall_dXX on needle
    inputs) and s_sel of Lighthouse (levels, pooling, topk, scorer) on x. ValueError: invalid parameters."""
    cfg = LighthouseConfig(levels, pooling, topk, scorer, impl=impl)
    gate = x.gate if scorer == "gla" else None  # every kind of inputs carries a gate; only gla reads it
    plan = make_plan(cfg, x.q, x.k, x.v, gate)
    reason = unsupported_reason(scorer, x.q.device)
    if reason:
        raise Unsupported(reason)
    out = lighthouse_attention(x.q, x.k, x.v, config=cfg, gate=gate)
    indices = select(x.q, x.k, x.v, config=cfg, gate=gate)
    row: Dict[str, object] = {"s_sel": plan.selected_len}
    row.update(output_figures(out, ref.out))
    cov = coverage_per_query(x.q, x.k, ref.lse, indices, plan)
    row.update(distribution_figures(cov, "coverage"))
    if x.needles is not None:
        row.update(recall_figures(needle_hits(out, x.v, x.needles), x.needles))
        row["needles"] = int(x.needles.query.numel()) * x.q.shape[0] * x.q.shape[1]
    return row
