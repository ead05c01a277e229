"""The console every command prints to."""

from __future__ import annotations


def make_console():
    """Rich output; a log file (not a terminal) gets a wide page so that tables are not cut."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=max(console.width, 180))
