"""Precompiling a call's kernels before its first launch (kernels/precompile.py, layer.planned_launches).

The precompile is only worth anything if it compiles exactly what the call then launches: the same kernels with
the same compile-time arguments and the same specialisation (Triton's key: argument types, 16-byte alignment,
integers equal to 1 or divisible by 16, launch options). The launches of a real forward + backward are caught
here (interpreted on the CPU) and compared, key by key, with the list the precompile would compile. Triton's own
binder for an sm_90 target computes the keys, as the launcher on an H200 would.
"""

import contextlib
import threading

import pytest
import torch

import lighthouse
from lighthouse import LighthouseConfig
from lighthouse.kernels import gather, layer, precompile, scatter, scores, select
from lighthouse.kernels.launch import Launch
from lighthouse.kernels.rope import rope_args
from lighthouse.plan import clear_plans, make_plan

from conftest import rand_qkv

KERNELS = (
    ("scores", scores, "_norm_scores_kernel"),
    ("select", select, "_select_kernel"),
    ("gather", gather, "_gather_kernel"),
    ("pull", scatter, "_pull_kernel"),
)
CASES = [
    # (Hq, Hkv, N, D, levels, pooling, rope, positions, scorer)
    (2, 2, 256, 8, 2, 2, "pre", False, "norm"),  # q, k, v in one gather and one pull
    (2, 1, 515, 8, 3, 2, "pre", False, "norm"),  # GQA (q apart from k, v), three levels, padded
    (1, 1, 512, 8, 3, 2, "post", False, "norm"),  # q, k rotated in the launches of v
    (2, 1, 390, 6, 2, 3, "post", True, "norm"),  # GQA, positions (HAS_POS), pooling 3, D/2 = 3
    (2, 1, 256, 8, 2, 2, "pre", False, "dilated"),  # no scoring kernel (the scores come from PyTorch)
]


def _binder_key(kernel, args, kwargs, grid):
    """(kernel, Triton's specialisation of the arguments, the options and constexprs, grid) for sm_90: what
    decides whether a launch finds the precompiled kernel in Triton's cache."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend
    from triton.runtime.jit import JITFunction, create_function_from_signature

    jit_kwargs = {k: v for k, v in getattr(kernel, "kwargs", {}).items() if k.startswith("do_not_specialize")}
    jit = kernel if isinstance(kernel, JITFunction) else JITFunction(kernel.fn, **jit_kwargs)
    binder = create_function_from_signature(jit.signature, jit.params, make_backend(GPUTarget("cuda", 90, 32)))
    _, specialization, options = binder(*args, **kwargs)
    return jit.fn.__name__, str(specialization), str(sorted(options.items())), tuple(grid)


@pytest.fixture
def caught(monkeypatch):
    """Every kernel launch the layer makes, as its binder key, in order (the kernels still run)."""
    keys = []
    for _, module, name in KERNELS:
        kernel = getattr(module, name)
        original = kernel.run

        def run(*args, grid, warmup, _kernel=kernel, _original=original, **kwargs):
            keys.append(_binder_key(_kernel, args, kwargs, grid))
            return _original(*args, grid=grid, warmup=warmup, **kwargs)

        monkeypatch.setattr(kernel, "run", run)
    return keys


#: The smallest call that still runs all six kernels: for the tests of when the precompile runs, not what.
SMALL = (1, 1, 256, 4, 2, 2, "pre", False, "norm")


def _case(case, grad=True, topk=128):
    hq, hkv, n, d, levels, pooling, rope, with_pos, scorer = case
    q, k, v = rand_qkv(1, hq, hkv, n, d, seed=n + d, requires_grad=grad)
    cfg = LighthouseConfig(
        levels=levels, pooling=pooling, topk=topk, rope=rope, scorer=scorer, impl="triton", sdpa_backend="math"
    )
    positions = (torch.arange(n) + 1000)[None] if with_pos else None
    return q, k, v, cfg, positions


@pytest.mark.parametrize("case", CASES, ids=lambda c: "Hq{}_Hkv{}_N{}_D{}_L{}_p{}_{}_pos{}_{}".format(*c))
def test_the_precompiled_launches_are_the_launches_of_a_forward_and_backward(case, caught):
    """Catches a stage missing from layer.planned_launches (or one too many), a compile-time argument or launch
    option that differs, a stand-in whose dtype, alignment or strides give another specialisation, launches out
    of order: any of them leaves a kernel to compile at its first launch again."""
    q, k, v, cfg, positions = _case(case)
    plan = make_plan(cfg, q, k, v)
    planned = layer.planned_launches(q, k, v, plan, rope_args(plan, q.device, positions), grad=True)
    out = lighthouse.lighthouse_attention(q, k, v, config=cfg, positions=positions)
    out.backward(torch.randn_like(out))
    assert len(caught) == len(planned) >= 4
    assert [_binder_key(x.kernel, x.args, x.kwargs, x.grid) for x in planned] == caught


def test_an_inference_call_plans_its_forward_only(caught):
    """Catches the backward's kernels compiled for a call that has no backward (seconds of compiling for nothing)."""
    q, k, v, cfg, _ = _case(CASES[1], grad=False)
    plan = make_plan(cfg, q, k, v)
    planned = layer.planned_launches(q, k, v, plan, None, grad=False)
    lighthouse.lighthouse_attention(q, k, v, config=cfg)
    assert [_binder_key(x.kernel, x.args, x.kwargs, x.grid) for x in planned] == caught


