"""The device a run measures on: its name resolved once, its health after a failure, its memory given back.

Shared by every command, so a lost CUDA context or a leaked cache is handled the same way everywhere.
"""

from __future__ import annotations

import gc
from typing import Optional


def resolve_device(name: str):
    """'cuda' -> cuda:<current>, so tensors and caches compare equal."""
    import torch

    dev = torch.device(name)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def device_option(text: Optional[str]):
    """--device as given (cuda or cpu; default cuda where there is one), resolved; an OptionError naming --device
    when cuda is asked for where there is none."""
    import torch

    from .options import OptionError, parse_option

    name = parse_option("device", text) if text else ("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise OptionError("--device: --device asks for cuda, but CUDA is not available here; use --device cpu")
    return resolve_device(name)


def device_ok(device) -> bool:
    """False once the CUDA context is lost (a sticky error poisons every later call in this process)."""
    if getattr(device, "type", "cpu") != "cuda":
        return True
    import torch

    try:
        torch.cuda.synchronize(device)
        return True
    except Exception:  # noqa: BLE001 - any error here means the context is gone
        return False


def free_memory(device) -> None:
    """Drop everything unreachable and give cached blocks back, so the next peak is the next row's own."""
    gc.collect()
    if getattr(device, "type", "cpu") == "cuda":
        import torch

        try:
            torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001 - a lost context is reported by the caller, not here
            pass


def kernels_unavailable_reason(device) -> Optional[str]:
    """Why the Triton path cannot run on `device` (None when it can); asks lighthouse.kernels at run time."""
    try:
        from .. import kernels
    except Exception as err:  # noqa: BLE001 - pragma: no cover, a broken install
        return f"lighthouse.kernels cannot be imported ({err})"
    return kernels.unavailable_reason(device)
