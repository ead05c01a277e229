"""Real text on every machine without a download: Python source files, as bytes.

Files: by default every `*.py` of the running interpreter: its standard library (third-party folders left out
there) and its site-packages (on a GPU image with torch and transformers, hundreds of MB). `--corpus-root`
names other folders. Files are joined in sorted order of their relative POSIX paths, so a window holds related
files. Split: a file is held out for validation when a SHA-256 hash of its relative path falls below
`val_fraction` (stable across machines and Python runs, and a file is never in both splits). Tokens: bytes
(vocabulary 256); files are joined with one NUL byte, which does not occur in source text.

Training windows do not repeat within an epoch: the train split is cut into non-overlapping windows and each
epoch visits all of them in a seeded order, so `epochs` (windows read / windows in the split) says how often the
model has seen its data.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import torch

SEPARATOR = b"\x00"
THIRD_PARTY = ("site-packages", "dist-packages", "__pycache__")


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def default_roots() -> List[Path]:
    """This interpreter's standard library and its site-packages folders (purelib, platlib), each once."""
    paths = sysconfig.get_paths()
    roots: List[Path] = []
    for key in ("stdlib", "purelib", "platlib"):
        root = Path(paths[key]).resolve()
        if root.is_dir() and root not in roots:
            roots.append(root)
    return roots


def source_files(root: Path) -> List[str]:
    """Relative POSIX paths of the corpus files under root, sorted."""
    root = Path(root)
    rels = [
        p.relative_to(root).as_posix()
        for p in root.rglob("*.py")
        if p.is_file() and not any(part in THIRD_PARTY for part in p.relative_to(root).parts)
    ]
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
    digest: str = ""  # SHA-256 of every file's name and bytes, in order, and the split

    def describe(self) -> str:
        return (
            f"{len(self.train_files)} train files ({self.train.numel() / 1e6:.1f} MB), "
            f"{len(self.val_files)} validation files ({self.val.numel() / 1e6:.1f} MB) from {self.root}, "
            f"sha256 {self.digest[:12]}"
        )

    def save(self, folder: Path) -> None:
        """train.bin, val.bin and manifest.json: what `load` reads back (a study's workers share one build)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.train.numpy().tofile(folder / "train.bin")
        self.val.numpy().tofile(folder / "val.bin")
        (folder / "manifest.json").write_text(
            json.dumps(
                {"root": self.root, "digest": self.digest, "train_files": self.train_files, "val_files": self.val_files}
            )
            + "\n"
        )

    @classmethod
    def load(cls, folder: Path) -> "Corpus":
        folder = Path(folder)
        meta = json.loads((folder / "manifest.json").read_text())

        def read(name: str) -> torch.Tensor:
            return encode((folder / name).read_bytes())

        return cls(
            read("train.bin"), read("val.bin"), meta["train_files"], meta["val_files"], meta["root"], meta["digest"]
        )


def encode(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.zeros(0, dtype=torch.uint8)


def decode(tokens: torch.Tensor) -> bytes:
    return bytes(tokens.to(torch.uint8).cpu().tolist())


def _labelled_files(roots: Sequence[Path]) -> List[Tuple[str, Path]]:
    """(name, path) of every corpus file: the relative path for one root; with several, the root's index and
    its folder name in front (`1-site-packages/torch/nn/...`), so two roots never give one name twice."""
    out = []
    for i, root in enumerate(roots):
        prefix = "" if len(roots) == 1 else f"{i}-{root.name}/"
        out += [(prefix + rel, root / rel) for rel in source_files(root)]
    return sorted(out)


def build_corpus(root=None, val_fraction: float = 0.05, max_bytes: Optional[int] = None) -> Corpus:
    """The byte corpus of `root`: a folder, a list of folders, or None for `default_roots()` (the stdlib and
    site-packages). max_bytes caps each split's size (files taken in order; a split keeps at least one file)."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    roots = (
        default_roots() if root is None else [Path(r) for r in (root if isinstance(root, (list, tuple)) else [root])]
    )
    for r in roots:
        if not Path(r).is_dir():
            raise ValueError(f"--corpus-root: {r} is not a folder")
    files = _labelled_files(roots)
    if not files:
        raise ValueError(f"no *.py files under {', '.join(map(str, roots))}: nothing to train on")
    parts = {False: [], True: []}
    names = {False: [], True: []}
    sizes = {False: 0, True: 0}
    digest = hashlib.sha256(f"val_fraction={val_fraction!r} max_bytes={max_bytes!r}".encode())
    for name, path in files:
        held = is_held_out(name, val_fraction)
        if max_bytes is not None and sizes[held] >= max_bytes and names[held]:
            continue
        data = path.read_bytes()
        parts[held].append(data)
        names[held].append(name)
        sizes[held] += len(data) + 1
        digest.update(name.encode("utf-8") + SEPARATOR + hashlib.sha256(data).digest())
    if not names[True] or not names[False]:
        raise ValueError(
            f"val_fraction={val_fraction} leaves a split of {', '.join(map(str, roots))} empty; "
            f"pick a value nearer 0.05"
        )
    return Corpus(
        encode(SEPARATOR.join(parts[False])),
        encode(SEPARATOR.join(parts[True])),
        names[False],
        names[True],
        ", ".join(map(str, roots)),
        digest.hexdigest(),
    )


def window_count(corpus: Corpus, seq: int) -> int:
    """Non-overlapping training windows of seq + 1 bytes (stride seq) in the train split."""
    count = (corpus.train.numel() - 1) // seq
    if count < 1:
        raise ValueError(
            f"the corpus's train split has {corpus.train.numel()} bytes, fewer than seq + 1 = {seq + 1}; lower --seq"
        )
    return count


@functools.lru_cache(maxsize=4)
def _epoch_order(count: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def train_batch(corpus: Corpus, step: int, batch: int, seq: int, seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels), each (batch, seq) int64: windows step * batch ... step * batch + batch - 1 of the seeded
    epoch order, a pure function of (seed, step), so two arms with the same seed see the same data in the same
    order, and no window comes back before every other one has been read."""
    count = window_count(corpus, seq)
    rows = []
    for sample in range(step * batch, step * batch + batch):
        epoch, index = divmod(sample, count)
        start = int(_epoch_order(count, seed, epoch)[index]) * seq
        rows.append(corpus.train[start : start + seq + 1])
    rows = torch.stack(rows).long()
    return rows[:, :-1], rows[:, 1:]


def epochs_seen(corpus: Corpus, steps: int, batch: int, seq: int) -> float:
    """Passes over the train split after `steps` optimizer steps of `batch` windows."""
    return steps * batch / window_count(corpus, seq)


def val_batches(corpus: Corpus, batch: int, seq: int, count: int) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """A fixed set of validation windows: evenly spaced over the held-out split (the same every evaluation)."""
    n = corpus.val.numel()
    if n < seq + 1:
        raise ValueError(f"the validation split has {n} bytes, fewer than seq + 1 = {seq + 1}; lower --seq")
    total = batch * count
    starts = torch.linspace(0, n - seq - 1, total).long().tolist()
    rows = torch.stack([corpus.val[s : s + seq + 1] for s in starts]).long()
    return [(rows[i : i + batch, :-1], rows[i : i + batch, 1:]) for i in range(0, total, batch)]
