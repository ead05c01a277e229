"""The environment switches of the test-only instruments (plain strings: reading them costs no import)."""

#: Plant a known slowdown in the layer, so the regression gate's sensitivity can be measured
#: (scripts/gate_slowdowns.py). Microseconds added per layer call: one number for every call, or per sequence
#: length N as `16384=230,98304=540` (other N: none). Never set it outside such a test.
TEST_SLOWDOWN_ENV = "LIGHTHOUSE_TEST_SLOWDOWN_US"
#: Where the planted delay is spent: "gpu" (default; a spin queued on the stream, which slows a point bound by
#: the GPU) or "host" (a busy-wait of the thread issuing the launches, autograd's worker in the backward, which
#: slows a point bound by the host, such as N = 16K at batch 1 on an H200, where a GPU spin only fills idle time; a host
#: wait is not captured into a CUDA graph).
TEST_SLOWDOWN_WHERE_ENV = "LIGHTHOUSE_TEST_SLOWDOWN_WHERE"
