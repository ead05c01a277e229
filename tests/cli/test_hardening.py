"""What a new user hit (issue 11): library-side hardening of the finiteness check and the API's parameters."""

import re
import time
import warnings

import numpy as np
import pytest
import torch

import lighthouse
from lighthouse import LighthouseAttention, LighthouseConfig
from lighthouse.sdpa import dense_attention

from conftest import rand_qkv

SMALL = dict(levels=2, pooling=2, topk=128)
IMPLS = ("torch", "triton")  # the Triton path runs interpreted on the CPU (conftest sets TRITON_INTERPRET=1)


# ------------------------------------------------------------------ item 5: NaN / Inf / overflow

N = 256  # the shortest sequence of levels=2, pooling=2, topk=128: the interpreted Triton path stays quick


@pytest.mark.parametrize("scorer", ["norm", "dilated"])
@pytest.mark.parametrize("where", ["q", "k", "v"])
@pytest.mark.parametrize("bad", ["nan", "-inf"])
def test_non_finite_input_is_refused_for_every_tensor_and_scorer(scorer, where, bad):
    """Catches the torch path's check covering only the scores: NaN or -Inf in v with the norm scorer (which
    never reads v) was computed silently into a NaN output; and the message blaming "q (or v)"."""
    q, k, v = rand_qkv(1, 2, 1, N, 4)
    dict(q=q, k=k, v=v)[where][0, 0, 100, 1] = float(bad)
    with pytest.raises(ValueError, match=rf"position 100: {where} contains NaN or Inf"):
        lighthouse.lighthouse_attention(q, k, v, **SMALL, scorer=scorer, impl="torch")


def test_non_finite_v_is_refused_by_the_triton_layer():
    """Catches the Triton path's deferred check covering only the scores: NaN in v with the norm scorer went
    through the whole layer. End to end, at the last token: the layer screens v through the gathered v_sub,
    whose coarsest rows must reach every token."""
    q, k, v = rand_qkv(1, 2, 1, N, 4)
    v[0, 0, N - 1, 1] = float("nan")
    with pytest.raises(ValueError, match=rf"position {N - 1}: v contains NaN or Inf"):
        lighthouse.lighthouse_attention(q, k, v, **SMALL, impl="triton")


def _triton_check(q, k, v):
    """The Triton path's scoring kernel and its deferred finiteness check (what the layer raises from)."""
    from lighthouse.kernels.scores import score_pyramids
    from lighthouse.plan import make_plan

    _, _, check = score_pyramids(q, k, v, make_plan(LighthouseConfig(**SMALL, impl="triton"), q, k, v))
    return check


@pytest.mark.parametrize("where,bad", [("q", "-inf"), ("k", "nan"), ("v", "-inf"), ("v", "inf")])
def test_triton_deferred_check_names_the_bad_tensor(where, bad):
    """Catches the scoring kernel's flag missing v and its message blaming "q or k" for any bad input."""
    q, k, v = rand_qkv(1, 2, 1, N, 4)
    dict(q=q, k=k, v=v)[where][0, 0, 100, 1] = float(bad)
    with pytest.raises(ValueError, match=rf"position 100: {where} contains NaN or Inf"):
        _triton_check(q, k, v).raise_if_bad()


@pytest.mark.parametrize("impl,scorer", [("torch", "norm"), ("torch", "dilated"), ("triton", "norm")])
def test_huge_finite_input_is_reported_as_overflow(impl, scorer):
    """Catches q, k * 1e20 (finite, but the float32 scores overflow) being refused as "contains NaN or
    Inf", which sends the user hunting for NaN that is not there."""
    q, k, v = rand_qkv(1, 1, 1, N, 4)
    q, k = q * 1e20, k * 1e20
    assert bool(torch.isfinite(q).all())
    with pytest.raises(ValueError, match=rf"the {scorer} scorer's .* score overflowed float32") as err:
        if impl == "triton":
            _triton_check(q, k, v).raise_if_bad()
        else:
            lighthouse.select(q, k, v, **SMALL, scorer=scorer, impl=impl)
    assert "contains NaN" not in str(err.value) and "scale the inputs down" in str(err.value)


