"""kernels/launch.py's direct launch: a repeated specialisation skips Triton's per-call dispatch and hands the
compiled kernel's launcher what Triton would; anything Triton specialises on sends the launch back through Triton.

On the CPU the kernel is Triton's own JITFunction (its parameters, do_not_specialize and `run` untouched) whose
`kernel[grid]` records the launch and hands back a stand-in compiled kernel; what the launcher must receive is
computed independently, by binding the arguments to the kernel's Python signature. On CUDA the layer runs both
ways and must give the same bits."""

from __future__ import annotations

import inspect

import pytest
import torch

import lighthouse
from lighthouse.kernels import launch as L

triton = pytest.importorskip("triton")
from triton.runtime.jit import JITFunction  # noqa: E402


def _body(X, Y, XS, ST, n, stride, flag, epoch, BLOCK: "tl.constexpr", MODE: "tl.constexpr" = 3):  # noqa: F821
    pass


class _Compiled:
    """What Triton hands back from a launch: the function handle, packed metadata and a launcher."""

    def __init__(self, with_function=True):
        self.function = object() if with_function else None
        self.packed_metadata = ("packed",)
        self.calls = []

    def run(self, *args):
        self.calls.append(args)


class _FakeJIT(JITFunction):
    """`kernel[grid](...)` records a launch through Triton and returns the stand-in compiled kernel."""

    def __getitem__(self, grid):
        def through_triton(*args, **kwargs):
            self.through_triton.append((grid, args, kwargs))
            return self.compiled

        return through_triton


@pytest.fixture
def kernel(monkeypatch):
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch._C, "_cuda_getCurrentRawStream", lambda device: 4242, raising=False)
    monkeypatch.setattr(L, "ENABLED", True)
    monkeypatch.setattr(L, "_CACHE", {})
    k = _FakeJIT(_body, do_not_specialize=["epoch"])
    k.through_triton, k.compiled = [], _Compiled()
    return k


def _args(x=None, n=64, stride=16, flag=True, epoch=5, xs1=None, st=((64, 16, 1), (64, 16, 1))):
    """Positional arguments as the layer's wrappers pass them: tensors, a tuple of tensors and a tuple of stride
    tuples (the gather's), sizes, a flag, the epoch."""
    x = torch.zeros(32) if x is None else x
    xs = (torch.zeros(16), torch.zeros(16) if xs1 is None else xs1)
    return (x, torch.zeros(32, dtype=torch.int32), xs, st, n, stride, flag, epoch)


def _expected_launch(grid, args, kwargs, compiled):
    """The launcher's arguments as JITFunction.run passes them: grid padded to 3, the stream, the handle, the
    packed metadata, no launch metadata or hooks, then every parameter bound as Python binds it."""
    bound = inspect.signature(_body).bind(*args, **{k: v for k, v in kwargs.items() if k != "num_warps"})
    bound.apply_defaults()
    grid3 = tuple(grid) + (1,) * (3 - len(grid))
    return (*grid3, 4242, compiled.function, compiled.packed_metadata, None, None, None, *bound.arguments.values())


def _same(a, b):
    return len(a) == len(b) and all(x is y if isinstance(x, torch.Tensor) else x == y for x, y in zip(a, b))


def test_a_repeated_specialisation_launches_directly_with_the_arguments_triton_would_pass(kernel):
    """Catches a direct launch with the constexprs or defaults out of the signature's order, a grid not padded,
    another stream, or a first launch that skipped Triton (which compiles it)."""
    args, kw = _args(), dict(BLOCK=128, num_warps=4)
    before = L.DIRECT_LAUNCHES[0]
    assert L.launch(kernel, (7,), args, kw) is kernel.compiled
    assert len(kernel.through_triton) == 1 and kernel.compiled.calls == []
    args2 = _args(epoch=6)  # new tensors (same dtypes and alignment), another epoch: the same specialisation
    assert L.launch(kernel, (7, 3), args2, kw) is kernel.compiled
    assert len(kernel.through_triton) == 1
    assert _same(kernel.compiled.calls[-1], _expected_launch((7, 3), args2, kw, kernel.compiled))
    assert L.DIRECT_LAUNCHES[0] == before + 1


