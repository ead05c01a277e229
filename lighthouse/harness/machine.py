"""machine.json: where and from what code a results.csv came, so a number can be traced and reproduced."""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import torch


def _run(cmd, cwd=None, timeout=10) -> Optional[str]:
    try:
        out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=True)
    except Exception:
        return None
    return out.stdout.strip()


def git_state(path: Optional[Path] = None) -> dict:
    """Commit and dirty flag of the project tree the package runs from (None outside a git checkout)."""
    path = path or Path(__file__).resolve().parents[2]
    commit = _run(["git", "rev-parse", "HEAD"], cwd=path) if shutil.which("git") else None
    if commit is None:
        return {"commit": None, "dirty": None, "source_dir": str(path)}
    status = _run(["git", "status", "--porcelain"], cwd=path)  # untracked files count: they may be code
    changed = status.splitlines() if status else []
    return {
        "commit": commit,
        "dirty": bool(changed) if status is not None else None,
        "changed": changed[:50],
        "source_dir": str(path),
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _triton_version() -> Optional[str]:
    try:
        import triton

        return triton.__version__
    except Exception:
        return None


def gpu_info() -> dict:
    if not torch.cuda.is_available():
        return {"gpu": None, "gpu_count": 0, "driver": None}
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    driver = None
    if shutil.which("nvidia-smi"):
        out = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
        driver = out.splitlines()[0].strip() if out else None
    return {
        "gpu": props.name,
        "gpu_count": torch.cuda.device_count(),
        "gpu_memory_gib": round(props.total_memory / 2**30, 1),
        "compute_capability": f"{props.major}.{props.minor}",
        "driver": driver,
    }


def collect(argv=None, options: Optional[dict] = None, equivalent=None) -> dict:
    """Everything that identifies the machine, the software and the run (written at the start)."""
    argv = list(sys.argv if argv is None else argv)
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        **gpu_info(),
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
        "torch": torch.__version__,
        "triton": _triton_version(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "git": git_state(),
        "command": shlex.join(argv),
        "equivalent_command": shlex.join(equivalent) if equivalent else None,
        "options": options or {},
        "start_time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "end_time": None,
        "wall_seconds": None,
        "interrupted": None,
    }


def write(path: Path, info: dict, previous: Optional[dict] = None) -> None:
    """Write machine.json; a resumed sweep keeps the earlier runs' records under `previous_runs`."""
    if previous:
        info = {
            **info,
            "previous_runs": previous.get("previous_runs", [])
            + [{k: v for k, v in previous.items() if k != "previous_runs"}],
        }
    path.write_text(json.dumps(info, indent=2, default=str) + "\n")


def read(path: Path) -> Optional[dict]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def finish(info: dict, wall_seconds: float, interrupted: bool) -> dict:
    return {
        **info,
        "end_time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": round(wall_seconds, 3),
        "interrupted": interrupted,
    }
