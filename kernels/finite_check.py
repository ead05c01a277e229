"""The Triton layer's finiteness check: read at the call, or, in training, after the call without stalling the GPU.

NaN or Inf in q, k or v (or a float32 score overflow) would silently corrupt the selection and the output, so
the layer screens them on the GPU (the scoring kernel's flag; a float32 sum of the gathered v) and copies the two
words to pinned host memory behind its kernels. Reading them makes the host wait for the GPU to reach that point.
The layer queues the v screen and both copies after the sub-sequence SDPA's launch, not where the flag is raised:
before it they were host work between the short kernels of the forward's front (scores, select, gather), which
the GPU, done with those, waits for when the host is not ahead (reports/PERF_NOTES.md, step 21).

- **At the call** (`FiniteCheck.raise_if_bad`): an inference forward, the selection alone, the context-parallel
  path. The error names the tensor and the element.
- **Deferred** (`FiniteCheck.defer`): a training forward on CUDA. Read at the end of the forward, the words made
  the host wait for the GPU to finish the forward before it could queue the backward, so the GPU sat idle while
  the host launched it: at 96K, 0.6-1.8 ms of every timed fwd+bwd step (reports/h200/clocks; docs/timing.md).
  A deferred check is read by a later Lighthouse call once the GPU has passed it (a look at its CUDA events,
  never a wait), at the latest by `raise_pending()`. The error names the call (its number and shape), not the
  element: `LIGHTHOUSE_FINITE_CHECK=sync` reads every check at its call and names the element.

Each check in flight holds one slot of pinned host words; a pinned allocation per call costs more host time than
the selection kernel takes on the GPU, so the slots are allocated once and reused. With every slot held (the GPU
64 calls behind), the oldest check is read, waiting for it. A slot also owns, per device, its two CUDA events and
the scoring kernel's device flag word (`flag_word`): no event created or destroyed, no flag allocated and zeroed
per call. The reused word is never zeroed between calls: each call passes the kernel its own epoch (a number that
grows from call to call), the kernel raises the word to it (atomic max) when a score is not finite, and the check
trips when the word reads that epoch; a word left at an earlier call's epoch reads lower and does not trip.

Under CUDA graph capture (decided when the check is made) nothing leaves the device: no pinned copy, no event, no
host read; v is screened by its largest magnitude (no false alarm from an overflowing sum, which nobody could look
into), and the check queues lighthouse.finite.assert_finite_on_device.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from collections import deque
from typing import Deque, Dict, List, Optional, Tuple

import torch

from lighthouse.finite import assert_finite_on_device, capturing, raise_non_finite, v_screen, v_screen_exact
from lighthouse.plan import LighthousePlan

#: `sync`: read every check at its call (names the element); anything else: training forwards defer theirs.
MODE_ENV = "LIGHTHOUSE_FINITE_CHECK"
SLOTS = 64
#: Epochs run 1..EPOCH_WRAP (int32 kernel arguments); at 1 again the reused flag words are zeroed.
EPOCH_WRAP = 2**31 - 2

_LOCK = threading.Lock()
_CALLS = itertools.count(1)
_EPOCHS = itertools.count(0)


class _PinnedSlots:
    """SLOTS pairs of pinned host words (the scores' int32 flag, v's float32 screen), taken and given back."""

    def __init__(self, size: int = SLOTS):
        self.flags = torch.zeros(size, dtype=torch.int32, pin_memory=True)
        self.v_sums = torch.zeros(size, dtype=torch.float32, pin_memory=True)
        self.free: List[int] = list(range(size))
        self.events: Dict[tuple, "torch.cuda.Event"] = {}

    def event(self, which: str, device: torch.device, slot: int):
        """The slot's CUDA event for one of its words on `device` (an event records on its device only), made once:
        a slot is given back only after its words were read, so re-recording the event is safe."""
        key = (which, device.index, slot)
        event = self.events.get(key)
        if event is None:
            event = self.events[key] = torch.cuda.Event()
        return event


_SLOTS: List[_PinnedSlots] = []
#: int32 words from one slot's flag word to the next: 16 bytes.
FLAG_STRIDE = 4
#: Per device, the slots' flag words of the scoring kernel: one zeroed int32 tensor and its SLOTS one-word views.
_DEVICE_FLAGS: Dict[torch.device, Tuple[torch.Tensor, List[torch.Tensor]]] = {}


def _slots() -> _PinnedSlots:
    if not _SLOTS:
        _SLOTS.append(_PinnedSlots())
    return _SLOTS[0]


def _take_slot() -> int:
    """A free slot; with none free, the oldest deferred check is read first (a wait for the GPU)."""
    while True:
        with _LOCK:
            slots = _slots()
            if slots.free:
                return slots.free.pop()
            oldest = _PENDING.popleft() if _PENDING else None
        if oldest is None:  # every slot held by checks read at their call: cannot happen within one thread
            raise RuntimeError(f"more than {SLOTS} Lighthouse finiteness checks in flight at once")
        oldest.finish()


def _give_slot(slot: Optional[int]) -> None:
    if slot is not None:
        with _LOCK:
            _slots().free.append(slot)


def _reuses_words(device: torch.device) -> bool:
    """Whether a call on `device` holds a slot, whose flag word and events it reuses: CUDA outside a capture (a
    captured call's flag lives in the graph's memory, and nothing of it leaves the device)."""
    return device.type == "cuda" and not capturing()


def _next_epoch() -> int:
    """The next epoch, 1..EPOCH_WRAP; at 1 (the first call, then every 2**31 - 2 calls) every reused word is zeroed,
    so that no word holds an epoch above the new ones (queued behind the checks in flight, same stream)."""
    with _LOCK:
        epoch = next(_EPOCHS) % EPOCH_WRAP + 1
        if epoch == 1:
            for words, _ in _DEVICE_FLAGS.values():
                words.zero_()
    return epoch


def flag_word(device: torch.device) -> Tuple[torch.Tensor, int, Optional[int]]:
    """(the scoring kernel's (1,) int32 flag, the call's epoch, the slot held or None). A fresh zeroed word and
    epoch 1 on the CPU and under capture; on CUDA the slot's own word, never zeroed (see the module docstring)."""
    if not _reuses_words(device):
        return torch.zeros(1, dtype=torch.int32, device=device), 1, None
    slot = _take_slot()
    epoch = _next_epoch()  # after the slot: zeroing at the wrap must reach the word this call is handed
    views = _DEVICE_FLAGS.get(device)
    if views is None:
        with _LOCK:
            # one word every FLAG_STRIDE: every view 16-byte aligned, as Triton specialises a pointer on its
            # alignment (one compiled scoring kernel for every slot, the one kernels/precompile.py builds)
            words = torch.zeros(SLOTS * FLAG_STRIDE, dtype=torch.int32, device=device)
            views = [words[i * FLAG_STRIDE : i * FLAG_STRIDE + 1] for i in range(SLOTS)]
            views = _DEVICE_FLAGS.setdefault(device, (words, views))
    return views[1][slot], epoch, slot