@pytest.mark.parametrize("impl", IMPLS)
def test_large_finite_v_is_not_refused(impl):
    """Catches a finiteness check on v that raises a false alarm: v whose float32 sum overflows (the cheap
    screen both paths use) but whose every element is finite must still be accepted."""
    q, k, v = rand_qkv(1, 1, 1, N, 4)
    v = torch.full_like(v, 3e38)
    assert not torch.isfinite(v.sum())
    if impl == "triton":
        _triton_check(q, k, v).raise_if_bad()
    else:
        lighthouse.select(q, k, v, **SMALL, impl=impl)


# ------------------------------------------------------------------ item 10: the API's parameters


@pytest.mark.parametrize(
    "name,value",
    [
        ("levels", np.int64(2)),
        ("pooling", np.int32(2)),
        ("topk", np.int64(128)),
        ("dilation", np.int16(3)),
        ("levels", torch.tensor(2)),
    ],
)
def test_integral_numbers_are_accepted(name, value):
    """Catches levels=np.int64(2) (what a numpy sweep or a config file hands over) being refused as not an
    integer; the config must store plain ints (JSON, hashing, equality)."""
    cfg = LighthouseConfig(**{**SMALL, name: value})
    assert type(getattr(cfg, name)) is int and getattr(cfg, name) == int(value)
    assert cfg == LighthouseConfig(**{**SMALL, name: int(value)})
    q, k, v = rand_qkv(1, 1, 1, N, 4)
    lighthouse.lighthouse_attention(q, k, v, **{**SMALL, name: value}, impl="torch")


@pytest.mark.parametrize("value", [2.0, np.float64(2.0), True, "2"])
def test_non_integral_numbers_are_still_refused(value):
    """Catches accepting integral numbers by int(x) (which would take 2.7 as 2, True as 1 and '2' as 2)."""
    with pytest.raises(ValueError, match=r"levels must be an integer >= 2"):
        LighthouseConfig(levels=value)


def test_config_accepts_a_dict():
    """Catches config=dict(...) failing with AttributeError deep inside make_plan."""
    q, k, v = rand_qkv(1, 1, 1, N, 4)
    want = lighthouse.lighthouse_attention(q, k, v, config=LighthouseConfig(**SMALL, impl="torch"))
    got = lighthouse.lighthouse_attention(q, k, v, config=dict(SMALL, impl="torch"))
    assert torch.equal(got, want)
    assert torch.equal(
        lighthouse.select(q, k, v, config=dict(SMALL, impl="torch")),
        lighthouse.select(q, k, v, config=LighthouseConfig(**SMALL, impl="torch")),
    )
    assert LighthouseAttention(config=dict(SMALL)).config == LighthouseConfig(**SMALL)


@pytest.mark.parametrize(
    "config,exc,match",
    [
        ("levels=2", TypeError, r"config must be a LighthouseConfig or a dict of its fields \(levels, pooling, topk"),
        ([2, 2, 128], TypeError, r"config must be a LighthouseConfig or a dict"),
        (dict(level=2), ValueError, r"config has no field 'level'; its fields are levels, pooling, topk"),
    ],
)
def test_config_of_the_wrong_kind_says_what_is_expected(config, exc, match):
    """Catches a config that is neither a LighthouseConfig nor a dict of its fields giving AttributeError or
    a bare dataclass TypeError instead of naming what is expected."""
    q, k, v = rand_qkv(1, 1, 1, N, 4)
    with pytest.raises(exc, match=match):
        lighthouse.lighthouse_attention(q, k, v, config=config)
    with pytest.raises(exc, match=match):
        LighthouseAttention(config=config)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU's refusal")
@pytest.mark.parametrize("backend", ["cudnn", "efficient"])
@pytest.mark.parametrize("impl", IMPLS)
def test_cuda_only_sdpa_backend_on_cpu_is_a_value_error(backend, impl):
    """Catches sdpa_backend='cudnn' on the CPU raising a RuntimeError that quotes PyTorch's internals
    ("No viable backend ... turning off both []") after the whole selection has run."""
    q, k, v = rand_qkv(1, 1, 1, N, 4)
    match = rf"sdpa_backend='{backend}' cannot run on cpu: it needs a CUDA device"
    with pytest.raises(ValueError, match=match) as err:
        lighthouse.lighthouse_attention(q, k, v, **SMALL, impl=impl, sdpa_backend=backend)
    assert "viable" not in str(err.value)
    with pytest.raises(ValueError, match=match):
        dense_attention(q, k, v, backend)