@pytest.mark.parametrize(
    "change",
    [
        "dtype",
        "misaligned",
        "int value",
        "int one",
        "tuple tensor misaligned",
        "tuple stride",
        "tuple bool for int",
        "bool for int",
        "constexpr",
        "launch option",
        "epoch width",
    ],
)
def test_what_triton_specialises_on_sends_the_launch_back_through_triton(kernel, change):
    """Catches a key coarser than Triton's specialisation: a launch that needs another compiled kernel (a
    misaligned pointer above all, where the cached kernel's vector loads would be wrong) made with the cached one."""
    kw = dict(BLOCK=128, num_warps=4)
    L.launch(kernel, (4,), _args(), kw)
    args, kw2 = _args(), dict(kw)
    if change == "dtype":
        args = _args(x=torch.zeros(32, dtype=torch.float16))
    elif change == "misaligned":
        args = _args(x=torch.zeros(33)[1:])  # 4 bytes past a 16-byte boundary
        assert args[0].data_ptr() % 16
    elif change == "int value":
        args = _args(n=65)
    elif change == "tuple tensor misaligned":
        args = _args(xs1=torch.zeros(17)[1:])
    elif change == "tuple stride":
        args = _args(st=((64, 16, 1), (64, 1, 1)))
    elif change == "tuple bool for int":
        args = _args(st=((64, 16, 1), (64, 16, True)))
    elif change == "int one":
        args = _args(stride=1)
    elif change == "bool for int":
        args = _args(flag=1)
    elif change == "constexpr":
        kw2["BLOCK"] = 64
    elif change == "launch option":
        kw2["num_warps"] = 8
    elif change == "epoch width":
        args = _args(epoch=2**31)
    L.launch(kernel, (4,), args, kw2)
    assert len(kernel.through_triton) == 2 and kernel.compiled.calls == []
    L.launch(kernel, (4,), args, kw2)  # and that specialisation, once seen, is launched directly
    assert len(kernel.through_triton) == 2 and len(kernel.compiled.calls) == 1


@pytest.mark.parametrize("why", ["disabled", "run replaced", "launch hook", "no compiled kernel"])
def test_triton_keeps_every_launch_where_a_direct_one_could_differ(kernel, monkeypatch, why):
    """Catches a direct launch past an instrumented `run`, a profiler's launch hook, LIGHTHOUSE_DIRECT_LAUNCH=0,
    or a launch whose compiled kernel has no function handle."""
    if why == "disabled":
        monkeypatch.setattr(L, "ENABLED", False)
    elif why == "run replaced":
        kernel.run = lambda *a, **kw: None  # how scripts/kernel_resources.py records launches
    elif why == "launch hook":
        hooks = triton.knobs.runtime.launch_enter_hook
        if hasattr(hooks, "calls"):  # Triton 3.6: a chain of hooks, never None
            monkeypatch.setattr(hooks, "calls", [lambda metadata: None])
        else:
            monkeypatch.setattr(triton.knobs.runtime, "launch_enter_hook", lambda metadata: None)
    elif why == "no compiled kernel":
        kernel.compiled = _Compiled(with_function=False)
    for _ in range(3):
        L.launch(kernel, (4,), _args(), dict(BLOCK=128))
    assert len(kernel.through_triton) == 3 and kernel.compiled.calls == []


def test_the_cache_is_emptied_when_full(kernel, monkeypatch):
    """Catches a cache that grows without bound when a workload's specialisations never repeat."""
    monkeypatch.setattr(L, "MAX_CACHED", 2)
    for n in (17, 18, 19):
        L.launch(kernel, (4,), _args(n=n), dict(BLOCK=128))
    assert len(L._CACHE) == 1


def test_the_int_width_is_tritons():
    assert [L.int_width(v) for v in (0, -(2**31), 2**31 - 1, 2**31, -(2**31) - 1, 2**63, 2**64)] == [
        "i32",
        "i32",
        "i32",
        "i64",
        "i64",
        "u64",
        "i64",
    ]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the compiled kernels need CUDA")
def test_the_layer_gives_the_same_bits_launched_directly_and_through_triton(monkeypatch):
    """Catches a direct launch that differs from Triton's (arguments, specialisation): forward and gradients of
    a warm call, with aligned inputs and then with inputs 2 bytes off a 16-byte boundary (another specialisation
    of the same kernels), bit-equal either way; and the warm calls did launch directly."""
    cfg = lighthouse.LighthouseConfig(levels=3, pooling=4, topk=256, impl="triton")
    g = torch.Generator(device="cuda").manual_seed(0)
    b, h, n, d = 1, 2, 8192, 64

    def inputs(offset):
        base = torch.randn(3 * b * h * n * d + offset, device="cuda", dtype=torch.bfloat16, generator=g)
        q, k, v = (base[offset + i * b * h * n * d :][: b * h * n * d].view(b, h, n, d) for i in range(3))
        return [x.detach().clone() if offset == 0 else x for x in (q, k, v)]

    def step(qkv):
        leaves = [x.detach().requires_grad_() for x in qkv]
        out = lighthouse.lighthouse_attention(*leaves, config=cfg)
        out.backward(torch.ones_like(out))
        return [out.detach()] + [x.grad for x in leaves]

    for offset in (0, 1):
        qkv = inputs(offset)
        assert (qkv[0].data_ptr() % 16 != 0) == bool(offset)
        monkeypatch.setattr(L, "ENABLED", False)
        want = step(qkv)
        monkeypatch.setattr(L, "ENABLED", True)
        step(qkv)  # the first launch of each specialisation goes through Triton
        before = L.DIRECT_LAUNCHES[0]
        got = step(qkv)
        assert L.DIRECT_LAUNCHES[0] - before >= 6  # scores, select, gather, scatter, fan-in, pooling backward
        for a, w in zip(got, want):
            torch.testing.assert_close(a, w, rtol=0, atol=0)