class _Deferred:
    """A 0-dim device value copied to a pinned host word behind the kernels; read() waits for it only."""

    def __init__(self, value: torch.Tensor, word: Optional[torch.Tensor], event=None):
        self.event = None
        if value.is_cuda:
            self.value = word
            self.value.copy_(value, non_blocking=True)
            self.event = event if event is not None else torch.cuda.Event()
            self.event.record()
        else:
            self.value = value

    def done(self) -> bool:
        """Has the GPU written the word (never waits)?"""
        return self.event is None or self.event.query()

    def read(self) -> float:
        if self.event is not None:
            self.event.synchronize()
        return self.value.item()


def _tripped(flag: _Deferred, v_sum: _Deferred, epoch: int = 1) -> bool:
    """Read both words (waiting for the GPU to write them): did either screen trip? The flag trips at the call's
    epoch (a reused word may still hold an earlier call's, lower)."""
    return flag.read() == epoch or not math.isfinite(v_sum.read())


class FiniteCheck:
    """Were q, k, v and the scores of one layer call finite? (see the module docstring)

    The scoring kernel raises a device flag when a real token's score is not finite (NaN/Inf in q or k, or an
    overflow). v, which the norm scorer never reads, is screened by a float32 sum: of the gathered v_sub when the
    layer hands it over (`watch_v`; its coarsest rows pool every token, so NaN/Inf anywhere in v reaches it, at
    S/N of the cost of reading v), else of v itself."""

    def __init__(self, flag: torch.Tensor, pyr: torch.Tensor, plan: LighthousePlan, q, k, v, epoch: int = 1, slot=None):
        """flag, epoch, slot: flag_word's (a flag made elsewhere: a zeroed word, epoch 1, and the check takes a slot
        on CUDA outside a capture)."""
        self.on_device = capturing()
        if slot is None and flag.is_cuda and not self.on_device:
            slot = _take_slot()
        self.slot, self.epoch, self.device = slot, epoch, flag.device
        # the flag's copy to the host is queued when the words are first needed (_words), not here: see the docstring
        self.flag = flag[0] if self.on_device else None
        self._flag_on_device = flag[0]
        self.v_sum = None
        self.pyr, self.plan, self.inputs = pyr, plan, (q, k, v)
        self.call = next(_CALLS)
        self.finished = False  # read (or handed to the deferred queue): later calls are no-ops

    def __del__(self):
        # a call that failed between its scores and its read (an out-of-memory gather, say) gives its slot back;
        # a late copy into that word still lands before the next holder's own copy (same stream, in order)
        _give_slot(getattr(self, "slot", None))

    def _word(self, which: str) -> Optional[torch.Tensor]:
        return None if self.slot is None else getattr(_slots(), which)[self.slot]

    def _event(self, which: str):
        if self.slot is None or self.device.type != "cuda":
            return None
        return _slots().event(which, self.device, self.slot)

    def watch_v(self, x: torch.Tensor) -> None:
        """Screen v through x: v itself, or any tensor every element of v flows into (the gathered v_sub)."""
        if self.finished:  # read early (the PyTorch selection's fallback reads it before the gather)
            return
        if self.on_device:  # no host look at a false alarm under capture: the exact screen, never an overflow
            self.v_sum = v_screen_exact(x)
            return
        self.v_sum = _Deferred(v_screen(x), self._word("v_sums"), self._event("v_sums"))

    def _words(self):
        if self.v_sum is None:
            self.watch_v(self.inputs[2])
        if self.flag is None:
            self.flag = _Deferred(self._flag_on_device, self._word("flags"), self._event("flags"))
        return self.flag, self.v_sum

    def raise_if_bad(self) -> None:
        """Read the check now (waiting for the GPU to reach it); ValueError naming the bad element."""
        if self.finished:
            return
        flag, v_sum = self._words()
        self.finished = True
        if self.on_device:  # a fresh word (flag_word): epoch 1, so "tripped" is "not 0"
            assert_finite_on_device(flag, v_sum)
            return
        try:
            bad = _tripped(flag, v_sum, self.epoch)
        finally:
            _give_slot(self.slot)
            self.slot = None
        if bad:
            n = self.plan.seq_len
            raise_non_finite(*self.inputs, self.pyr[0, ..., :n], self.pyr[1, ..., :n], self.plan.config.scorer)

    def defer(self) -> None:
        """Read the check later, without waiting (a training forward on CUDA); at once anywhere else, or when
        LIGHTHOUSE_FINITE_CHECK=sync."""
        if self.finished:
            return
        if self.slot is None or os.environ.get(MODE_ENV, "") == "sync":
            self.raise_if_bad()
            return
        flag, v_sum = self._words()
        self.finished = True
        p = self.plan
        what = f"call {self.call}: B={p.batch}, Hq={p.q_heads}, Hkv={p.kv_heads}, N={p.seq_len}, D={p.head_dim}"
        with _LOCK:
            _PENDING.append(_InFlight(flag, v_sum, self.slot, what, self.epoch))
        self.slot = None
        self.pyr = self.inputs = None  # nothing of the call's tensors is kept alive by the check


