"""The test-only slowdown planted inside the selection and gather kernels (kernels/plant.py) and its calibration
(lighthouse/bench/kernel_plant.py): it reaches only the kernel and N asked for, a request becomes a delivered
share of the layer's time, and on the GPU what it delivers is within 20% of what was asked."""

from __future__ import annotations

import os
import random

import pytest
import torch

from lighthouse import lighthouse_attention
from lighthouse.bench import kernel_plant
from lighthouse.kernels import gather, plant, select

N = 512


def _inputs(device="cpu", n=N):
    g = torch.Generator(device=device).manual_seed(0)
    return [torch.randn(1, 2, n, 16, generator=g, device=device) for _ in range(3)]


def _layer(q, k, v):
    return lighthouse_attention(q, k, v, levels=2, pooling=4, topk=128, impl="triton")


class _Stop(Exception):
    pass


class _Recorder:
    """Stands in for a Triton kernel: records the launch arguments, then stops the layer."""

    def __getitem__(self, grid):
        return self

    def __call__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        raise _Stop


def test_the_switch_parses_per_kernel_and_n(monkeypatch):
    monkeypatch.setenv(plant.PLANT_ENV, "select:512=900,1024=5")
    assert plant.spin_cycles("select", 512) == 900 and plant.spin_cycles("select", 2048) == 0
    assert plant.spin_cycles("gather", 512) == 0
    monkeypatch.delenv(plant.PLANT_ENV)
    assert plant.spin_cycles("select", 512) == 0
    assert plant.switch_value("gather", {1024: 7, 512: 0}) == "gather:1024=7"
    assert plant.switch_value("gather", {512: 0}) == ""


@pytest.mark.parametrize("value", ["select", "scores:512=9", "select:512=x", "gather:512=-1", "select:"])
def test_a_bad_switch_names_itself(monkeypatch, value):
    monkeypatch.setenv(plant.PLANT_ENV, value)
    with pytest.raises(ValueError, match=plant.PLANT_ENV):
        plant.spin_cycles("select", 512)


@pytest.mark.parametrize(
    "kernel,module,attr", [("select", select, "_select_kernel"), ("gather", gather, "_gather_kernel")]
)
def test_the_spin_reaches_only_the_kernel_and_n_asked_for(monkeypatch, kernel, module, attr):
    """With the switch on one kernel at this N, that kernel is launched with SPIN and the cycles; the switch on
    the other kernel or another N launches it without (SPIN=False: the spin is not compiled in)."""
    rec = _Recorder()
    monkeypatch.setattr(module, attr, rec)
    other = "gather" if kernel == "select" else "select"
    for value, spin in (
        (f"{kernel}:{N}=987653", True),
        (f"{kernel}:{2 * N}=987653", False),
        (f"{other}:{N}=987653", False),
    ):
        monkeypatch.setenv(plant.PLANT_ENV, value)
        with pytest.raises(_Stop):
            _layer(*_inputs())
        numbers = [a for a in rec.args if type(a) is int]
        assert rec.kwargs["SPIN"] is spin and (987653 in numbers) is spin, value


def test_planted_sets_the_switch_for_the_block_only(monkeypatch):
    monkeypatch.delenv(plant.PLANT_ENV, raising=False)
    with kernel_plant.planted("gather", {N: 12}):
        assert os.environ[plant.PLANT_ENV] == f"gather:{N}=12"
        with kernel_plant.planted("gather", {N: 0}):
            assert plant.PLANT_ENV not in os.environ
        assert os.environ[plant.PLANT_ENV] == f"gather:{N}=12"
    assert plant.PLANT_ENV not in os.environ


def _fake_layer(base_ms=2.0, ms_per_kcycle=0.004, waves=3, kernel="select", n=N, noise=()):
    """A layer whose time is base + waves x cycles x cost, slightly convex (waves fill up), read from the switch."""
    noise = list(noise)

    def time_layer():
        c = plant.spin_cycles(kernel, n)
        extra = waves * c / 1000 * ms_per_kcycle * (1 + c / 4e6)
        return base_ms + extra + (noise.pop(0) if noise else 0.0)

    return time_layer


def test_calibration_delivers_each_request_and_reports_it():
    plants = kernel_plant.calibrate(_fake_layer(), N, "select", [0, 5, 10, 20])
    assert [p.requested_pct for p in plants] == [0, 5, 10, 20]
    assert plants[0].cycles == 0 and plants[0].delivered_pct == 0
    for p in plants[1:]:
        assert p.delivered_pct == pytest.approx(p.requested_pct, rel=0.05), p
        # independent check: the fake's own formula at the chosen cycles
        assert p.planted_ms == pytest.approx(2.0 + 3 * p.cycles / 1000 * 0.004 * (1 + p.cycles / 4e6))
    assert plant.PLANT_ENV not in os.environ


def test_what_a_plant_delivered_is_measured_afresh_not_read_off_the_search():
    """Catches a delivered share read off the sample the search stopped on: picked for landing close to the ask, it
    flatters the plant under noise (the H200 test saw a 10% ask deliver 12.4%). The fake is noisy; the plant must
    report the median of the 3 measurements after the search, at its final cycles."""
    rng = random.Random(0)
    true = _fake_layer()
    seen = []

    def noisy():
        t = true() + rng.uniform(-0.06, 0.06)
        seen.append((plant.spin_cycles("select", N), t))
        return t

    for pct in (10, 20):
        seen.clear()
        [p] = kernel_plant.calibrate(noisy, N, "select", [pct])
        assert all(c == p.cycles for c, _ in seen[-3:]) and seen[-4][0] > 0  # the search's last sample, then 3
        assert p.planted_ms == sorted(t for _, t in seen[-3:])[1]