@pytest.fixture
def recorded(monkeypatch):
    """The layer precompiles on the CPU (as if on CUDA); warm() records what it was given instead of compiling."""
    calls = []
    clear_plans()  # fresh plans: a plan remembers in its memo that it was precompiled (or not wanted)
    monkeypatch.setattr(precompile, "_DONE", {})
    monkeypatch.setattr(precompile, "wanted", lambda device: True)
    monkeypatch.setattr(precompile, "warm", lambda launches, device, **kw: calls.append(list(launches)) or True)
    return calls


def test_it_runs_once_per_configuration(recorded):
    """Catches a precompile repeated at every call (host time on every warm call) or one configuration's
    precompile taken for another's (its first launches would compile)."""
    q, k, v, cfg, _ = _case(SMALL)
    for _ in range(3):
        lighthouse.lighthouse_attention(q, k, v, config=cfg).sum().backward()
    assert len(recorded) == 1 and len(recorded[0]) == 6  # scores, select, gather, scatter, fan_in, pool_bwd
    with torch.no_grad():  # no backward: another configuration
        lighthouse.lighthouse_attention(q, k, v, config=cfg)
    lighthouse.lighthouse_attention(*(x.double() for x in (q, k, v)), config=cfg).sum().backward()  # another dtype
    lighthouse.lighthouse_attention(q, k, v, config=cfg.replace(rope="post")).sum().backward()  # another plan
    assert [len(x) for x in recorded] == [6, 4, 6, 7]  # post: dv pulled in a launch of its own
    lighthouse.lighthouse_attention(q, k, v, config=cfg).sum().backward()
    assert len(recorded) == 4


@pytest.mark.parametrize("broken", ["planning", "compiling"])
def test_a_failing_precompile_never_fails_the_call(monkeypatch, broken):
    """Catches an exception of the precompile (planning the launches, Triton's driver or a compile) reaching the
    caller: the call must go on to Triton's usual compile at the first launch, with the same result."""
    q, k, v, cfg, _ = _case(SMALL)
    with torch.no_grad():  # another configuration than the call below: this one precompiles nothing here
        expected = lighthouse.lighthouse_attention(q, k, v, config=cfg)
    clear_plans()
    monkeypatch.setattr(precompile, "_DONE", {})
    monkeypatch.setattr(precompile, "wanted", lambda device: True)
    if broken == "planning":
        monkeypatch.setattr(layer, "planned_launches", lambda *a, **kw: 1 / 0)
    # compiling: warm() runs for real, and fails on this machine (no GPU driver for Triton, CPU tensors)
    out = lighthouse.lighthouse_attention(q, k, v, config=cfg)
    out.sum().backward()
    assert torch.equal(out.detach(), expected) and q.grad is not None
    assert [ok for ok, _ in precompile.results().values()] == [False]  # tried once, not ready


def test_the_environment_variable_turns_it_off(monkeypatch):
    """Catches LIGHTHOUSE_PRECOMPILE=0 ignored, and a precompile attempted where nothing compiles (the CPU, the
    interpreter, a CUDA graph capture)."""
    cuda = torch.device("cuda", 0)
    monkeypatch.setattr(precompile, "interpreted", lambda: False)
    monkeypatch.setattr(precompile, "capturing", lambda: False)
    monkeypatch.delenv(precompile.ENV, raising=False)
    assert precompile.wanted(cuda) and not precompile.wanted(torch.device("cpu"))
    monkeypatch.setenv(precompile.ENV, "1")
    assert precompile.wanted(cuda)
    monkeypatch.setattr(precompile, "capturing", lambda: True)
    assert not precompile.wanted(cuda)
    monkeypatch.setattr(precompile, "capturing", lambda: False)
    monkeypatch.setattr(precompile, "interpreted", lambda: True)
    assert not precompile.wanted(cuda)
    monkeypatch.setattr(precompile, "interpreted", lambda: False)
    monkeypatch.setattr(precompile, "_DONE", {})
    monkeypatch.setenv(precompile.ENV, "0")
    assert not precompile.wanted(cuda)
    assert precompile.precompile("key", lambda: pytest.fail("launches planned with the precompile off"), cuda) is False


