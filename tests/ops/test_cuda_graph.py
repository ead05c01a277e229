"""lighthouse.cuda_graph and `sweep --cuda-graph`: the CPU-checkable parts (option refusal, results column,
input check, the wrapper's fresh results and one-call-in-flight guard, no host read under capture) and, on CUDA
only, graphed against eager."""

from __future__ import annotations

import os

import csv

import pytest
import torch
from typer.testing import CliRunner

from lighthouse import LighthouseConfig, lighthouse_attention
from lighthouse.harness import points, tables
from lighthouse.bench import sweep
from lighthouse.cli import app
from lighthouse.cuda_graph import (
    GraphedAttention,
    NotCapturable,
    check_capturable,
    check_inputs,
    graph_lighthouse,
    signature,
)
from lighthouse.plan import plan_for

from conftest import rand_qkv

CUDA = torch.cuda.is_available()


# ------------------------------------------------------------------------------------------- the option
def test_cli_refuses_cuda_graph_on_cpu(tmp_path):
    """Catches --cuda-graph accepted on the CPU (a sweep of rows that can never run) or refused with a
    traceback instead of a one-line usage error naming the flag."""
    out = tmp_path / "x"
    result = CliRunner().invoke(
        app, ["sweep", "--suite", "quick", "--device", "cpu", "--cuda-graph", "--out", str(out)]
    )
    assert result.exit_code == 2, result.output
    assert "--cuda-graph" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_plan_marks_dense_and_lighthouse_tasks_graphed_and_keeps_the_floor_eager():
    """Catches a graphed sweep whose rows collide with eager ones on --resume (cuda_graph not in the key), or a
    floor that is marked graphed though it is timed eagerly."""
    spec = points.resolve("quick", {"device": "cpu"}, cuda_available=False)
    spec.cuda_graph, spec.floor = True, True
    tasks = points.plan_tasks(spec, ["triton"], ["cudnn"])
    assert {t.cuda_graph for t in tasks if t.kind in ("dense", "lighthouse")} == {True}
    assert {t.cuda_graph for t in tasks if t.kind == "floor"} == {False}
    eager = points.plan_tasks(points.resolve("quick", {"device": "cpu"}, cuda_available=False), ["triton"], ["cudnn"])
    assert not {t.key("cuda") for t in tasks if t.kind == "lighthouse"} & {t.key("cuda") for t in eager}


def test_graphed_lighthouse_row_takes_graphed_dense_and_eager_floor():
    """Catches a graphed Lighthouse row divided by the eager dense median (an unfair speedup) or left without a
    floor ratio because the floor (eager) is looked up under cuda_graph=True."""
    spec = points.resolve("quick", {"device": "cpu"}, cuda_available=False)
    spec.cuda_graph, spec.floor = True, True
    tasks = points.plan_tasks(spec, ["triton"], ["cudnn"])
    dense = next(t for t in tasks if t.kind == "dense" and t.pass_ == "fwd")
    floor = next(t for t in tasks if t.kind == "floor" and t.pass_ == "fwd" and t.shape == dense.shape)
    lh = next(t for t in tasks if t.kind == "lighthouse" and t.pass_ == "fwd" and t.point == floor.point)
    medians = sweep.Medians()

    def ok(ms):
        from lighthouse.bench.result import Result
        from lighthouse.harness.timing import Timing

        return Result("ok", timing=Timing([ms], ms, None))

    eager_dense = points.Task("dense", dense.impl, "fwd", dense.shape)
    for task, ms in ((eager_dense, 100.0), (dense, 8.0), (floor, 2.0)):
        medians.add({k: tables.cell(v) for k, v in sweep.make_row(task, "cuda", 0, ok(ms), medians).items()})
    row = sweep.make_row(lh, "cuda", 0, ok(4.0), medians)
    assert row["cuda_graph"] is True
    assert row["speedup_vs_sdpa_cudnn"] == pytest.approx(2.0)
    assert row["floor_ratio"] == pytest.approx(2.0)