def test_calibration_refuses_a_plant_that_delivers_nothing():
    with pytest.raises(RuntimeError, match="does not reach this kernel"):
        kernel_plant.calibrate(_fake_layer(kernel="gather"), N, "select", [10])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kernel", plant.KERNELS)
def test_on_the_gpu_the_plant_delivers_within_20_percent_and_changes_no_value(kernel):
    """At the ci suite's 64K point (fwd+bwd, host-ahead clock): 10% asked of either kernel is 8-12% delivered,
    and the spin changes no value: out, dk and dv bit for bit; dq to bf16 rounding, because the stock SDPA
    backward accumulates dq with atomics and does not repeat bitwise even unplanted (PERF_NOTES, Determinism;
    the bitwise dq comparison failed on the H200 for both kernels)."""
    from lighthouse.harness.points import Point, Shape

    point = Point(Shape(65536, 1, 8, 8, 128, "bf16"), 3, 4, 4096, "norm")
    dev = torch.device("cuda", torch.cuda.current_device())
    [p] = kernel_plant.calibrate(kernel_plant.layer_timer(point, dev), point.shape.n, kernel, [10])
    assert p.delivered_pct == pytest.approx(10.0, rel=0.2), p

    q, k, v = (x.to(torch.bfloat16).requires_grad_() for x in _inputs("cuda", 65536))
    kw = dict(levels=3, pooling=4, topk=4096, impl="triton")

    def run():
        for t in (q, k, v):
            t.grad = None
        out = lighthouse_attention(q, k, v, **kw)
        out.backward(torch.ones_like(out))
        return [out.detach().clone()] + [t.grad.clone() for t in (q, k, v)]

    plain = run()
    with kernel_plant.planted(kernel, {65536: p.cycles}):
        spun = run()
    for name, a, b in zip(("out", "dq", "dk", "dv"), plain, spun):
        if name == "dq":
            torch.testing.assert_close(b.float(), a.float(), rtol=1.6e-2, atol=1e-2 * a.float().abs().max().item())
        else:
            assert torch.equal(a, b), name


def test_gate_script_plants_the_calibrated_spin_per_level_and_tabulates(tmp_path, monkeypatch):
    """scripts/gate_kernel_plant.py without a GPU: the check and the calibration replaced by fakes. Each level
    runs with the switch holding that level's calibrated cycles per N (unset at 0%), round-robin, and every
    table row carries the share asked and the share delivered. Catches a script that plants another level's
    spin, leaves the switch set for the next check, or loses the delivered share."""
    import importlib.util
    from pathlib import Path

    from lighthouse.bench import check
    from lighthouse.harness.plain_csv import read_csv
    from lighthouse.harness.tables import CHECK, write_rows

    spec = importlib.util.spec_from_file_location(
        "gate_kernel_plant", Path(__file__).resolve().parents[2] / "scripts" / "gate_kernel_plant.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(kernel_plant, "layer_timer", lambda point, dev, seed=0: point.shape.n)
    monkeypatch.setattr(
        kernel_plant,
        "calibrate",
        lambda n, n_, kernel, pcts: [
            kernel_plant.Plant(n, kernel, p, int(p * n // 100), 1.0, 1.0 + p / 100 * 0.9) for p in pcts
        ],
    )
    seen = []

    def fake_run_check(baseline, results, record=False, out=None, **kw):
        seen.append(os.environ.get(plant.PLANT_ENV))
        if record:
            return 0
        Path(out).mkdir(parents=True)
        pct = float(Path(out).name.split("-")[1])
        names = dict.fromkeys(r["point"] for r in read_csv(Path(out).parent / "calibration.csv"))
        rows = [
            {
                "point": name,
                "figure": f,
                "baseline": "1",
                "now": "1",
                "change_pct": "0",
                "note": "limit -6%",
                "verdict": "ok",
            }
            for name in list(names)[:2]
            for f in check.GATED
        ]
        write_rows(Path(out) / "check.csv", CHECK, rows)
        return 1 if pct >= 10 else 0

    monkeypatch.setattr(check, "run_check", fake_run_check)
    out = tmp_path / "o"
    assert mod.main(["--kernel", "gather", "--out", str(out), "--judgments", "2", "--planted", "0,10"]) == 0
    at10 = "gather:16384=1638,65536=6553,98304=9830"
    assert seen == [None, None, at10, None, at10]
    assert plant.PLANT_ENV not in os.environ
    rows = read_csv(out / "slowdowns.csv")
    assert len(rows) == 2 * 2 * 2 * len(check.GATED)
    assert {(r["planted_pct"], r["exit_code"], r["delivered_pct"]) for r in rows} == {
        ("0", "0", "0.00"),
        ("10", "1", "9.00"),
    }
    cal = {(r["n"], r["requested_pct"]): r for r in read_csv(out / "calibration.csv")}
    assert cal[("98304", "10")]["cycles"] == "9830" and cal[("98304", "10")]["delivered_pct"] == "9.00"
