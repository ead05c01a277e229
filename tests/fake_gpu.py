"""A simulated GPU for the clocks (lighthouse/harness/clocks.Backend), shared by tests/bench/test_clocks.py and
test_profile.py.

One stream of queued operations on a millisecond timeline. The host clock moves only when the host works (a
synthetic step spends `h` ms before each launch) or waits (an event's synchronize). A kernel starts when it has
been queued and the one before it has ended; an event completes when it has been queued and everything before
it has ended; the hold ends when the host releases it, or at its timeout when the host waits on something
queued behind it first. The L2 flush is free unless `flush_ms` is given: then it is a kernel of that length,
queued ahead of the begin event as timing.py's flush is.
"""

from __future__ import annotations


class FakeGpu:
    def __init__(self, flush_ms: float = 0.0):
        self.flush_ms = flush_ms
        self.host = 0.0  # ms
        self.ops = []  # dicts: kind, queued, and ms (kernel) / timeout, released, forced (hold)

    # --- the Backend protocol
    def now(self) -> float:
        return self.host / 1e3

    def flush(self) -> None:
        if self.flush_ms:
            self.launch(self.flush_ms)

    def synchronize(self) -> None:
        self._force_holds(len(self.ops))
        self.host = max(self.host, self._schedule())

    def event(self):
        return FakeEvent(self)

    def hold(self, timeout_ms: float):
        op = {"kind": "hold", "queued": self.host, "timeout": timeout_ms, "released": None, "forced": False}
        self.ops.append(op)
        return FakeHold(self, op)

    # --- what a synthetic step does
    def work(self, ms: float) -> None:
        self.host += ms

    def launch(self, ms: float) -> None:
        self.ops.append({"kind": "kernel", "queued": self.host, "ms": ms})

    # --- the timeline
    def _schedule(self) -> float:
        """Start/end of every op that can be resolved now; returns the end of the last resolved op."""
        end = 0.0
        for op in self.ops:
            start = max(end, op["queued"])
            if op["kind"] == "hold":
                if op["released"] is None and not op["forced"]:
                    op["end"] = None
                    return end
                limit = start + op["timeout"]
                op["timed_out"] = op["released"] is None or op["released"] > limit
                op["end"] = limit if op["timed_out"] else max(start, op["released"])
                end = op["end"]
            elif op["kind"] == "kernel":
                op["end"] = end = start + op["ms"]
            else:  # event
                op["end"] = end = start
        return end

    def _force_holds(self, upto: int) -> None:
        """The host waits on op `upto`: every unreleased hold before it can only end by its timeout."""
        for op in self.ops[:upto]:
            if op["kind"] == "hold" and op["released"] is None:
                op["forced"] = True


class FakeEvent:
    def __init__(self, gpu: FakeGpu):
        self.gpu, self.op = gpu, None

    def record(self) -> None:
        self.op = {"kind": "event", "queued": self.gpu.host}
        self.gpu.ops.append(self.op)

    def synchronize(self) -> None:
        self.gpu._force_holds(self.gpu.ops.index(self.op))
        self.gpu._schedule()
        self.gpu.host = max(self.gpu.host, self.op["end"])

    def elapsed_time(self, end: "FakeEvent") -> float:
        self.gpu._schedule()
        return end.op["end"] - self.op["end"]


class FakeHold:
    def __init__(self, gpu: FakeGpu, op: dict):
        self.gpu, self.op = gpu, op

    def release(self) -> None:
        self.op["released"] = self.gpu.host

    def timed_out(self) -> bool:
        self.gpu._schedule()
        return self.op["timed_out"]


def synthetic_step(gpu: FakeGpu, launches: int, host_ms: float, gpu_ms: float, wait_after: int = 0):
    """`launches` kernels of gpu_ms each, host_ms of host work before each; with wait_after, the host reads a
    device value (an event's synchronize) after that many launches, as a host check inside a layer would."""

    def step():
        for i in range(launches):
            if wait_after and i == wait_after:
                ev = gpu.event()
                ev.record()
                ev.synchronize()
            gpu.work(host_ms)
            gpu.launch(gpu_ms)

    return step