# ------------------------------------------------------------------------------------------- results.csv
def test_old_results_csv_without_the_column_reads_as_eager(tmp_path):
    """Catches an old results.csv (written before `cuda_graph`) refused as foreign, or its rows matched to the
    wrong key by --resume and the report (they were never graphed)."""
    old_columns = [c for c in tables.SWEEP.columns if c != "cuda_graph"]
    path = tmp_path / "results.csv"
    row = {c: "" for c in old_columns}
    row.update(impl="lighthouse_triton", kind="lighthouse", status="ok", n="8192", finished_at="2026-01-01T00:00:00")
    row["pass"] = "fwd"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=old_columns)
        w.writeheader()
        w.writerow(row)
    rows, torn = tables.read_rows(path, tables.SWEEP)
    assert not torn and rows[0]["cuda_graph"] == "False"
    assert tables.row_key(rows[0])[-1] == "False"
    kept = tables.keep_final(path, tables.SWEEP)  # --resume rewrites the file in the new format
    assert list(kept.values())[0]["cuda_graph"] == "False"
    assert "cuda_graph" in tables.header_of(path)
    assert tables.read_rows(path, tables.SWEEP)[0][0]["cuda_graph"] == "False"


# ------------------------------------------------------------------------------------------- the input check
def test_input_check_names_the_input_and_the_captured_shape():
    """Catches a graphed call with another shape, dtype or requires_grad going through (make_graphed_callables
    would copy it into the static buffer by broadcasting, or replay on stale values)."""
    q, k, v = rand_qkv(1, 2, 1, 64, 8)
    expected = [signature(x) for x in (q, k, v)]
    check_inputs(expected, (q.clone(), k.clone(), v.clone()))  # same signature: fine
    short = rand_qkv(1, 2, 1, 32, 8)
    with pytest.raises(ValueError, match=r"q has shape \(1, 2, 32, 8\).*captured for shape \(1, 2, 64, 8\)"):
        check_inputs(expected, short)
    with pytest.raises(ValueError, match=r"v has dtype=torch.float64.*dtype=torch.float32"):
        check_inputs(expected, (q, k, v.double()))
    with pytest.raises(ValueError, match=r"k has requires_grad=True.*requires_grad=False"):
        check_inputs(expected, (q, k.clone().requires_grad_(), v))


def test_graph_lighthouse_refuses_cpu_tensors():
    """Catches a CPU call reaching make_graphed_callables (a CUDA error deep inside) instead of a clear refusal."""
    q, k, v = rand_qkv(1, 2, 1, 301, 8)
    with pytest.raises(NotCapturable, match="cuda_graph needs a CUDA device: q is on cpu"):
        graph_lighthouse(q, k, v, LighthouseConfig(levels=2, pooling=2, topk=128, impl="triton"))


def test_paths_that_read_the_host_are_refused_before_capture():
    """Catches the torch path, a host-checked scorer or the PyTorch selection fallback being captured: each
    reads the GPU from the host, which invalidates a capture."""
    cfg = LighthouseConfig(levels=2, pooling=2, topk=128, impl="triton")
    plan = plan_for(cfg, 1, 2, 1, 301, 8)
    check_capturable(cfg, plan, "triton")  # the kernel path of a small plan: fine
    with pytest.raises(NotCapturable, match="impl='torch'"):
        check_capturable(cfg.replace(impl="torch"), plan, "torch")
    dilated = cfg.replace(scorer="dilated")
    with pytest.raises(NotCapturable, match="scorer='dilated'"):
        check_capturable(dilated, plan_for(dilated, 1, 2, 1, 301, 8), "triton")
    big = plan_for(cfg, 1, 1, 1, 16384, 8)  # 8192 coarsest candidates per tile: the PyTorch selection
    with pytest.raises(NotCapturable, match=r"8192 coarsest candidates \(valid 1\.\.4096\)"):
        check_capturable(cfg, big, "triton")


