"""Robustness of a sweep: failures become rows and the sweep goes on; Ctrl-C keeps rows; --resume skips them."""

import csv

import torch
from typer.testing import CliRunner

from lighthouse.bench import runner as bench_runner
from lighthouse.cli import app

cli = CliRunner()
SMALL = [
    "--seq",
    "2k,4k",
    "--levels",
    "2,3",
    "--heads",
    "1",
    "--kv-heads",
    "1",
    "--head-dim",
    "16",
    "--pass",
    "fwd,fwdbwd",
    "--rep",
    "1",
    "--warmup",
    "1",
    "--no-plot",
]


def rows_of(out):
    with (out / "results.csv").open() as f:
        return list(csv.DictReader(f))


def find(rows, **match):
    hits = [r for r in rows if all(r[k] == str(v) for k, v in match.items())]
    assert len(hits) == 1, (match, hits)
    return hits[0]


def test_oom_and_invalid_points_become_rows_and_the_sweep_goes_on(tmp_path, monkeypatch):
    real_build = bench_runner.build

    def build(task, bench, backend):
        fn, leaves, grad = real_build(task, bench, backend)
        if task.kind == "lighthouse" and task.shape.n == 2048 and task.point.levels == 2 and task.pass_ == "fwd":

            def fn():
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 GiB")

        return fn, leaves, grad

    monkeypatch.setattr(bench_runner, "build", build)
    out = tmp_path / "s"
    result = cli.invoke(app, ["sweep", *SMALL, "--topk", "128,200", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = rows_of(out)
    oom = find(rows, impl="lighthouse_torch", n=2048, levels=2, topk=128, **{"pass": "fwd"})
    assert oom["status"] == "oom" and "out of memory" in oom["reason"] and oom["median_ms"] == ""
    invalid = [r for r in rows if r["topk"] == "200"]
    assert len(invalid) == 2 * 2 * 2 and {r["status"] for r in invalid} == {"invalid"}
    assert all("topk must be a positive multiple of 128" in r["reason"] for r in invalid)
    # everything measured after the failure is ok
    ok = [r for r in rows if r["topk"] != "200" and r is not oom]
    assert len(ok) == 2 * 2 + 2 * 2 * 2 - 1 and {r["status"] for r in ok} == {"ok"}
    assert find(rows, impl="lighthouse_torch", n=4096, levels=3, topk=128, **{"pass": "fwdbwd"})["median_ms"] != ""


def test_too_short_n_is_an_invalid_row(tmp_path):
    out = tmp_path / "s"
    result = cli.invoke(app, ["sweep", *SMALL, "--seq", "1k,2k", "--levels", "3", "--pass", "fwd", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = rows_of(out)
    short = find(rows, impl="lighthouse_torch", n=1024)
    assert short["status"] == "invalid" and "too short" in short["reason"] and short["s_sel"] == ""
    assert find(rows, impl="lighthouse_torch", n=2048)["status"] == "ok"
    assert find(rows, impl="sdpa_math", n=1024)["status"] == "ok"  # dense runs at any N


def test_interrupt_keeps_rows_and_resume_skips_them(tmp_path, monkeypatch):
    real_execute = bench_runner.execute
    calls = []

    def interrupted_at_7(task, bench):
        calls.append(task.label())
        if len(calls) == 7:
            raise KeyboardInterrupt
        if task.kind == "lighthouse" and task.shape.n == 2048 and task.point.levels == 3 and task.pass_ == "fwd":
            return bench_runner.Result("error", "RuntimeError: injected")
        return real_execute(task, bench)

    monkeypatch.setattr(bench_runner, "execute", interrupted_at_7)
    out = tmp_path / "s"
    first = cli.invoke(app, ["sweep", *SMALL, "--out", str(out)])
    assert first.exit_code == 130, first.output
    before = rows_of(out)
    assert len(before) == 6  # every finished row is on disk
    assert sum(r["status"] == "error" for r in before) == 1

    again = cli.invoke(app, ["sweep", *SMALL, "--out", str(out)])
    assert again.exit_code == 2 and "--resume" in again.output  # never overwrite a sweep

    ran = []

    def counting(task, bench):
        ran.append(task.key(bench.device.type))
        return real_execute(task, bench)

    monkeypatch.setattr(bench_runner, "execute", counting)
    resumed = cli.invoke(app, ["sweep", *SMALL, "--resume", "--out", str(out)])
    assert resumed.exit_code == 0, resumed.output
    done = {(r["impl"], r["n"], r["levels"], r["pass"]) for r in before if r["status"] == "ok"}
    ran_keys = {(k[0], k[4], k[9], k[1]) for k in ran}
    assert not done & ran_keys  # no finished row ran again
    assert ("lighthouse_torch", "2048", "3", "fwd") in ran_keys  # the error row is retried
    assert len(ran) == 2 * 2 + 2 * 2 * 2 - 5
    after = rows_of(out)
    assert len(after) == 2 * 2 + 2 * 2 * 2  # one row per key, the error row replaced
    assert {r["status"] for r in after} == {"ok"}