class _AlreadyChecked:
    def watch_v(self, x: torch.Tensor) -> None:
        pass

    def raise_if_bad(self) -> None:
        pass

    def defer(self) -> None:
        pass


class _InFlight:
    """A deferred check: its two words, its slot, which call it was and its flag's epoch."""

    def __init__(self, flag, v_sum, slot: Optional[int], what: str, epoch: int = 1):
        self.flag, self.v_sum, self.slot, self.what, self.epoch = flag, v_sum, slot, what, epoch

    def done(self) -> bool:
        return self.flag.done() and self.v_sum.done()

    def finish(self) -> None:
        """Read the words (waiting if the GPU has not reached them), free the slot, raise if they say so."""
        try:
            bad = _tripped(self.flag, self.v_sum, self.epoch)
        finally:
            _give_slot(self.slot)
        if bad:
            raise ValueError(
                f"non-finite input in an earlier Lighthouse layer call ({self.what}): q, k or v held NaN or Inf, or "
                "a float32 score overflowed. Training forwards read this check after the call returns, so that the "
                f"GPU never waits on it; set {MODE_ENV}=sync to stop at the call and name the element"
            )


_PENDING: Deque[_InFlight] = deque()


def poll_pending() -> None:
    """Read every deferred check the GPU has passed, without waiting; raise for the first bad one. Not while a
    CUDA graph is being captured: an event query is one of the calls a global-mode capture forbids."""
    if capturing():
        return
    while True:
        with _LOCK:
            if not _PENDING or not _PENDING[0].done():
                return
            check = _PENDING.popleft()
        check.finish()


def raise_pending() -> None:
    """Read every deferred check, waiting for the GPU; raise for the first bad one (the rest are still read).
    During a CUDA graph capture it reads nothing (a wait would invalidate the capture): the checks stay queued."""
    if capturing():
        return
    first: Optional[ValueError] = None
    while True:
        with _LOCK:
            if not _PENDING:
                break
            check = _PENDING.popleft()
        try:
            check.finish()
        except ValueError as err:
            first = first or err
    if first is not None:
        raise first
