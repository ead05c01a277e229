"""A point's RoPE placement reaches the layer on the paths that build their own call: `sweep --cp` rows
(bench/cp.py) and the planted-slowdown calibration (bench/kernel_plant.layer_timer). Each path is run up to the
layer's inner call, which a spy stands in for and stops at."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import lighthouse.distributed
import lighthouse.kernels.layer
from lighthouse.bench import cp, kernel_plant
from lighthouse.harness.points import Point, Shape, Task


class _Stop(Exception):
    pass


def _point(rope: str) -> Point:
    return Point(Shape(512, 1, 2, 2, 16, "fp32"), 2, 4, 128, "norm", rope, rope_theta=5000.0)


@pytest.mark.parametrize("rope", ["pre", "post"])
def test_a_cp_row_runs_the_points_rope_placement(monkeypatch, rope):
    """Catches sweep --cp building the layer from levels/pooling/topk/scorer alone (rope silently 'pre')."""
    seen = {}

    def spy(q, k, v, group, config, gate=None, positions=None):
        seen.update(config=config, group=group)
        raise _Stop

    monkeypatch.setattr(lighthouse.distributed, "context_parallel_lighthouse_attention", spy)
    point = _point(rope)
    task = Task("lighthouse", cp.lighthouse_impl("torch", 1), "fwd", point.shape, point)
    ctx = cp.CpContext(world=1, rank=0, group="the group", device=torch.device("cpu"))
    run, leaves, grad_out = cp.build(task, SimpleNamespace(cp=ctx, seed=0), None)
    with pytest.raises(_Stop):
        run()
    cfg = seen["config"]
    assert (cfg.rope, cfg.rope_theta, cfg.impl, seen["group"]) == (rope, 5000.0, "torch", "the group")
    assert (cfg.levels, cfg.pooling, cfg.topk, cfg.scorer) == (2, 4, 128, "norm")


@pytest.mark.parametrize("rope", ["pre", "post"])
def test_the_plant_calibration_times_the_points_rope_placement(monkeypatch, rope):
    """Catches layer_timer calibrating a 'post' point on the 'pre' layer."""
    seen = {}

    def spy(q, k, v, plan, gate=None, positions=None):
        seen["config"] = plan.config
        raise _Stop

    monkeypatch.setattr(lighthouse.kernels.layer, "lighthouse_attention_triton", spy)
    time_layer = kernel_plant.layer_timer(_point(rope), torch.device("cpu"))
    with pytest.raises(_Stop):
        time_layer()
    cfg = seen["config"]
    assert (cfg.rope, cfg.rope_theta, cfg.impl) == (rope, 5000.0, "triton")


@pytest.mark.parametrize("rope", ["pre", "post"])
def test_the_gates_warm_up_runs_the_points_rope_placement(monkeypatch, rope):
    """Catches check's warm-up compiling and warming the 'pre' kernels for a 'post' point (the first timed
    repetitions of that point then pay for the compilation the warm-up was there to take)."""
    import lighthouse
    from lighthouse.bench.check import record

    seen = {}

    class Halt(BaseException):  # the warm-up swallows every Exception of a point that cannot run
        pass

    def spy(q, k, v, config=None, **kw):
        seen["config"] = config
        raise Halt

    monkeypatch.setattr(lighthouse, "lighthouse_attention", spy)
    spec = SimpleNamespace(points=[_point(rope)], impls=["torch"], device="cpu", seed=0)
    with pytest.raises(Halt):
        record.warm_up(spec, seconds=0.1)
    cfg = seen["config"]
    assert (cfg.rope, cfg.rope_theta, cfg.levels, cfg.pooling, cfg.topk) == (rope, 5000.0, 2, 4, 128)
