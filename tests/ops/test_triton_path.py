"""The Triton path against the PyTorch path (interpreted on CPU, native on CUDA), and against the golden
vectors on CUDA.

Chain of evidence on the CPU: the PyTorch path equals the golden vectors (test_golden.py) and the spec loops
(test_reference_vs_spec_loops.py); here the Triton path equals the PyTorch path on the smallest shapes that
take every code path of the kernels (one or several tiles, padded N, GQA, non-power-of-two pooling and chunk,
2-4 levels, batch 2, the gather's top span pooled in several steps (D=128), the non-norm scorers' score fallback, the
torch selection fallback, tied scores). The
interpreter runs each kernel program in Python, so the golden shapes themselves (20-70 s per case on 2 cores,
almost all of it the selection's sorts) run through the Triton path only on CUDA.
Every kernel output starts poisoned (NaN / -7; tests/conftest.py sets LIGHTHOUSE_POISON=1).
"""

import pytest
import torch

import lighthouse
from lighthouse import LighthouseConfig
from lighthouse.kernels import alloc, select as select_kernels

from conftest import TIE_KINDS, rand_qkv, rel_err, tied_qkv

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def test_kernel_outputs_are_poisoned():
    """The premise of every comparison below: an element a kernel forgets to write is NaN, not a plausible 0.
    Catches the poison switch being off in the tests."""
    assert alloc.POISON
    assert torch.isnan(alloc.empty(3, dtype=torch.float32, device=DEVICE)).all()
    assert (alloc.empty(3, dtype=torch.int32, device=DEVICE) == -7).all()


def test_launch_size_helpers_match_triton():
    """kernels/sizes.py replaces triton.cdiv / triton.next_power_of_2 in the wrappers (host time): catches a
    helper that rounds differently, which would launch too few programs or a wrong block size."""
    import triton

    from lighthouse.kernels import sizes

    for n in range(1, 1100):
        assert sizes.next_pow2(n) == triton.next_power_of_2(n)
        for b in (1, 3, 16, 64, 128):
            assert sizes.cdiv(n, b) == triton.cdiv(n, b)


def test_tensors_beyond_one_launch_keep_their_order_and_rotation():
    """sizes.parts splits 7 tensors into launches of 3, 3, 1 and hands each launch the part of the rotated
    count that falls in it: catches tensors out of order or a rotation applied to the wrong tensors."""
    from lighthouse.kernels import sizes

    assert sizes.parts(list("abcdefg"), rotate=4) == [(list("abc"), 3), (list("def"), 1), (["g"], 0)]
    assert sizes.parts(list("ab"), rotate=0) == [(list("ab"), 0)]


#: Triton runs of the parity cases, shared with the determinism test (each interpreted run costs seconds)
_TRITON_RUNS = {}


def _run(q, k, v, cfg, grad_out):
    """Forward + backward; returns (out, dq, dk, dv, selected indices of the forward that made them)."""
    q, k, v = (x.detach().clone().requires_grad_() for x in (q, k, v))
    out = lighthouse.lighthouse_attention(q, k, v, config=cfg)
    sel = getattr(out.grad_fn, "sel", None)  # the Triton layer keeps its selection on the autograd node
    out.backward(grad_out)
    return out.detach(), q.grad, k.grad, v.grad, None if sel is None else sel.indices


@pytest.mark.skipif(
    DEVICE != "cuda",
    reason="golden shapes run through the Triton path on CUDA only (see module "
    "docstring); on the CPU: test_golden.py (torch) + the Triton-vs-torch cases below",
)
def test_golden_parity(golden):
    """Catches any departure of the native kernels from the paper's implementation at its own shapes."""
    c = golden["config"]
    cfg = LighthouseConfig(
        levels=c["L"],
        pooling=c["p"],
        topk=c["k"],
        scorer=c["scorer"],
        dilation=c.get("dilation", 4),
        impl="triton",
        sdpa_backend="math",
    )
    q, k, v = (golden[n].transpose(1, 2).to(DEVICE) for n in ("q", "k", "v"))
    out, dq, dk, dv, idx = _run(q, k, v, cfg, golden["grad_out"].to(DEVICE))
    assert torch.equal(idx.cpu(), golden["indices"].long())
    assert rel_err(out.cpu(), golden["out"]) <= 1e-5
    for name, g in (("dq", dq), ("dk", dk), ("dv", dv)):
        assert rel_err(g.transpose(1, 2).cpu(), golden[name]) <= 1e-5, name


