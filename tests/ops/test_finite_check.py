"""The Triton layer's finiteness check read after the call in training (kernels/finite_check.py): the queue never
waits in a poll, keeps GPU order, names the call, frees its slots, and LIGHTHOUSE_FINITE_CHECK=sync reads at the
call. The queue is driven with stand-in words whose "GPU has passed" state the test sets (the CPU has no events);
the end-to-end GPU case runs where CUDA is."""

import pytest
import torch

import lighthouse
from lighthouse.kernels import finite_check as fc
from lighthouse.kernels import layer
from lighthouse.plan import make_plan

from conftest import rand_qkv

SMALL = dict(levels=2, pooling=2, topk=128)
N = 256


class Word:
    """A pinned word as the queue sees it: done() once the GPU has written it, read() its value."""

    def __init__(self, value: float, done: bool = True):
        self.value, self.passed, self.reads = value, done, 0

    def done(self) -> bool:
        return self.passed

    def read(self) -> float:
        self.passed, self.reads = True, self.reads + 1  # a read waits for the GPU
        return self.value


class Slots:
    def __init__(self, size: int):
        self.flags = torch.zeros(size, dtype=torch.int32)
        self.v_sums = torch.zeros(size, dtype=torch.float32)
        self.free = list(range(size))


@pytest.fixture
def queue(monkeypatch):
    """An empty queue and two stand-in slots, restored afterwards."""
    monkeypatch.setattr(fc, "_PENDING", type(fc._PENDING)())
    monkeypatch.setattr(fc, "_SLOTS", [Slots(2)])
    return fc._PENDING


def _inflight(flag: Word, v_sum: Word, slot, what="call 7: B=1, Hq=2, Hkv=1, N=256, D=8"):
    return fc._InFlight(flag, v_sum, slot, what)


def test_a_poll_never_waits_and_keeps_gpu_order(queue):
    """Catches a poll that reads a check the GPU has not passed (a wait: the stall the deferral removes), or that
    reads a later check past an earlier one still in flight."""
    first = _inflight(Word(0, done=False), Word(1.0, done=False), None)
    second = _inflight(Word(1), Word(1.0), None, "call 8: B=1, Hq=2, Hkv=1, N=256, D=8")  # bad, GPU passed it
    queue.extend([first, second])
    fc.poll_pending()
    assert list(queue) == [first, second] and first.flag.reads == 0 and second.flag.reads == 0
    first.flag.passed = first.v_sum.passed = True
    with pytest.raises(
        ValueError, match=r"earlier Lighthouse layer call \(call 8: .*N=256.*LIGHTHOUSE_FINITE_CHECK=sync"
    ):
        fc.poll_pending()
    assert not queue


def test_no_poll_while_a_cuda_graph_is_captured(queue, monkeypatch):
    """Catches a poll that queries CUDA events inside a capture (a global-mode capture refuses the call)."""
    queue.append(_inflight(Word(1), Word(0.0), None))
    monkeypatch.setattr(fc, "capturing", lambda: True)
    fc.poll_pending()
    assert len(queue) == 1 and queue[0].flag.reads == 0
    monkeypatch.setattr(fc, "capturing", lambda: False)
    with pytest.raises(ValueError, match="call 7"):
        fc.poll_pending()


@pytest.mark.parametrize("flag,v_sum", [(1, 0.0), (0, float("nan")), (0, float("inf")), (0, 0.0)])
def test_raise_pending_reads_everything_and_raises_the_first_bad(queue, flag, v_sum):
    """Catches a flush that stops at the first bad check (its slots never freed) or misses a bad v screen."""
    fc._SLOTS[0].free.clear()
    later = _inflight(Word(1), Word(0.0), 1, "call 9: B=1, Hq=2, Hkv=1, N=256, D=8")  # always bad
    checks = [_inflight(Word(flag, done=False), Word(v_sum, done=False), 0), later]
    queue.extend(checks)
    with pytest.raises(ValueError, match=r"\(call 7" if (flag or v_sum != 0.0) else r"\(call 9"):
        fc.raise_pending()
    assert not queue and sorted(fc._SLOTS[0].free) == [0, 1]
    assert all(c.flag.reads == 1 for c in checks)