# ------------------------------------------------------------------------------------------- the wrapper
def _fake_graphed():
    """A stand-in for make_graphed_callables' callable with its contract: one static output buffer and static
    gradient buffers, overwritten by every call."""
    static_out = torch.zeros(2, 3)
    static_grads = [torch.zeros(2, 3) for _ in range(3)]

    class Replay(torch.autograd.Function):
        @staticmethod
        def forward(ctx, q, k, v):
            static_out.copy_(q * 2 + k + v)
            return static_out.detach()

        @staticmethod
        def backward(ctx, g):
            static_grads[0].copy_(g * 2)
            static_grads[1].copy_(g)
            static_grads[2].copy_(g)
            return tuple(x.detach() for x in static_grads)

    return Replay.apply


def _qkv(seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 3, generator=g).requires_grad_() for _ in range(3)]


def test_results_are_fresh_copies_of_the_static_buffers():
    """Catches the static output or gradient buffers handed out as they are: the next call's replay would then
    silently change an earlier call's output and q.grad."""
    q1, k1, v1 = _qkv(0)
    attn = GraphedAttention(_fake_graphed(), [signature(x) for x in (q1, k1, v1)], retain_graph=False)
    out1 = attn(q1, k1, v1)
    out1.backward(torch.ones(2, 3))
    want_out1, want_dq1 = (q1 * 2 + k1 + v1).detach(), torch.full((2, 3), 2.0)
    q2, k2, v2 = _qkv(1)
    out2 = attn(q2, k2, v2)
    out2.backward(torch.full((2, 3), 3.0))
    assert torch.equal(out1, want_out1) and torch.equal(q1.grad, want_dq1)
    assert torch.equal(out2, (q2 * 2 + k2 + v2).detach()) and torch.equal(q2.grad, torch.full((2, 3), 6.0))


def test_backward_after_a_later_forward_raises():
    """Catches one graphed callable used for two layers: the second forward overwrites the graphs' saved state,
    so the first call's backward would silently compute wrong gradients."""
    q1, k1, v1 = _qkv(0)
    attn = GraphedAttention(_fake_graphed(), [signature(x) for x in (q1, k1, v1)], retain_graph=False)
    out1 = attn(q1, k1, v1)
    out2 = attn(*_qkv(1))
    with pytest.raises(RuntimeError, match="backward of call 1 after call 2"):
        out1.backward(torch.ones(2, 3))
    out2.backward(torch.ones(2, 3))  # the latest call's backward is fine


def test_second_backward_needs_retain_graph():
    """Catches a second backward on one forward replaying a backward graph whose inner tensors were freed
    (wrong gradients) instead of raising; with retain_graph=True it is allowed (the benchmark's bwd pass)."""
    for retain in (False, True):
        q, k, v = _qkv(0)
        attn = GraphedAttention(_fake_graphed(), [signature(x) for x in (q, k, v)], retain_graph=retain)
        out = attn(q, k, v)
        out.backward(torch.ones(2, 3), retain_graph=True)
        if retain:
            out.backward(torch.ones(2, 3), retain_graph=True)
            assert torch.equal(q.grad, torch.full((2, 3), 4.0))
        else:
            with pytest.raises(RuntimeError, match="backward ran twice"):
                out.backward(torch.ones(2, 3), retain_graph=True)


def test_wrapper_checks_every_call():
    """Catches the shape check done at capture only: a later call with another shape must raise ValueError."""
    q, k, v = _qkv(0)
    attn = GraphedAttention(_fake_graphed(), [signature(x) for x in (q, k, v)], retain_graph=False)
    with pytest.raises(ValueError, match=r"q has shape \(3, 2\).*\(2, 3\)"):
        attn(q.detach().t().contiguous().requires_grad_(), k, v)


# ------------------------------------------------------------------------------------------- no host read under capture
class _HostRead(AssertionError):
    pass


def _forbid_host_reads(monkeypatch, asserted):
    """Pretend a capture is under way and make every host read of a tensor fail; device assertions are
    recorded instead of evaluated."""

    def boom(*args, **kwargs):
        raise _HostRead("host read during capture")

    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    monkeypatch.setattr(torch, "_assert_async", lambda t, msg="": asserted.append(t.detach().clone()))
    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, boom)
    monkeypatch.setattr(torch.cuda, "synchronize", boom)


