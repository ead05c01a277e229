"""Real text on every machine without a download: the Python standard library's own source, as bytes.

Files: every `*.py` under `sysconfig.get_paths()["stdlib"]` except third-party folders (site-packages,
dist-packages), in sorted order of their relative POSIX paths. Split: a file is held out for validation when
a SHA-256 hash of its relative path falls below `val_fraction` (stable across machines and Python runs, and a
file is never in both splits). Tokens: bytes (vocabulary 256); files are joined with one NUL byte, which does
not occur in source text.
"""

from __future__ import annotations

import hashlib
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import torch

SEPARATOR = b"\x00"
THIRD_PARTY = ("site-packages", "dist-packages", "__pycache__")


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def source_files(root: Path) -> List[str]:
    """Relative POSIX paths of the corpus files under root, sorted."""
    root = Path(root)
    rels = [p.relative_to(root).as_posix() for p in root.rglob("*.py")
            if p.is_file() and not any(part in THIRD_PARTY for part in p.relative_to(root).parts)]
    return sorted(rels)


def is_held_out(rel_path: str, val_fraction: float) -> bool:
    digest = hashlib.sha256(rel_path.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < val_fraction


@dataclass
class Corpus:
    train: torch.Tensor  # uint8, the train files joined
    val: torch.Tensor  # uint8, the held-out files joined
    train_files: List[str]
    val_files: List[str]
    root: str

    def describe(self) -> str:
        return (f"{len(self.train_files)} train files ({self.train.numel() / 1e6:.1f} MB), "
                f"{len(self.val_files)} validation files ({self.val.numel() / 1e6:.1f} MB) from {self.root}")


def encode(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.zeros(0, dtype=torch.uint8)


def decode(tokens: torch.Tensor) -> bytes:
    return bytes(tokens.to(torch.uint8).cpu().tolist())


def build_corpus(root: Optional[Path] = None, val_fraction: float = 0.05, max_bytes: Optional[int] = None) -> Corpus:
    """The byte corpus of `root` (default: this Python's standard library). max_bytes caps each split's size
    (files taken in order; a split keeps at least one file)."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    root = Path(root) if root is not None else stdlib_root()
    files = source_files(root)
    if not files:
        raise ValueError(f"no *.py files under {root}: nothing to train on")
    parts = {False: [], True: []}
    names = {False: [], True: []}
    sizes = {False: 0, True: 0}
    for rel in files:
        held = is_held_out(rel, val_fraction)
        if max_bytes is not None and sizes[held] >= max_bytes and names[held]:
            continue
        data = (root / rel).read_bytes()
        parts[held].append(data)
        names[held].append(rel)
        sizes[held] += len(data) + 1
    if not names[True] or not names[False]:
        raise ValueError(f"val_fraction={val_fraction} leaves a split of {root} empty; pick a value nearer 0.05")
    return Corpus(encode(SEPARATOR.join(parts[False])), encode(SEPARATOR.join(parts[True])),
                  names[False], names[True], str(root))


def window_starts(length: int, seq: int, count: int, generator: torch.Generator) -> torch.Tensor:
    if length < seq + 1:
        raise ValueError(f"the corpus split has {length} bytes, fewer than seq + 1 = {seq + 1}; lower --seq")
    return torch.randint(0, length - seq, (count,), generator=generator)


def train_batch(corpus: Corpus, step: int, batch: int, seq: int, seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels), each (batch, seq) int64: random windows of the train split, a pure function of
    (seed, step), so two arms with the same seed see the same data in the same order."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    starts = window_starts(corpus.train.numel(), seq, batch, g)
    rows = torch.stack([corpus.train[s: s + seq + 1] for s in starts.tolist()]).long()
    return rows[:, :-1], rows[:, 1:]


def val_batches(corpus: Corpus, batch: int, seq: int, count: int) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """A fixed set of validation windows: evenly spaced over the held-out split (the same every evaluation)."""
    n = corpus.val.numel()
    if n < seq + 1:
        raise ValueError(f"the validation split has {n} bytes, fewer than seq + 1 = {seq + 1}; lower --seq")
    total = batch * count
    starts = torch.linspace(0, n - seq - 1, total).long().tolist()
    rows = torch.stack([corpus.val[s: s + seq + 1] for s in starts]).long()
    return [(rows[i: i + batch, :-1], rows[i: i + batch, 1:]) for i in range(0, total, batch)]