def test_with_every_slot_held_the_oldest_check_is_read(queue):
    """Catches a full slot table that overwrites a word still in flight (a lost or wrong check)."""
    fc._SLOTS[0].free.clear()
    old, new = _inflight(Word(0, done=False), Word(0.0, done=False), 0), _inflight(Word(0), Word(0.0), 1)
    queue.extend([old, new])
    assert fc._take_slot() == 0 and old.flag.reads == 1 and list(queue) == [new]


def _check(q, k, v):
    from lighthouse.kernels.scores import score_pyramids
    from lighthouse.plan import make_plan

    return score_pyramids(q, k, v, make_plan(lighthouse.LighthouseConfig(**SMALL, impl="triton"), q, k, v))[2]


@pytest.mark.parametrize("mode", ["deferred", "sync"])
def test_defer_queues_the_check_or_reads_it_at_the_call(queue, monkeypatch, mode):
    """Catches LIGHTHOUSE_FINITE_CHECK=sync being ignored (no element named when the user asks for it), and a
    deferred check that keeps the call's q, k, v alive or is never read. On the CPU a check holds no slot, so the
    test hands it one, as CUDA would."""
    if mode == "sync":
        monkeypatch.setenv(fc.MODE_ENV, "sync")
    q, k, v = rand_qkv(1, 2, 1, N, 8, seed=5)
    q[0, 0, 100, 3] = float("inf")
    check = _check(q, k, v)
    check.slot = fc._SLOTS[0].free.pop()
    if mode == "sync":
        with pytest.raises(ValueError, match=r"position 100: q contains NaN or Inf"):
            check.defer()
        assert not queue
    else:
        check.defer()
        assert len(queue) == 1 and check.inputs is None and check.pyr is None
        with pytest.raises(
            ValueError, match=r"earlier Lighthouse layer call \(call \d+: B=1, Hq=2, Hkv=1, N=256, D=8\)"
        ):
            fc.poll_pending()
    assert len(fc._SLOTS[0].free) == 2
    check.defer()  # read once: a second call is a no-op, never a read of a slot given back
    check.raise_if_bad()


def test_a_check_dropped_unread_gives_its_slot_back(queue):
    """Catches a slot lost for good when a call fails between its scores and its read (an out-of-memory gather in
    a sweep): after 64 such points every later call would fail."""
    import gc

    q, k, v = rand_qkv(1, 2, 1, N, 8, seed=9)
    check = _check(q, k, v)
    check.slot = fc._SLOTS[0].free.pop()
    del check
    gc.collect()
    assert sorted(fc._SLOTS[0].free) == [0, 1]


def test_training_forwards_defer_and_inference_forwards_read_at_the_call(monkeypatch):
    """Catches the layer reading the check at the end of a training forward (the host then waits for the GPU
    before it can queue the backward) or deferring an inference call's check."""
    calls = []
    monkeypatch.setattr(fc.FiniteCheck, "defer", lambda self: calls.append("defer"))
    monkeypatch.setattr(fc.FiniteCheck, "raise_if_bad", lambda self: calls.append("read"))
    q, k, v = rand_qkv(1, 2, 1, N, 8, seed=6)
    cfg = lighthouse.LighthouseConfig(**SMALL, impl="triton")
    lighthouse.lighthouse_attention(q, k, v, config=cfg)
    assert calls == ["read"]
    calls.clear()
    q.requires_grad_()
    lighthouse.lighthouse_attention(q, k, v, config=cfg).sum().backward()
    assert calls == ["defer"]
    assert layer.poll_pending is fc.poll_pending


