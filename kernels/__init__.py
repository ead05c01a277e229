"""Triton kernels of the fast path (installed as `lighthouse.kernels`).

Not built yet: `available()` says so and `impl="auto"` falls back to the PyTorch path.
"""


def available() -> bool:
    return False


def unavailable_reason() -> str:
    return "the Triton fast path is not built yet"