class _FakeKernel:
    """A kernel whose warmup records its arguments and waits for the other kernels' (a barrier): warm() must run
    them at once, in threads, or the barrier times out."""

    def __init__(self, name, barrier, fail=False):
        self.__name__, self.barrier, self.fail, self.calls, self.loaded = name, barrier, fail, [], []

    def warmup(self, *args, grid, **kwargs):
        self.calls.append((args, grid, kwargs, threading.current_thread().name))
        self.barrier.wait(timeout=10)
        if self.fail:
            raise RuntimeError("compile failed")
        return self

    def _init_handles(self):
        self.loaded.append(threading.current_thread().name)


@pytest.fixture
def no_gpu_calls(monkeypatch):
    from triton.runtime import driver

    class Driver:
        def get_current_device(self):
            return 0

    monkeypatch.setattr(driver, "_active", Driver())
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())


def test_warm_compiles_every_launch_concurrently_and_loads_it(no_gpu_calls):
    """Catches launches compiled one after the other (the barrier needs all three at once), a launch warmed with
    other arguments, grid or options than the launch's, a kernel compiled but not loaded (its module and launcher
    are what Triton 3.6 builds at the first launch), and one failing kernel stopping the others."""
    barrier = threading.Barrier(3)
    kernels = [_FakeKernel("a", barrier), _FakeKernel("b", barrier), _FakeKernel("c", barrier, fail=True)]
    launches = [Launch(x, (i + 1, 2), (torch.empty(2), i), dict(NUM=i, num_warps=4)) for i, x in enumerate(kernels)]
    assert precompile.warm(launches, torch.device("cuda", 0), workers=3) is False  # c failed
    for kernel, grid, args, kwargs in launches:
        assert kernel.calls == [(args, grid, kwargs, kernel.calls[0][3])]
    assert len({x.calls[0][3] for x in kernels}) == 3 and all(x.calls[0][3] != "MainThread" for x in kernels)
    assert [len(x.loaded) for x in kernels] == [1, 1, 0]


def test_warm_runs_the_alongside_work_in_this_thread_while_the_kernels_compile(no_gpu_calls):
    """Catches the first-call work beside the precompile run after the compiles (each fake compile waits for it:
    run after them, it would time out) or in a pool thread, and its failure failing the precompile."""
    started = threading.Event()

    class Waiting(_FakeKernel):
        def warmup(self, *args, grid, **kwargs):
            self.calls.append(started.wait(timeout=10))
            return self

    kernels = [Waiting("a", None), Waiting("b", None)]
    launches = [Launch(x, (1,), (), {}) for x in kernels]
    ran_in = []

    def alongside():
        ran_in.append(threading.current_thread().name)
        started.set()
        raise RuntimeError("out of memory")  # logged, never raised

    assert precompile.warm(launches, torch.device("cuda", 0), workers=2, alongside=alongside) is True
    assert ran_in == ["MainThread"] and [x.calls for x in kernels] == [[True], [True]]


