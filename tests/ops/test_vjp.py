"""lighthouse.sdpa.vjp: torch.autograd.grad's result, without the sympy import of its first call with gradient
tensors (2-4.8 s of the H200's warm first call, reports/h200/coldstart/sdpa-first-profiled/)."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from lighthouse.sdpa import causal_sdpa, vjp


def _sdpa_graph(seed=0):
    g = torch.Generator().manual_seed(seed)
    leaves = [torch.randn(1, 2, 64, 16, generator=g, requires_grad=True) for _ in range(3)]
    out = causal_sdpa(*leaves)
    return leaves, out, torch.randn(out.shape, generator=g)


def test_vjp_equals_autograd_grad_and_keeps_or_frees_the_graph():
    """Catches wrong gradients, a swapped retain flag, or gradients accumulated into .grad."""
    leaves, out, grad = _sdpa_graph()
    want = torch.autograd.grad(out, leaves, grad, retain_graph=True)
    got = vjp([out], leaves, [grad], retain=True)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert all(x.grad is None for x in leaves)
    vjp([out], leaves, [grad])  # the graph was kept: a second backward runs, and frees it
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        vjp([out], leaves, [grad])


def test_vjp_refuses_a_gradient_of_another_shape_and_casts_one_of_another_dtype_as_autograd_does():
    """A shape mismatch is refused; a float64 gradient for a float32 output gives torch.autograd.grad's result (a
    recomputed backward under another autocast state hands such a gradient: refusing it broke a working call)."""
    leaves, out, grad = _sdpa_graph()
    with pytest.raises(ValueError, match="output's shape"):
        vjp([out], leaves, [grad[..., :8]])
    want = torch.autograd.grad(out, leaves, grad.double(), retain_graph=True)
    for a, b in zip(vjp([out], leaves, [grad.double()]), want):
        assert a.dtype == b.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_the_layer_backwards_import_no_sympy():
    """Catches a return to torch.autograd.grad with gradient tensors in any of the layer's three backwards: the
    Triton path's, the SDPA warm-up's (called directly: the precompile that runs it is off on the CPU) and
    lighthouse.hf's recomputed one (their first call imports torch.fx.experimental.symbolic_shapes). The control
    at the end shows the probe sees that import."""
    probe = textwrap.dedent(
        """
        import sys, torch
        from lighthouse import LighthouseConfig, lighthouse_attention
        from lighthouse.hf import _RecomputedLighthouse
        from lighthouse.kernels.layer import warm_sdpa
        from lighthouse.plan import plan_for
        name = "torch.fx.experimental.symbolic_shapes"
        dev = "cuda" if torch.cuda.is_available() else "cpu"  # on the CPU in Triton's interpreter
        q, k, v = (torch.randn(1, 1, 256, 16, device=dev, requires_grad=True) for _ in range(3))
        cfg = LighthouseConfig(levels=2, pooling=2, topk=128, impl="triton")
        lighthouse_attention(q, k, v, config=cfg).sum().backward()
        warm_sdpa(q, k, v, plan_for(cfg, 1, 1, 1, 256, 16), grad=True)
        torch_cfg = LighthouseConfig(levels=2, pooling=2, topk=128, impl="torch")
        _RecomputedLighthouse.apply(q, k, v, torch_cfg).sum().backward()
        print(name in sys.modules, q.grad is not None)
        out = q * 2
        torch.autograd.grad(out, q, torch.ones_like(out))
        print(name in sys.modules)
        """
    )
    env = dict(os.environ, LIGHTHOUSE_PRECOMPILE="0")
    if not torch.cuda.is_available():
        env["TRITON_INTERPRET"] = "1"
    run = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["False", "True", "True"]
