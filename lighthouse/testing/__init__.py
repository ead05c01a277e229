"""Test-only instruments, kept outside the public API (lighthouse.attention knows nothing of them).

Importing this package costs nothing (no torch): the CLI checks the switches here before loading anything.
"""

from __future__ import annotations

import os

from .switches import TEST_SLOWDOWN_ENV, TEST_SLOWDOWN_WHERE_ENV

__all__ = ["TEST_SLOWDOWN_ENV", "TEST_SLOWDOWN_WHERE_ENV", "install_if_requested"]


def install_if_requested() -> None:
    """Install the planted slowdown when LIGHTHOUSE_TEST_SLOWDOWN_US is set (the CLI calls this)."""
    if os.environ.get(TEST_SLOWDOWN_ENV, "").strip():
        from .slowdown import install

        install()