@pytest.mark.parametrize("grad", [True, False])
def test_the_check_queues_its_screen_and_copies_after_the_sdpa(monkeypatch, grad):
    """Catches the v screen, a word's copy to the host or the poll of earlier calls' checks (event queries) made
    before the sub-sequence SDPA's launch: host work between the forward's short first kernels, which a GPU done
    with them waits for (PERF_NOTES steps 21 and 23). The screen must still see the gathered rows (not v, nor a
    leaf autograd would record the sum on)."""
    order = []
    real_sdpa, real_screen, real_deferred = layer.causal_sdpa, fc.v_screen, fc._Deferred.__init__
    monkeypatch.setattr(layer, "causal_sdpa", lambda *a, **kw: order.append("sdpa") or real_sdpa(*a, **kw))
    monkeypatch.setattr(layer, "poll_pending", lambda: order.append("poll") or fc.poll_pending())

    def screen(x):
        order.append(("v_screen", tuple(x.shape), x.requires_grad))
        return real_screen(x)

    monkeypatch.setattr(fc, "v_screen", screen)
    monkeypatch.setattr(
        fc._Deferred, "__init__", lambda self, *a, **kw: order.append("copy") or real_deferred(self, *a)
    )
    q, k, v = rand_qkv(1, 2, 1, N, 8, seed=8, requires_grad=grad)
    cfg = lighthouse.LighthouseConfig(**SMALL, impl="triton")
    with torch.set_grad_enabled(grad):
        lighthouse.lighthouse_attention(q, k, v, config=cfg)
    s = make_plan(cfg, q, k, v).selected_len
    assert order[0] == "sdpa" and order.count("copy") == 2 and order.count("poll") == 1, order
    # polled before this call's own check is read or queued (the flag's copy, made then: the last copy)
    assert order.index("poll") < len(order) - 1 - order[::-1].index("copy"), order
    assert [x for x in order if isinstance(x, tuple)] == [("v_screen", (1, 1, s, 8), False)]


def test_on_the_cpu_a_training_forward_still_names_the_element():
    """Catches the deferral reaching the CPU path, where reading costs nothing: the error names the element."""
    q, k, v = rand_qkv(1, 2, 1, N, 8, seed=7)
    k[0, 0, 50, 1] = float("nan")
    q.requires_grad_()
    with pytest.raises(ValueError, match=r"position 50: k contains NaN or Inf"):
        lighthouse.lighthouse_attention(q, k, v, **SMALL, impl="triton")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_the_gpu_a_training_forward_defers_and_raise_pending_reports_it(monkeypatch):
    q, k, v = rand_qkv(1, 2, 1, 4096, 64, seed=8, device="cuda")
    q[0, 0, 1000, 3] = float("inf")
    q.requires_grad_()
    out = lighthouse.lighthouse_attention(q, k, v, **SMALL, impl="triton")  # returns: the check is in flight
    with pytest.raises(ValueError, match=r"earlier Lighthouse layer call"):
        out.sum().backward()
        lighthouse.kernels.raise_pending()
    monkeypatch.setenv(fc.MODE_ENV, "sync")
    with pytest.raises(ValueError, match=r"position 1000: q contains NaN or Inf"):
        lighthouse.lighthouse_attention(q, k, v, **SMALL, impl="triton")


@pytest.fixture
def reused_words(queue, monkeypatch):
    """The CUDA path's reused flag words and epochs, on the CPU: a call holds a slot and its never-zeroed word."""
    import itertools

    monkeypatch.setattr(fc, "_reuses_words", lambda device: True)
    monkeypatch.setattr(fc, "_DEVICE_FLAGS", {})
    monkeypatch.setattr(fc, "_EPOCHS", itertools.count(0))
    return fc._DEVICE_FLAGS


def _word_of(words, check):
    return int(words[torch.device("cpu")][1][check.slot])