@pytest.mark.parametrize("bad", [None, "flag", "v", "v_sum_overflows"])
def test_finite_check_under_capture_stays_on_the_device(monkeypatch, bad):
    """Catches the deferred NaN/Inf check reading the GPU from the host during a capture (.item() / bool():
    CUDA invalidates the capture), a device check that lets a tripped screen pass, and one that stops the
    replay for a finite v whose float32 sum overflows (eager raises nothing there)."""
    from lighthouse.kernels.scores import FiniteCheck

    q, k, v = rand_qkv(1, 1, 1, 301, 4)
    if bad == "v":
        v[0, 0, 3, 1] = float("nan")
    if bad == "v_sum_overflows":
        v[0, 0, :4, :] = 3e38  # finite, but their float32 sum is inf
        assert not torch.isfinite(v.sum(dtype=torch.float32))
    flag = torch.tensor([1 if bad == "flag" else 0], dtype=torch.int32)
    cfg = LighthouseConfig(levels=2, pooling=2, topk=128, impl="triton")
    asserted = []
    with monkeypatch.context() as m:
        _forbid_host_reads(m, asserted)
        check = FiniteCheck(flag, torch.zeros(2, 1, 1, 8), plan_for(cfg, 1, 1, 1, 301, 4), q, k, v)
        check.watch_v(v)
        check.raise_if_bad()
    assert len(asserted) == 1
    assert bool(asserted[0]) is (bad in (None, "v_sum_overflows"))


@pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET", "0") in ("", "0"),
    reason="interpreter test on CPU tensors; on a GPU the capture itself is tested below",
)
def test_triton_layer_under_capture_reads_nothing_on_the_host(monkeypatch):
    """Catches any host read of a tensor (.item(), bool(), .tolist(), a synchronize) anywhere in the Triton
    layer's forward and backward once a capture is under way: the whole path must be capturable."""
    q, k, v = rand_qkv(1, 2, 1, 301, 8, requires_grad=True)
    cfg = LighthouseConfig(levels=2, pooling=2, topk=128, impl="triton", sdpa_backend="math")
    want = lighthouse_attention(q, k, v, config=cfg)
    grad = torch.randn_like(want)
    want_grads = torch.autograd.grad(want, (q, k, v), grad)
    asserted = []
    with monkeypatch.context() as m:
        _forbid_host_reads(m, asserted)
        out = lighthouse_attention(q, k, v, config=cfg)
        grads = torch.autograd.grad(out, (q, k, v), grad)
    assert len(asserted) == 1 and bool(asserted[0])  # the finiteness check ran, on the "device"
    assert torch.equal(out, want)
    for g, w in zip(grads, want_grads):
        assert torch.equal(g, w)


# ------------------------------------------------------------------------------------------- on CUDA
GPU = pytest.mark.skipif(not CUDA, reason="CUDA graphs need a CUDA device")


def _gpu_qkv(seed, n=2048, requires_grad=True):
    g = torch.Generator(device="cuda").manual_seed(seed)
    return [
        torch.randn(1, 2, n, 64, generator=g, device="cuda", dtype=torch.bfloat16).requires_grad_(requires_grad)
        for _ in range(3)
    ]


def _eager(cfg, q, k, v, grad):
    q, k, v = (x.detach().clone().requires_grad_() for x in (q, k, v))
    out = lighthouse_attention(q, k, v, config=cfg)
    out.backward(grad)
    return out.detach(), q.grad, k.grad, v.grad


GPU_CFG = LighthouseConfig(levels=3, pooling=4, topk=128, impl="triton")


@GPU
def test_graphed_matches_eager_and_follows_new_inputs():
    """Catches a graphed layer that departs from the eager one (out, dq, dk, dv), that replays on stale static
    inputs (a second call with new values must give the new results), or whose first output changes when the
    second call replays (a static buffer handed out)."""
    q1, k1, v1 = _gpu_qkv(0)
    attn = graph_lighthouse(q1, k1, v1, GPU_CFG)
    results_by_call = []
    for seed in (1, 2):
        q, k, v = _gpu_qkv(seed)
        grad = torch.randn_like(q)
        out = attn(q, k, v)
        out.backward(grad)
        got = (out.detach(), q.grad, k.grad, v.grad)
        want = _eager(GPU_CFG, q, k, v, grad)
        for name, a, w in zip(("out", "dq", "dk", "dv"), got, want):
            torch.testing.assert_close(a, w, rtol=2e-2, atol=2e-2, msg=f"call {seed}: {name}")
        results_by_call.append((got, want))
    (got1, want1), (got2, _) = results_by_call
    assert not torch.equal(got1[0], got2[0])
    torch.testing.assert_close(got1[0], want1[0], rtol=2e-2, atol=2e-2)  # call 1's output survived call 2
    torch.testing.assert_close(got1[1], want1[1], rtol=2e-2, atol=2e-2)  # and so did its dq