CASES = [
    # (B, Hq, Hkv, N, D, levels, pooling, topk, scorer): each the smallest shape for the paths it takes
    (1, 2, 1, 301, 8, 2, 2, 128, "norm"),  # GQA, N padded to 302, chunk 151 (not a power of two)
    (1, 2, 2, 520, 8, 2, 2, 256, "norm"),  # two tiles, two kv heads
    (2, 1, 1, 390, 8, 2, 3, 128, "norm"),  # batch 2, pooling not a power of two (masked children)
    (1, 1, 1, 1024, 128, 4, 2, 128, "norm"),  # four levels; D=128 pools the top span (8) in two steps of 4
    (1, 2, 1, 513, 8, 3, 2, 128, "dilated"),  # the dilated scorer's score fallback, three levels, padded
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "B{}_Hq{}_Hkv{}_N{}_D{}_L{}_p{}_k{}_{}".format(*c))
def test_triton_matches_torch(case):
    """Catches a kernel that departs from the PyTorch path: a wrong selection (indices compared exactly), a
    wrong gather, pull or pooling backward (out, dq, dk, dv to 1e-5), an unwritten element (poisoned NaN)."""
    b, hq, hkv, n, d, levels, p, topk, scorer = case
    q, k, v = rand_qkv(b, hq, hkv, n, d, seed=n + levels, device=DEVICE)
    grad_out = torch.randn(b, hq, n, d, generator=torch.Generator().manual_seed(5)).to(DEVICE)
    cfg = LighthouseConfig(levels=levels, pooling=p, topk=topk, scorer=scorer, dilation=3, sdpa_backend="math")
    want = _run(q, k, v, cfg.replace(impl="torch"), grad_out)
    got = _TRITON_RUNS[case] = _run(q, k, v, cfg.replace(impl="triton"), grad_out)
    assert torch.equal(got[4], lighthouse.select(q, k, v, config=cfg.replace(impl="torch")))
    for name, a, w in zip(("out", "dq", "dk", "dv"), got, want):
        assert rel_err(a, w) <= 1e-5, name


def test_triton_path_is_bitwise_deterministic():
    """Two runs give bitwise the same out, dq, dk, dv (the first one shared with test_triton_matches_torch when
    it ran). Catches an order-dependent accumulation (atomics) or a read of an unwritten (poisoned, so NaN)
    buffer that varies between runs."""
    case = CASES[0]
    b, hq, hkv, n, d, levels, p, topk, scorer = case
    q, k, v = rand_qkv(b, hq, hkv, n, d, seed=n + levels, device=DEVICE)
    grad_out = torch.randn(b, hq, n, d, generator=torch.Generator().manual_seed(5)).to(DEVICE)
    cfg = LighthouseConfig(
        levels=levels, pooling=p, topk=topk, scorer=scorer, dilation=3, impl="triton", sdpa_backend="math"
    )
    first = _TRITON_RUNS.get(case) or _run(q, k, v, cfg, grad_out)
    again = _run(q, k, v, cfg, grad_out)
    for a, a2 in zip(first, again):
        assert torch.equal(a, a2), "two runs of the Triton path must be bitwise identical"


TIED = [(kind, (1, 2, 1, 301, 8, 2, 2, 128)) for kind in TIE_KINDS] + [("constant", (1, 1, 1, 515, 8, 3, 2, 128))]


@pytest.mark.parametrize("kind,case", TIED, ids=lambda x: x if isinstance(x, str) else "N{3}_L{5}".format(*x))
def test_tied_scores_select_as_the_torch_path(kind, case):
    """Tied scores (constant tokens, repeated blocks, quantized entries; padded tails at N=301 and 515): the
    kernel's packed keys (threshold search and merge) must break ties towards the lower index as the PyTorch path
    does (itself checked
    against the spec on tied inputs). Catches ties sent to the higher index: checked by planting
    `+ j` for `+ (2147483647 - j)` in kernels/select.py's _packed, which fails every case here."""
    b, hq, hkv, n, d, levels, p, topk = case
    q, k, v = tied_qkv(kind, b, hq, hkv, n, d, seed=n, device=DEVICE)
    cfg = LighthouseConfig(levels=levels, pooling=p, topk=topk, sdpa_backend="math")
    want = lighthouse.select(q, k, v, config=cfg.replace(impl="torch"))
    assert torch.equal(lighthouse.select(q, k, v, config=cfg.replace(impl="triton")), want)