def test_cuda_only_backend_is_still_unsupported_in_a_sweep():
    """Catches the new ValueError turning a sweep's cuDNN-then-auto fallback (status `unsupported`) into a
    row marked `invalid`."""
    from lighthouse.bench.runner import classify
    from lighthouse.sdpa import BackendUnavailable

    assert classify(BackendUnavailable("sdpa_backend='cudnn' cannot run on cpu"), task=None)[0] == "unsupported"


@pytest.mark.parametrize(
    "params,match",
    [
        (
            dict(levels=500),
            r"levels=500 with pooling=4 and topk=2048 needs sequences longer than the 2\*\*30 tokens "
            r"supported .*; levels can be at most 10 there",
        ),
        (dict(levels=10**9), r"levels=1000000000 with pooling=4"),
        (dict(pooling=10**8, levels=2), r"pooling=100000000 with levels=2 and topk=2048 needs sequences longer"),
        (dict(topk=2**40), r"topk=1099511627776 .* needs sequences longer than the 2\*\*30 tokens"),
        (dict(dilation=2**40), r"dilation must be an integer >= 1 and <= 2\*\*30 \(and at most N\), got 1099511627776"),
    ],
)
def test_absurd_sizes_are_refused_in_a_short_message_and_fast(params, match):
    """Catches levels=500 printing a 300-digit minimum length (and levels=10**9 computing pooling**levels
    for minutes): pyramid sizes are bounded by the longest supported sequence, in a one-line message."""
    start = time.perf_counter()
    with pytest.raises(ValueError, match=match) as err:
        LighthouseConfig(**params)
    assert time.perf_counter() - start < 1.0
    assert len(str(err.value)) < 300 and not re.search(r"\d{16,}", str(err.value))


def test_too_short_sequence_names_the_levels_that_fit():
    """Catches the too-short message leaving the user to work out which levels would fit this N."""
    q, k, v = rand_qkv(1, 1, 1, 1024, 4)
    with pytest.raises(ValueError, match=r"N=1024 is too short.*at N=1024, levels <= 2 fits with pooling=4, topk=128"):
        lighthouse.lighthouse_attention(q, k, v, levels=5, pooling=4, topk=128, impl="torch")


def test_dilation_is_bounded_by_the_sequence_length():
    """Catches dilation=10**6 at N=1024 padding every strided subsequence to a million tokens (3.8 s, 600 MB)
    instead of being refused: a stride past N leaves one token per subsequence."""
    q, k, v = rand_qkv(1, 1, 1, 1024, 4)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"dilation must be <= the sequence length N=1024 .*got 1000000"):
        lighthouse.lighthouse_attention(q, k, v, **SMALL, scorer="dilated", dilation=10**6, impl="torch")
    assert time.perf_counter() - start < 1.0
    lighthouse.lighthouse_attention(q, k, v, **SMALL, scorer="dilated", dilation=1024, impl="torch")
    lighthouse.lighthouse_attention(q, k, v, **SMALL, scorer="norm", dilation=10**6, impl="torch")  # not used


@pytest.mark.parametrize("scorer", ["norm", "dilated"])
def test_gate_with_a_scorer_that_ignores_it_warns(scorer):
    """Catches gate= being ignored silently by the norm and dilated scorers (a user who meant scorer='gla')."""
    q, k, v = rand_qkv(1, 2, 1, N, 4)
    gate = torch.zeros(1, 2, N)
    with pytest.warns(UserWarning, match=rf"gate= is used only by scorer='gla'; scorer='{scorer}' ignores it"):
        lighthouse.lighthouse_attention(q, k, v, **SMALL, scorer=scorer, impl="torch", gate=gate)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lighthouse.lighthouse_attention(q, k, v, **SMALL, scorer=scorer, impl="torch")