@GPU
def test_graphed_forward_without_grad_and_shape_check():
    """Catches a graph captured without grad that fails or goes stale, and a call of another N accepted."""
    q, k, v = _gpu_qkv(0, requires_grad=False)
    attn = graph_lighthouse(q, k, v, GPU_CFG)
    q2, k2, v2 = _gpu_qkv(3, requires_grad=False)
    torch.testing.assert_close(attn(q2, k2, v2), lighthouse_attention(q2, k2, v2, config=GPU_CFG), rtol=2e-2, atol=2e-2)
    with pytest.raises(ValueError, match="captured for shape"):
        attn(*_gpu_qkv(0, n=4096, requires_grad=False))


@GPU
def test_graphed_backward_twice_with_retain_graph():
    """Catches the bench's bwd pass (backward repeated on one forward) reading freed inner tensors: with
    retain_graph=True both backwards give the eager gradient."""
    q, k, v = _gpu_qkv(0)
    attn = graph_lighthouse(q, k, v, GPU_CFG, retain_graph=True)
    grad = torch.randn_like(q)
    out = attn(q, k, v)
    want = _eager(GPU_CFG, q, k, v, grad)
    for _ in range(2):
        q.grad = k.grad = v.grad = None
        out.backward(grad, retain_graph=True)
        torch.testing.assert_close(q.grad, want[1], rtol=2e-2, atol=2e-2)
        torch.testing.assert_close(v.grad, want[3], rtol=2e-2, atol=2e-2)


@GPU
@pytest.mark.parametrize("pass_", ["fwd", "bwd", "fwdbwd"])
def test_sweep_times_graphed_rows(pass_):
    """Catches `sweep --cuda-graph` rows that fail on the GPU (capture, bwd repetitions, the dense wrapper)."""
    from lighthouse.bench import runner

    spec = points.resolve(
        None,
        {
            "device": "cuda",
            "seq": "2k",
            "topk": "128",
            "heads": "2",
            "head_dim": "64",
            "pass": pass_,
            "cuda_graph": True,
        },
        cuda_available=True,
    )
    bench = runner.Bench("cuda", 0, warmup=2, rep=3, min_rep=1, max_seconds=1.0)
    for task in points.plan_tasks(spec, ["triton"], ["cudnn"]):
        if task.kind == "floor":
            continue
        result = runner.execute(task, bench)
        assert task.cuda_graph and result.status == "ok", (task.label(), result.reason)
    bench.release()


@pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET", "0") in ("", "0"),
    reason="interpreter test on CPU tensors; tests/ops/test_triton_path.py covers the GPU",
)
def test_retain_inner_graph_is_recorded_at_forward():
    """Catches retain_inner_graph read only in the backward: on CUDA autograd runs the backward on its own
    device thread, which does not see the thread-local switch, so the graphed bwd capture (and the sweep's bwd
    pass) would free the inner graph. A forward inside the switch must allow two backwards outside it."""
    import lighthouse.kernels

    q, k, v = rand_qkv(1, 1, 1, 256, 8, seed=14, requires_grad=True)
    cfg = LighthouseConfig(levels=2, pooling=2, topk=128, impl="triton", sdpa_backend="math")
    with lighthouse.kernels.retain_inner_graph():
        out = lighthouse_attention(q, k, v, config=cfg)
    grad = torch.randn_like(out)
    first = torch.autograd.grad(out, (q, k, v), grad, retain_graph=True)
    second = torch.autograd.grad(out, (q, k, v), grad)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
