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
from .placement import View, view_for


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


def placement_config(
    x: QualityInputs, levels: int, pooling: int, topk: int, scorer: str, impl: str = "auto", rope: str = "pre"
) -> LighthouseConfig:
    """The layer measured on x: its RoPE (post) is the one that relates x's raw and rotated q, k."""
    return LighthouseConfig(
        levels, pooling, topk, scorer, impl=impl, rope=rope, rope_theta=x.rope_theta, rope_scaling=x.rope_scaling
    )


def view_of(x: QualityInputs, rope: str = "pre") -> View:
    """What the placement `rope` is given of x, and what dense attention sees (placement.py)."""
    return view_for(
        x.q, x.k, x.rotated, LighthouseConfig(rope=rope, rope_theta=x.rope_theta, rope_scaling=x.rope_scaling)
    )


@torch.no_grad()
def measure_point(
    x: QualityInputs,
    ref: DenseReference,
    levels: int,
    pooling: int,
    topk: int,
    scorer: str,
    impl: str = "auto",
    rope: str = "pre",
    view: Optional[View] = None,
) -> Dict[str, object]:
    """out_rel_err, cos_median, cos_p10, coverage, coverage_p10 (+ needle_recall and recall_dXX on needle
    inputs) and s_sel of Lighthouse (levels, pooling, topk, scorer, rope) on x. `ref` is dense attention on
    the view's dense q, k (`view`: view_of(x, rope) when not given). ValueError: invalid parameters."""
    cfg = placement_config(x, levels, pooling, topk, scorer, impl, rope)
    view = view or view_of(x, rope)
    gate = x.gate if scorer == "gla" else None  # every kind of inputs carries a gate; only gla reads it
    plan = make_plan(cfg, view.q, view.k, x.v, gate)
    reason = unsupported_reason(scorer, x.q.device)
    if reason:
        raise Unsupported(reason)
    out = lighthouse_attention(view.q, view.k, x.v, config=cfg, gate=gate)  # post: positions 0..N-1
    indices = select(view.q, view.k, x.v, config=cfg, gate=gate)
    row: Dict[str, object] = {"s_sel": plan.selected_len}
    row.update(output_figures(out, ref.out))
    cov = coverage_per_query(view.dense_q, view.dense_k, ref.lse, indices, plan)  # dense probabilities
    row.update(distribution_figures(cov, "coverage"))
    if x.needles is not None:
        row.update(recall_figures(needle_hits(out, x.v, x.needles), x.needles))
        row["needles"] = int(x.needles.query.numel()) * x.q.shape[0] * x.q.shape[1]
    return row
