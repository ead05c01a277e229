"""What one sweep task came to: a status, its reason, the timing and the SDPA backend that ran."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..harness.timing import Timing


@dataclass
class Result:
    status: str  # ok, oom, invalid, unsupported, error
    reason: str = ""
    timing: Optional[Timing] = None
    sdpa_backend: str = ""
