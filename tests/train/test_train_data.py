"""The stdlib byte corpus of the two-stage recipe: deterministic, split by file, bytes intact."""

import pytest
import torch

from lighthouse.train import data


@pytest.fixture
def tree(tmp_path):
    """A small source tree with a third-party folder that must be left out."""
    for i in range(40):
        sub = tmp_path / f"pkg{i % 4}"
        sub.mkdir(exist_ok=True)
        (sub / f"mod{i}.py").write_text(f"# module {i}\n" + "x = 1\n" * (i + 3))
    (tmp_path / "site-packages").mkdir()
    (tmp_path / "site-packages" / "foreign.py").write_text("third party\n")
    (tmp_path / "notes.txt").write_text("not python\n")
    return tmp_path


def test_build_is_deterministic_and_splits_by_file(tree):
    """Catches a filesystem-order dependence, a file in both splits, or third-party code in the corpus."""
    a = data.build_corpus(tree, val_fraction=0.2)
    b = data.build_corpus(tree, val_fraction=0.2)
    assert torch.equal(a.train, b.train) and torch.equal(a.val, b.val)
    assert a.train_files == sorted(a.train_files) and a.val_files == sorted(a.val_files)
    assert not set(a.train_files) & set(a.val_files)
    assert len(a.train_files) + len(a.val_files) == 40
    assert all("site-packages" not in f and f.endswith(".py") for f in a.train_files + a.val_files)
    # the split depends on the path only: the same file is held out at any fraction's threshold order
    assert set(data.build_corpus(tree, val_fraction=0.2).val_files) <= set(
        data.build_corpus(tree, val_fraction=0.5).val_files
    )


def test_bytes_round_trip(tree):
    """Catches a lossy encoding (text decoding, dropped separators): the split is exactly the files' bytes."""
    c = data.build_corpus(tree, val_fraction=0.2)
    expected = data.SEPARATOR.join((tree / f).read_bytes() for f in c.train_files)
    assert data.decode(c.train) == expected
    assert data.decode(data.encode(b"\x00\xffabc")) == b"\x00\xffabc"


def test_batches_are_a_function_of_seed_and_step(tree):
    """Catches two arms seeing different data (global RNG state), or labels not shifted by one."""
    c = data.build_corpus(tree, val_fraction=0.2)
    x1, y1 = data.train_batch(c, step=3, batch=2, seq=16, seed=7)
    torch.manual_seed(123)  # the global RNG must not matter
    x2, y2 = data.train_batch(c, step=3, batch=2, seq=16, seed=7)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, data.train_batch(c, step=4, batch=2, seq=16, seed=7)[0])
    assert torch.equal(x1[:, 1:], y1[:, :-1]) and x1.dtype == torch.long and x1.shape == (2, 16)
    vals = data.val_batches(c, batch=2, seq=16, count=3)
    assert len(vals) == 3 and all(torch.equal(v[0], w[0]) for v, w in zip(vals, data.val_batches(c, 2, 16, 3)))


def test_the_real_stdlib_is_found():
    """Catches a wrong stdlib path on this Python (the recipe would find nothing to train on)."""
    files = data.source_files(data.stdlib_root())
    assert "os.py" in files and len(files) > 100


def test_bad_inputs_are_named(tree):
    """Catches a silent empty split or a window longer than the data."""
    with pytest.raises(ValueError, match="val_fraction"):
        data.build_corpus(tree, val_fraction=1.5)
    c = data.build_corpus(tree, val_fraction=0.2)
    with pytest.raises(ValueError, match="seq"):
        data.train_batch(c, 0, 1, 10**7, 0)
