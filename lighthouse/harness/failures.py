"""One classifier for every command: whatever a row raised -> (status, reason).

Statuses (tables.STATUSES): oom (out of memory, on the CPU as on CUDA), unsupported (this implementation cannot
run here: not a failure of the code under test), invalid (the library refused the parameters: ValueError),
error (anything else, with the exception's type). The reason is one line of at most REASON_CHARS characters.
"""

from __future__ import annotations

from typing import Tuple, Type

REASON_CHARS = 400
#: What allocators say when memory runs out: CUDA's OutOfMemoryError, the CPU allocator's RuntimeError
#: ("DefaultCPUAllocator: can't allocate memory"), the OS (ENOMEM).
OOM_TEXT = ("out of memory", "can't allocate memory", "cannot allocate memory")


class Unsupported(RuntimeError):
    """This implementation cannot run here (not a failure of the code under test)."""


def one_line(text: str, limit: int = REASON_CHARS) -> str:
    """`text` on one line, cut to `limit` characters with an ellipsis when longer."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_oom(exc: BaseException) -> bool:
    """Out of memory on any device: MemoryError, torch.OutOfMemoryError, or an allocator's message."""
    if isinstance(exc, MemoryError):
        return True
    try:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    text = str(exc).lower()
    return any(t in text for t in OOM_TEXT)


def classify(exc: BaseException, unsupported: Tuple[Type[BaseException], ...] = ()) -> Tuple[str, str]:
    """Exception -> (status, reason). `unsupported`: further exception types that mean "cannot run here"
    (checked before ValueError: some of them are ValueErrors)."""
    text = str(exc)
    if "Developer debug context:" in text:  # torch.compile wraps the real cause in a long explanation
        text = text.split("Developer debug context:", 1)[1].split("For more details", 1)[0]
    reason = one_line(text)
    if is_oom(exc):
        return "oom", reason or "out of memory"
    if isinstance(exc, (Unsupported, *unsupported)):
        return "unsupported", reason
    if isinstance(exc, ValueError):
        return "invalid", reason
    return "error", f"{type(exc).__name__}: {reason}"