@pytest.mark.parametrize("levels,pooling,topk", [(2, 3, 128), (3, 2, 128)])
def test_selection_with_tied_scores_matches_torch(levels, pooling, topk):
    """Catches a threshold search or causal merge in the selection kernel that breaks ties differently from
    the spec (equal scores: the lower index wins): every q and k row has the same norm, so every score ties."""
    q, k, v = rand_qkv(1, 2, 1, 1536, 8, seed=3, device=DEVICE)
    q, k = torch.sign(q), torch.sign(k)
    cfg = LighthouseConfig(levels=levels, pooling=pooling, topk=topk, sdpa_backend="math")
    assert torch.equal(
        lighthouse.select(q, k, v, config=cfg.replace(impl="triton")),
        lighthouse.select(q, k, v, config=cfg.replace(impl="torch")),
    )


def test_register_overflow_falls_back_to_torch_selection(monkeypatch):
    """Tiles too large for the registers take the PyTorch selection and the maps built from it: catches a
    fallback whose maps (lm_idx, lm_pos, inv) differ from the kernel's."""
    q, k, v = rand_qkv(1, 1, 1, 301, 8, seed=9, device=DEVICE)
    cfg = LighthouseConfig(levels=2, pooling=2, topk=128, impl="triton", sdpa_backend="math")
    in_kernel = lighthouse.lighthouse_attention(q, k, v, config=cfg)
    monkeypatch.setattr(select_kernels, "MAX_CANDIDATES", 64)
    fallback = lighthouse.lighthouse_attention(q, k, v, config=cfg)
    assert torch.equal(in_kernel, fallback)


def test_strided_inputs_from_bnhd_layout():
    """q, k, v as views of (B, N, H, D) projections, the layout most models produce: catches kernels that
    assume contiguous inputs (wrong strides)."""
    q, k, v = rand_qkv(1, 2, 2, 256, 8, seed=12, device=DEVICE)
    cfg = LighthouseConfig(levels=2, pooling=2, topk=128, sdpa_backend="math")
    strided = [x.transpose(1, 2).contiguous().transpose(1, 2) for x in (q, k, v)]
    assert not strided[0].is_contiguous()
    got = lighthouse.lighthouse_attention(*strided, config=cfg.replace(impl="triton"))
    want = lighthouse.lighthouse_attention(q, k, v, config=cfg.replace(impl="torch"))
    assert rel_err(got, want) <= 1e-5


@pytest.mark.parametrize("where", ["q", "k"])
def test_non_finite_input_is_refused_by_the_triton_path(where):
    """Catches the score kernel's deferred finiteness flag not being raised or read."""
    q, k, v = rand_qkv(1, 2, 1, 256, 8, seed=13, device=DEVICE)
    dict(q=q, k=k)[where][0, 0, 200, 2] = float("inf")
    cfg = LighthouseConfig(levels=2, pooling=2, topk=128, impl="triton", sdpa_backend="math")
    with pytest.raises(ValueError, match=rf"position 200: {where} "):
        lighthouse.lighthouse_attention(q, k, v, config=cfg)


def test_backward_can_run_twice_on_a_retained_graph():
    """The benchmark times backward alone by repeating it on one graph: results must repeat exactly (catches a
    backward that consumes or frees its saved state inside retain_inner_graph)."""
    q, k, v = rand_qkv(1, 1, 1, 256, 8, seed=14, device=DEVICE, requires_grad=True)
    cfg = LighthouseConfig(levels=2, pooling=2, topk=128, impl="triton", sdpa_backend="math")
    out = lighthouse.lighthouse_attention(q, k, v, config=cfg)
    grad = torch.randn_like(out)
    with lighthouse.kernels.retain_inner_graph():
        first = torch.autograd.grad(out, (q, k, v), grad, retain_graph=True)
        second = torch.autograd.grad(out, (q, k, v), grad)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_retain_switch_reaches_a_backward_on_another_thread():
    """On CUDA autograd runs the backward on its own device thread: a thread-local retain switch opened by the
    caller never reached it (tests/ops/test_triton_path.py failed on the H200 for that). Here the backwards run on
    a second Python thread while the caller's thread holds the switch: catches a thread-local switch on the CPU."""
    import threading

    q, k, v = rand_qkv(1, 1, 1, 256, 8, seed=14, device=DEVICE, requires_grad=True)
    cfg = LighthouseConfig(levels=2, pooling=2, topk=128, impl="triton", sdpa_backend="math")
    out = lighthouse.lighthouse_attention(q, k, v, config=cfg)
    grad = torch.randn_like(out)
    results, errors = [], []

    def backward_twice():
        try:
            results.append(torch.autograd.grad(out, (q, k, v), grad, retain_graph=True))
            results.append(torch.autograd.grad(out, (q, k, v), grad))
        except Exception as err:  # reported in the main thread
            errors.append(err)

    with lighthouse.kernels.retain_inner_graph():
        worker = threading.Thread(target=backward_twice)
        worker.start()
        worker.join()
    assert not errors, errors
    assert all(torch.equal(a, b) for a, b in zip(*results))