@pytest.mark.parametrize("grad", [True, False])
def test_the_sdpa_warm_up_calls_sdpa_as_the_layer_does(monkeypatch, grad):
    """Catches a warm-up of the stock SDPA on another shape, dtype or layout than the call's own SDPA on its
    sub-sequence (cuDNN builds a graph per shape: it would warm nothing), and a backward warmed for a call that has
    none, or not warmed for one that has."""
    seen = []
    real = layer.causal_sdpa

    def spy(q, k, v, backend=None):
        seen.append([(tuple(x.shape), x.stride(), x.dtype, x.requires_grad) for x in (q, k, v)] + [backend])
        out = real(q, k, v, backend)
        if out.requires_grad:
            out.register_hook(lambda g: seen.append(("backward", tuple(g.shape), g.stride())))
        return out

    monkeypatch.setattr(layer, "causal_sdpa", spy)
    q, k, v, cfg, _ = _case((2, 1, 256, 4, 2, 2, "pre", False, "norm"), grad=grad)  # GQA: k and v repeated
    plan = make_plan(cfg, q, k, v)
    layer.warm_sdpa(q, k, v, plan, grad)
    warmed, seen[:] = list(seen), []
    with torch.set_grad_enabled(grad):
        out = lighthouse.lighthouse_attention(q, k, v, config=cfg)
        if grad:
            out.sum().backward()
    assert warmed == seen and len(seen) == (2 if grad else 1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_the_gpu_a_first_call_with_its_warm_ups_computes_what_a_later_call_does(monkeypatch):
    """Catches the precompile or the SDPA warm-up beside it changing what the first call computes (a stale buffer,
    a cuDNN plan built for other strides): the first call, which runs both, against the second, which runs
    neither. out, dk and dv bit for bit; dq to bf16 rounding (the stock SDPA backward accumulates dq with atomics)."""
    warmed = []
    real = layer.warm_sdpa
    monkeypatch.setattr(layer, "warm_sdpa", lambda *a: warmed.append(1) or real(*a))
    monkeypatch.delenv(precompile.ENV, raising=False)
    monkeypatch.setattr(precompile, "_DONE", {})
    clear_plans()
    gen = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(1, h, 8200, 64, device="cuda", generator=gen, dtype=torch.bfloat16) for h in (4, 2, 2))
    cfg = LighthouseConfig(levels=3, pooling=4, topk=512, impl="triton")

    def call():
        leaves = [x.detach().requires_grad_() for x in (q, k, v)]
        out = lighthouse.lighthouse_attention(*leaves, config=cfg)
        out.backward(torch.ones_like(out))
        return [out.detach()] + [x.grad for x in leaves]

    first = call()
    assert warmed == [1] and [ok for ok, _ in precompile.results().values()] == [True]
    second = call()
    assert warmed == [1]
    for name, a, b in zip(("out", "dq", "dk", "dv"), first, second):
        if name == "dq":
            torch.testing.assert_close(a.float(), b.float(), rtol=1.6e-2, atol=1e-2 * b.float().abs().max().item())
        else:
            assert torch.equal(a, b), name


def test_the_sdpa_warm_up_under_a_non_reentrant_checkpoint_neither_hangs_nor_recomputes(monkeypatch):
    """Catches the warm-up's backward unpacking through the caller's saved-tensor hooks: under a non-reentrant
    activation checkpoint (the trainer's, with --no-recompute) they recompute the checkpointed region from inside
    the precompile, whose lock that region's own Lighthouse call then waits on forever. The call runs in a thread
    that must finish; its gradients are those of the call without the checkpoint."""
    clear_plans()
    monkeypatch.setattr(precompile, "_DONE", {})
    monkeypatch.setattr(precompile, "_LOCK", threading.Lock())  # a hung thread keeps this one, not the module's
    monkeypatch.setattr(precompile, "wanted", lambda device: True)
    warmed = []

    def warm(launches, device, alongside=None, **kw):
        alongside()  # its failure is seen here (precompile logs it), not swallowed as _run_alongside would
        warmed.append(True)
        return True

    monkeypatch.setattr(precompile, "warm", warm)
    q, k, v, cfg, _ = _case(SMALL)
    result = {}

    def call():
        out = torch.utils.checkpoint.checkpoint(
            lambda a, b, c: lighthouse.lighthouse_attention(a, b, c, config=cfg), q, k, v, use_reentrant=False
        )
        result["grads"] = torch.autograd.grad(out.sum(), (q, k, v))

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "the first call under checkpointing hung in the precompile"
    assert warmed == [True] and "grads" in result
    out = lighthouse.lighthouse_attention(q, k, v, config=cfg)
    for got, want in zip(result["grads"], torch.autograd.grad(out.sum(), (q, k, v))):
        assert torch.equal(got, want)


def test_an_inference_warm_up_runs_where_saved_tensor_hooks_are_disabled():
    """Catches the warm-up setting saved-tensor hooks for a call without a backward (nothing is saved): inside
    torch.autograd.graph.disable_saved_tensors_hooks that raises, and the warm-up would be skipped."""
    q, k, v, cfg, _ = _case(SMALL, grad=False)
    plan = make_plan(cfg, q, k, v)
    with torch.autograd.graph.disable_saved_tensors_hooks("no hooks here"), torch.no_grad():
        layer.warm_sdpa(q, k, v, plan, grad=False)
