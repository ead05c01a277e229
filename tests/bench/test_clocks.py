"""The two clocks and the host time per call (lighthouse/bench/clocks.py, timing.measure), against a simulated GPU
whose answers are worked out by hand below, and on a real GPU (marked gpu) with torch.cuda._sleep as the kernel.

The simulated GPU (tests/fake_gpu.py) is one stream of queued operations on a millisecond timeline.
"""

from __future__ import annotations

import time

import pytest
import torch

from fake_gpu import FakeGpu, synthetic_step
from lighthouse.harness import clocks
from lighthouse.harness.timing import measure


def timed(gpu: FakeGpu, step, rep: int = 5):
    return measure(
        step, "fwd", [], None, device=torch.device("cpu"), warmup=1, rep=rep, min_rep=rep, max_seconds=60.0, backend=gpu
    )


def test_gpu_bound_step_host_ahead_is_the_kernels_alone():
    """10 kernels of 0.2 ms, 0.05 ms of host work before each: as launched the GPU waits 0.05 ms for the first
    launch, then runs back to back (0.05 + 10 x 0.2 = 2.05 ms); host ahead it is 10 x 0.2 = 2.0 ms; the host
    spends 10 x 0.05 = 0.5 ms per call."""
    gpu = FakeGpu()
    t = timed(gpu, synthetic_step(gpu, 10, 0.05, 0.2))
    assert t.samples_ms == pytest.approx([2.05] * 5)
    assert t.host_ahead_ms == pytest.approx([2.0] * 5)
    assert t.host_ms_per_call == pytest.approx(0.5)
    assert t.host_ahead_timeouts == 0


def test_host_bound_step_host_ahead_removes_the_launch_gaps():
    """0.3 ms of host work before each 0.1 ms kernel: as launched the last kernel starts at 10 x 0.3 and ends
    0.1 later (3.1 ms), though the kernels take 10 x 0.1 = 1.0 ms, which host ahead measures; host 3.0 ms."""
    gpu = FakeGpu()
    t = timed(gpu, synthetic_step(gpu, 10, 0.3, 0.1))
    assert t.median_ms == pytest.approx(3.1)
    assert t.host_ahead_median_ms == pytest.approx(1.0)
    assert t.host_ms_per_call == pytest.approx(3.0)
    assert t.host_ahead_timeouts == 0


def test_the_flush_hides_host_time_up_to_its_own_length_as_launched_only():
    """The L2 flush is queued just before the begin event, so the begin event fires when the flush ends (0.06 ms):
    a host that takes 0.05 ms to launch the one 0.1 ms kernel is hidden (0.1 ms), one that takes 0.13 ms shows
    its excess (0.07 + 0.1 = 0.17 ms) as launched. Host ahead it is 0.1 ms both times. This is how a slower host
    moves every short stage of the profile by about the same amount (PERF_NOTES step 14)."""
    for host_ms, launched in ((0.05, 0.1), (0.13, 0.17)):
        gpu = FakeGpu(flush_ms=0.06)
        t = timed(gpu, synthetic_step(gpu, 1, host_ms, 0.1))
        assert t.median_ms == pytest.approx(launched)
        assert t.host_ahead_median_ms == pytest.approx(0.1)
        assert t.host_ms_per_call == pytest.approx(host_ms)


def test_a_step_that_waits_on_the_gpu_times_out_instead_of_hanging():
    """3 kernels, a host read of the GPU, 3 more (0.3 ms host, 0.1 ms GPU each). As launched: the first three
    end at 1.0, the host resumes then and the last three launch at 1.3, 1.6, 1.9 (end 2.0). Host ahead: the
    hold can only end by its timeout, the first three run back to back (0.3), the host resumes and launches
    the rest 0.3 apart (0.3 + 0.9 + 0.1 = 1.3). Every repetition counts a timeout and gives no host time."""
    gpu = FakeGpu()
    t = timed(gpu, synthetic_step(gpu, 6, 0.3, 0.1, wait_after=3), rep=4)
    assert t.samples_ms == pytest.approx([2.0] * 4)
    assert t.host_ahead_ms == pytest.approx([1.3] * 4)
    assert t.host_ahead_timeouts == 4
    assert t.host_ms == [] and t.host_ms_per_call is None


def test_the_hold_timeout_covers_the_longest_host_time_seen():
    assert clocks.hold_timeout_ms([]) == clocks.MIN_HOLD_MS
    assert clocks.hold_timeout_ms([0.1, 3.0, 1.0]) == pytest.approx(clocks.HOLD_FACTOR * 3.0)
    assert clocks.hold_timeout_ms([1e6]) == clocks.MAX_HOLD_MS


def test_without_a_hold_kernel_only_the_launched_clock_is_timed():
    class NoHold(FakeGpu):
        def hold(self, timeout_ms):
            raise clocks.HoldUnavailable("no triton")

    gpu = NoHold()
    with pytest.warns(UserWarning, match="host-ahead clock unavailable: no triton"):
        t = timed(gpu, synthetic_step(gpu, 4, 0.1, 0.2))
    assert t.samples_ms == pytest.approx([0.1 + 4 * 0.2] * 5)
    assert t.host_ahead_ms == [] and t.host_ahead_median_ms is None and t.host_ms_per_call is None


def test_on_the_cpu_host_ahead_is_as_launched():
    """Synchronous: one clock, stated as such (the same samples), and the host time is the whole call."""
    t = measure(
        lambda: time.sleep(0.002),
        "fwd",
        [],
        None,
        device=torch.device("cpu"),
        warmup=1,
        rep=3,
        min_rep=3,
        max_seconds=5.0,
    )
    assert t.host_ahead_ms == t.samples_ms == t.host_ms
    assert 2.0 <= t.median_ms < 50.0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_host_ahead_on_the_gpu_with_a_known_kernel_and_a_known_host_delay():
    """Four GPU sleeps of about 1 ms (torch.cuda._sleep, calibrated here) with 2 ms of host sleep before each:
    as launched the span holds the host's gaps (>= 3 x 2 ms + 1 ms), host ahead only the kernels (4 x 1 ms,
    within 20%), and the host time per call is the 8 ms of host sleep (+ launch overhead)."""
    dev = torch.device("cuda", torch.cuda.current_device())
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(20):  # ramp the clock, then calibrate cycles per ms at it
        begin.record()
        torch.cuda._sleep(2_000_000)
        end.record()
        end.synchronize()
    cycles_per_ms = 2_000_000 / begin.elapsed_time(end)
    kernel = int(cycles_per_ms)

    def step():
        for _ in range(4):
            time.sleep(0.002)
            torch.cuda._sleep(kernel)

    t = measure(step, "fwd", [], None, device=dev, warmup=2, rep=10, min_rep=10, max_seconds=30.0)
    assert t.host_ahead_timeouts == 0
    assert t.host_ahead_median_ms == pytest.approx(4.0, rel=0.2)
    assert t.median_ms >= 3 * 2.0 + 1.0
    assert 8.0 <= t.host_ms_per_call < 12.0
