"""Output folders, checked before any work: a bad --out is a one-line usage error, never a traceback after
the measurements (every command that writes calls `writable_folder` first)."""

from __future__ import annotations

import tempfile
from pathlib import Path


class OutputFolderError(ValueError):
    """The output folder is a file, or cannot be created or written."""


def writable_folder(path, option: str = "--out") -> Path:
    """Create `path` if needed and prove it writable (a scratch file made and removed); raise
    OutputFolderError naming `option` otherwise. Pure Python: the CLI calls it before importing torch."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputFolderError(f"{option}: {path} is a file, not a folder; give a folder (created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise OutputFolderError(f"{option}: cannot write to the folder {path} ({err.strerror or err})") from None
    return path


def writable_file(path, option: str = "--out") -> Path:
    """A file the command will write: not a folder, and its folder writable (created if missing); raise
    OutputFolderError naming `option` otherwise."""
    path = Path(path)
    if path.is_dir():
        raise OutputFolderError(f"{option}: {path} is a folder; give a file name (e.g. {path / 'recommendation.md'})")
    writable_folder(path.parent, option)
    return path


def default_out(command: str) -> Path:
    """out/<command>-<timestamp>: where a run goes when --out is not given."""
    from datetime import datetime

    return Path("out") / f"{command}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
