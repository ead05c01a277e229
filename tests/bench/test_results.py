"""The results format (lighthouse.harness.tables): rows written one at a time, torn rows set apart, foreign
files refused, numbers read one way."""

import pytest

from lighthouse.harness import tables
from lighthouse.harness.tables import SWEEP, ResultsFormatError, append_row, num, read_rows


def test_append_then_read_round_trip(tmp_path):
    """Catches a writer that drops columns, forgets the header or leaves `finished_at` unstamped."""
    path = tmp_path / "results.csv"
    append_row(path, SWEEP, {"impl": "sdpa_math", "kind": "dense", "n": 1024, "median_ms": 1.23456789})
    append_row(path, SWEEP, {"impl": "sdpa_math", "kind": "dense", "n": 2048, "status": "ok"})
    done, torn = read_rows(path, SWEEP)
    assert torn == [] and [r["n"] for r in done] == ["1024", "2048"]
    assert list(done[0]) == list(SWEEP.columns)
    assert done[0]["median_ms"] == "1.23457" and done[0]["finished_at"] and done[0]["levels"] == ""


def test_torn_rows_are_set_apart(tmp_path):
    """Catches a reader that takes a row cut short by a crash (or never stamped) for a finished one, and an
    append that glues the next row onto a torn last line."""
    path = tmp_path / "results.csv"
    append_row(path, SWEEP, {"impl": "sdpa_math", "n": 1024, "status": "ok"})
    text = path.read_text()
    path.write_text(text + text.splitlines()[1][:25])  # a crash in the middle of the second row
    done, torn = read_rows(path, SWEEP)
    assert len(done) == 1 and len(torn) == 1
    append_row(path, SWEEP, {"impl": "sdpa_math", "n": 4096, "status": "ok"})
    done, torn = read_rows(path, SWEEP)
    assert [r["n"] for r in done] == ["1024", "4096"] and len(torn) == 1
    unstamped = ",".join("x" for _ in SWEEP.columns[:-1]) + ",\n"
    path.write_text(path.read_text() + unstamped)
    assert len(read_rows(path, SWEEP)[1]) == 2


@pytest.mark.parametrize("content", [b"", b"\x00\x01\x02binary", b"hello,world\n1,2\n"])
def test_foreign_files_are_refused(tmp_path, content):
    """Catches a reader that returns an empty list for a file that is not a results file at all."""
    path = tmp_path / "x.csv"
    path.write_bytes(content)
    with pytest.raises(ResultsFormatError, match="not a lighthouse-bench sweep results file"):
        read_rows(path, SWEEP)


def _gzip_cases():
    import gzip

    good = gzip.compress(b"impl,n\n" + b"sdpa_math,1024\n" * 50, mtime=0)
    return {
        "not gzip": b"impl,n\nsdpa_math,1024\n",
        "cut short": good[:20],
        "corrupt deflate stream": good[:10] + b"\xff" * 40 + good[-8:],
        "bad CRC": good[:-8] + b"\0" * 8,
        "empty inside": gzip.compress(b"", mtime=0),
    }


@pytest.mark.parametrize("case", sorted(_gzip_cases()))
def test_a_gz_file_that_is_not_good_gzip_is_refused_as_a_format_error(tmp_path, case):
    """Catches a `.gz` reader that lets zlib.error, EOFError or a CRC failure escape as a traceback (the study's
    --resume and the report read packed curves through read_rows) instead of a ResultsFormatError naming the file."""
    path = tmp_path / "x.csv.gz"
    path.write_bytes(_gzip_cases()[case])
    with pytest.raises(ResultsFormatError, match="x.csv.gz"):
        read_rows(path, SWEEP)


def test_a_gz_file_reads_as_its_plain_content(tmp_path):
    """Catches a `.gz` file read as raw bytes (refused as binary) or a plain file sent through gzip."""
    import gzip

    plain = tmp_path / "results.csv"
    append_row(plain, SWEEP, {"impl": "sdpa_math", "kind": "dense", "n": 1024, "status": "ok"})
    packed = tmp_path / "results.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert read_rows(packed, SWEEP) == read_rows(plain, SWEEP) and read_rows(plain, SWEEP)[0][0]["n"] == "1024"


def test_numbers():
    """Catches a parser that turns a missing or NaN cell into 0 or raises on garbage."""
    assert num("1.5") == 1.5 and num("") is None and num("nan") is None and num("abc") is None and num(None) is None
    assert tables.norm("8192.0") == "8192" and tables.fmt(None) == "-" and tables.fmt(1.23456) == "1.23"


def test_claim_results_file_refuses_a_missing_resume_and_an_overwrite(tmp_path):
    """Catches a --resume that silently starts from nothing, and a new run appending to another run's rows."""

    class UsageError(ValueError):
        pass

    with pytest.raises(UsageError, match="--resume"):
        tables.claim_results_file(tmp_path, "results.csv", True, UsageError)
    path = tables.claim_results_file(tmp_path, "results.csv", False, UsageError)
    append_row(path, SWEEP, {"impl": "sdpa_math", "n": 1024, "status": "ok"})
    with pytest.raises(UsageError, match="--out"):
        tables.claim_results_file(tmp_path, "results.csv", False, UsageError)
    assert tables.claim_results_file(tmp_path, "results.csv", True, UsageError) == path


def test_keep_final_drops_rows_to_run_again(tmp_path):
    """Catches a resume that keeps oom, error or torn rows (they would never run again) or keeps an earlier
    row of a key over the later one."""
    path = tmp_path / "results.csv"
    for n, status in ((1024, "error"), (1024, "ok"), (2048, "oom"), (4096, "invalid")):
        append_row(path, SWEEP, {"impl": "sdpa_math", "n": n, "status": status, "reason": f"{n}-{status}"})
    path.write_text(path.read_text() + "sdpa_math,dense")  # a torn last row
    kept = tables.keep_final(path, SWEEP)
    assert sorted((r["n"], r["status"]) for r in kept.values()) == [("1024", "ok"), ("4096", "invalid")]
    done, torn = read_rows(path, SWEEP)
    assert torn == [] and sorted(r["n"] for r in done) == ["1024", "4096"]