def test_backward_frees_the_sub_sequence_before_the_gradients_and_says_so_when_run_again():
    """By default the backward drops the sub-sequence tensors (peak memory), and a second backward on the
    same forward gets a clear error instead of a wrong gradient."""
    q, k, v = rand_qkv(1, 1, 1, 256, 8, seed=15, device=DEVICE, requires_grad=True)
    cfg = LighthouseConfig(levels=2, pooling=2, topk=128, impl="triton", sdpa_backend="math")
    out = lighthouse.lighthouse_attention(q, k, v, config=cfg)
    grad = torch.randn_like(out)
    torch.autograd.grad(out, (q, k, v), grad, retain_graph=True)
    assert out.grad_fn.out_sub is None and out.grad_fn.leaves is None
    with pytest.raises(RuntimeError, match="retain_inner_graph"):
        torch.autograd.grad(out, (q, k, v), grad)


def test_fused_launches_equal_one_tensor_launches():
    """gather_many / pull_many on three tensors give bitwise the rows of three single-tensor launches: catches
    a fused launch that mixes up its tensors' pointers or strides."""
    from lighthouse.kernels.gather import gather_many, gather_rows
    from lighthouse.kernels.layer import run_selection
    from lighthouse.kernels.scatter import pull_many, pull_rows
    from lighthouse.plan import make_plan

    cfg = LighthouseConfig(levels=2, pooling=2, topk=128)
    q, k, v = rand_qkv(1, 1, 1, 257, 8, seed=5)  # N padded to 258: unwritten padding rows would be NaN
    q, k, v = (x.to(DEVICE) for x in (q, k, v))
    plan = make_plan(cfg, q, k, v)
    sel, _ = run_selection(q, k, v, plan)
    fused = gather_many([q, k, v], sel.lm_idx, sel.lm_pos, plan)
    for x, y in zip(fused, [gather_rows(x, sel.lm_idx, sel.lm_pos, plan) for x in (q, k, v)]):
        assert torch.equal(x, y)
    for scatter in (True, False):
        pulled = pull_many(fused, sel.inv, plan, scatter=scatter)
        for x, y in zip(pulled, [pull_rows(s, sel.inv, plan, scatter=scatter) for s in fused]):
            assert torch.equal(x, y)
            assert not torch.isnan(x).any()


@pytest.mark.parametrize("levels,pooling", [(3, 4), (4, 2), (2, 3)])
def test_score_pyramid_pooled_in_kernel_equals_the_torch_pyramid(levels, pooling):
    """Levels the scoring kernel max-pools in registers (spans dividing its block) and the ones pooled
    afterwards equal max-pooling of its token scores bitwise (NaN carried up to the coarsest level); the
    token scores match the PyTorch scorer. Catches a wrong span or offset of an in-register pooled level and
    a NaN dropped by the max (which would hide a bad input)."""
    from lighthouse.kernels.scores import score_pyramids
    from lighthouse.plan import make_plan
    from lighthouse.reference.scores import score_pyramid, token_scores

    cfg = LighthouseConfig(levels=levels, pooling=pooling, topk=128)
    n = 128 * pooling ** (levels - 1) * 2 - 5  # two tiles, padded
    q, k, v = (x.to(DEVICE) for x in rand_qkv(1, 4, 2, n, 16, seed=levels))
    q[0, 1, 7, 3] = float("nan")
    plan = make_plan(cfg, q, k, v)
    sq, sk, _ = score_pyramids(q, k, v, plan)
    n_pad = plan.padded_len
    tq, tk = token_scores(q.nan_to_num(), k, v, plan)
    for got, tokens in ((sq, tq), (sk, tk)):
        want = torch.cat(score_pyramid(got[..., :n_pad].contiguous(), plan), dim=-1)
        assert torch.equal(got.nan_to_num(-1.0), want.nan_to_num(-1.0))
        real = ~got[..., :n_pad].isnan()
        assert torch.allclose(got[..., :n_pad][real], tokens[real], rtol=1e-6, atol=0)
    top = plan.offsets[-1] + 7 // plan.spans[-1]  # the coarsest entry over token 7
    assert sq[0, 0, top].isnan() and not sq[0, 0, top + 1].isnan() and not sq[0, 1, top].isnan()