def test_every_slot_flag_word_is_16_byte_aligned(reused_words):
    """Catches slot words packed 4 bytes apart: Triton specialises the scoring kernel on its pointers' 16-byte
    alignment, so a call that drew an unaligned slot compiled the kernel a second time (and missed the precompile)."""
    q, k, v = rand_qkv(1, 2, 1, N, 8, seed=11)
    _check(q, k, v).raise_if_bad()
    views = reused_words[torch.device("cpu")][1]
    assert len(views) == fc.SLOTS and all(w.data_ptr() % 16 == 0 and w.numel() == 1 for w in views)
    assert len({w.data_ptr() for w in views}) == fc.SLOTS


def test_a_reused_flag_word_trips_at_its_own_epoch_only(reused_words):
    """Catches a reused flag word that trips a clean call because an earlier call left it raised (the word is never
    zeroed), and a bad call the reused word fails to report. The scoring kernel runs (interpreted)."""
    q, k, v = rand_qkv(1, 2, 1, N, 8, seed=11)
    bad_q = q.clone()
    bad_q[0, 1, 30, 2] = float("nan")
    first = _check(bad_q, k, v)
    slot = first.slot
    assert slot is not None and first.epoch == 1
    with pytest.raises(ValueError, match=r"position 30: q contains NaN or Inf"):
        first.raise_if_bad()
    clean = _check(q, k, v)
    assert clean.slot == slot and clean.epoch == 2 and _word_of(reused_words, clean) == 1  # not zeroed
    clean.raise_if_bad()
    again = _check(bad_q, k, v)
    assert again.slot == slot and again.epoch == 3
    again.defer()
    with pytest.raises(ValueError, match="earlier Lighthouse layer call"):
        fc.raise_pending()
    assert int(reused_words[torch.device("cpu")][1][slot]) == 3 and sorted(fc._SLOTS[0].free) == [0, 1]


def test_epochs_wrap_with_the_reused_words_zeroed(reused_words, monkeypatch):
    """Catches a wrap of the epoch counter that leaves a word above the new epochs (atomic max would then never
    raise it to them: every later bad call on that slot missed)."""
    import itertools

    monkeypatch.setattr(fc, "_EPOCHS", itertools.count(fc.EPOCH_WRAP - 1))
    q, k, v = rand_qkv(1, 2, 1, N, 8, seed=12)
    q[0, 0, 7, 0] = float("inf")
    for epoch in (fc.EPOCH_WRAP, 1):
        check = _check(q, k, v)
        assert check.epoch == epoch
        with pytest.raises(ValueError, match=r"position 7: q contains NaN or Inf"):
            check.raise_if_bad()


def test_a_failed_scoring_launch_gives_its_slot_back(reused_words, monkeypatch):
    """Catches a slot taken for the flag word and lost when the launch raises (no check holds it)."""
    from lighthouse.kernels import scores

    class Broken:
        def __getitem__(self, grid):
            raise RuntimeError("launch failed")

    monkeypatch.setattr(scores, "_norm_scores_kernel", Broken())
    q, k, v = rand_qkv(1, 2, 1, N, 8, seed=13)
    with pytest.raises(RuntimeError, match="launch failed"):
        _check(q, k, v)
    assert sorted(fc._SLOTS[0].free) == [0, 1]


def test_a_slot_makes_its_events_once_per_device(monkeypatch):
    """Catches CUDA events created per call (two driver calls each, and two to destroy them) instead of once per
    slot, word and device; and one event shared across devices (an event records on its own device only)."""
    made = []
    monkeypatch.setattr(torch.cuda, "Event", lambda: made.append(object()) or made[-1])
    slots = type("S", (), {"events": {}})()
    cuda0, cuda1 = torch.device("cuda", 0), torch.device("cuda", 1)
    first = fc._PinnedSlots.event(slots, "flags", cuda0, 3)
    assert fc._PinnedSlots.event(slots, "flags", cuda0, 3) is first and len(made) == 1
    others = {id(fc._PinnedSlots.event(slots, *key)) for key in (("v_sums", cuda0, 3), ("flags", cuda1, 3))}
    others.add(id(fc._PinnedSlots.event(slots, "flags", cuda0, 4)))
    assert len(made) == 4 and id(first) not in others and len(others) == 3
