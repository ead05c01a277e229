"""One quality point end to end on the CPU (torch path)."""

import pytest
import torch

from lighthouse.quality.dense import dense_reference
from lighthouse.quality.evaluate import Unsupported, dense_needle_recall, measure_point
from lighthouse.quality.inputs import synthetic

CPU = torch.device("cpu")


def test_point_figures_on_needle_inputs():
    """Catches figures that do not reach the row (missing keys), recall columns absent on needle inputs,
    invalid parameters not raised as ValueError, or gla crashing instead of `unsupported` without fla."""
    x = synthetic("needle", 1, 2, 2, 1024, 32, "fp32", CPU, seed=1, per_bucket=2)
    ref = dense_reference(x.q, x.k, x.v)
    assert dense_needle_recall(x, ref) == 1.0
    full = measure_point(x, ref, 2, 4, 256, "norm")
    assert full["coverage"] == pytest.approx(1.0, abs=1e-5) and full["needle_recall"] == 1.0
    assert full["s_sel"] == 1024 // 4 + 4 * 256 and full["needles"] == 2 * 20
    part = measure_point(x, ref, 2, 4, 128, "norm")
    assert part["coverage"] < full["coverage"] and 0 <= part["cos_p10"] <= part["cos_median"] <= 1
    assert part["out_rel_err"] > 0
    with pytest.raises(ValueError, match="topk"):
        measure_point(x, ref, 2, 4, 100, "norm")
    with pytest.raises(ValueError, match="too short"):
        measure_point(x, ref, 3, 8, 512, "norm")
    import importlib.util

    if importlib.util.find_spec("fla") is None:
        with pytest.raises(Unsupported, match="flash-linear-attention"):
            measure_point(x, ref, 2, 4, 128, "gla")


def test_scorers_that_ignore_the_gate_are_not_handed_it():
    """Every kind of quality inputs carries a gate (for gla); handing it to a norm or dilated point warned on every
    row ("gate= is used only by scorer='gla'"). Catches the gate reaching a scorer that ignores it."""
    import warnings

    x = synthetic("random", 1, 2, 2, 1024, 32, "fp32", CPU, seed=3)
    assert x.gate is not None
    ref = dense_reference(x.q, x.k, x.v)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        measure_point(x, ref, 2, 4, 128, "norm")
        measure_point(x, ref, 2, 4, 128, "dilated")
