"""transformers held quiet while a command runs: its logger at error level, its progress bars (and the Hub's) off,
the warnings it raises ignored; all three restored when the command ends.

Why: `train`, `passkey` and `quality` print one line per row and a table; a `Loading weights` bar, a `Writing
model shards` bar or a FutureWarning about transformers' own API cut into those lines and say nothing about the
measurement. Errors still surface (as exceptions, and transformers' error-level log).
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Iterator

#: The modules whose warnings are ignored while quiet (a regular expression on the warning's module).
TRANSFORMERS_MODULES = r"(transformers|huggingface_hub)(\.|$)"


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """A context (or a decorator: `@quiet_transformers()`) that holds transformers quiet inside it. Imports
    transformers' logging on entry, so a command that never reaches transformers pays the import once."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=TRANSFORMERS_MODULES)
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
