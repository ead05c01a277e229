"""The device's own ceilings, measured once and cached: every floor in a profile divides by these.

copy: bytes read + written per second of a large device-to-device copy (the bandwidth a streaming kernel can
reach). matmul: TFLOP/s of a large square matrix product in the profiled dtype (what SDPA's matmuls can
reach). Measured, not taken from a datasheet, so the floors hold on whatever card runs the profile.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import torch

from ..harness.timing import measure

CACHE_ENV = "LIGHTHOUSE_BENCH_CACHE"


def cache_path() -> Path:
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "lighthouse-bench"
    return Path(root) / "peaks.json"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.machine()}, {os.cpu_count()} cores)"


def _key(device: torch.device, dtype: torch.dtype) -> str:
    return f"{device_name(device)} | {str(dtype).replace('torch.', '')} | torch {torch.__version__}"


def _time_ms(fn, device) -> float:
    t = measure(fn, "fwd", [], None, device=device, warmup=3, rep=10, min_rep=3, max_seconds=2.0)
    return t.median_ms


def _copy_gb_s(device: torch.device, n_bytes: int) -> float:
    src = torch.empty(n_bytes // 2, dtype=torch.bfloat16, device=device)
    dst = torch.empty_like(src)
    return 2 * n_bytes / (_time_ms(lambda: dst.copy_(src), device) * 1e-3) / 1e9


def _matmul_tflops(device: torch.device, size: int, dtype: torch.dtype) -> float:
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn_like(a)
    return 2 * size**3 / (_time_ms(lambda: a @ b, device) * 1e-3) / 1e12


def measure_peaks(device: torch.device, dtype: torch.dtype) -> dict:
    """Copy bandwidth (GB/s, read + written) and matmul TFLOP/s on `device` in `dtype`."""
    cuda = device.type == "cuda"
    mm_dtype = dtype if cuda else torch.float32
    copy = _copy_gb_s(device, (1 << 30) if cuda else (128 << 20))
    mm = _matmul_tflops(device, 8192 if cuda else 1024, mm_dtype)
    if cuda:
        torch.cuda.empty_cache()
    return {
        "device": device_name(device),
        "dtype": str(mm_dtype).replace("torch.", ""),
        "copy_gb_s": copy,
        "matmul_tflops": mm,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
    }


def get_peaks(device: torch.device, dtype: torch.dtype, remeasure: bool = False, path: Optional[Path] = None) -> dict:
    """Cached peaks for (device name, dtype, torch version); measured on the first call or on request."""
    path = path or cache_path()
    key = _key(device, dtype)
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    if not remeasure and key in cache:
        return {**cache[key], "cached": True}
    peaks = measure_peaks(device, dtype)
    cache[key] = peaks
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cache, indent=2) + "\n")
    except OSError:  # a read-only home: measure again next time
        pass
    return {**peaks, "cached": False}
