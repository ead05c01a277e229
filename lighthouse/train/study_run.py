"""Run a study: the corpus once, the solo clock, then every job as a worker process, several at a time.

Output folder: study.json (experiments, jobs, arms), machine.json, corpus.json (the corpus's hash and size),
clock.csv (solo step times: the clock of every wall-clock figure, because arms that share a GPU slow each other),
jobs.csv (how each job ended), curves/<job>.csv (one row per step), logs/<job>.log, and the report files
(lighthouse.train.study_report). Snapshots of trunks go to a scratch folder (--snapshots, default
out/snapshots), which is never needed once the branches have run.

Resume: a job whose curve reaches its last step is done; anything else runs again from its start (its partial
curve is set aside as <job>.partial-N.csv). A curve may be gzipped (<job>.csv.gz, study_curves.pack_curves) in a
committed study; resume reads it, and sets it aside the same way. A branch whose trunk is done but whose snapshot
is gone (a new machine) gets the trunk re-run into curves/<trunk>.redo.csv, which the report never reads.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from ..harness import machine
from ..harness.tables import STUDY_CLOCK, STUDY_JOBS, TRAIN_CURVE, append_row, read_rows
from .study_curves import curve_files
from .study_plan import Experiment, Job, Study, expand, model_identity

EXIT_INTERRUPTED = 130
MANIFEST = "study.json"


class StudyError(ValueError):
    """The study cannot start (output folder in the way, a resume of another study)."""


def curve_path(out: Path, job_id: str) -> Path:
    return Path(out) / "curves" / f"{job_id}.csv"


def job_finished(out: Path, job: Job) -> bool:
    path = curve_files(out).get(job.job_id)  # plain, or gzipped by pack_curves in a committed study
    if path is None:
        return False
    rows, torn = read_rows(path, TRAIN_CURVE)
    return not torn and any(int(r["step"]) == job.plan.steps for r in rows)


def _corpus_folder(corpus_root: Optional[Sequence[str]]) -> Path:
    """A cache folder keyed by the roots' files (names, sizes, modification times): a study's workers and its
    --resume load the same bytes without reading hundreds of thousands of files again."""
    import hashlib

    from .data import _labelled_files, default_roots

    roots = [Path(r) for r in corpus_root] if corpus_root else default_roots()
    finger = hashlib.sha256()
    for name, path in _labelled_files(roots):
        st = path.stat()
        finger.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    cache = Path(os.environ.get("LIGHTHOUSE_CACHE", Path.home() / ".cache" / "lighthouse-bench"))
    return cache / f"corpus-{finger.hexdigest()[:16]}"


def prepare_corpus(corpus_root: Optional[Sequence[str]], console) -> Path:
    from .data import Corpus, build_corpus

    folder = _corpus_folder(corpus_root)
    if not (folder / "manifest.json").exists():
        corpus = build_corpus(list(corpus_root) if corpus_root else None)
        corpus.save(folder)
    corpus = Corpus.load(folder)
    console.print(f"corpus: {corpus.describe()}")
    return folder


def calibrate(
    study: Study,
    out: Path,
    device: torch.device,
    corpus_folder: Path,
    sdpa_backend,
    console,
    rounds: int = 4,
    steps: int = 5,
    warmup: int = 3,
) -> None:
    """Solo step times per experiment and attention (the jobs have not started: nothing else on the device).

    Every distinct (model, mode) is one trainer, and the trainers take turns: `rounds` rounds of `steps` steps
    each, after `warmup` untimed steps apiece, so that a drift of the GPU's clock during the calibration hits
    every mode alike (timed one after another, 5 steps each, the same dense model read 57.8 and 69.3 ms one
    second apart on the H200). A dense arm never runs Lighthouse, so its k, L, p, scorer and RoPE placement do
    not make it another model: E5-post's dense arm is timed once with E4's."""
    from .data import Corpus, train_batch
    from .throughput import free_memory, sync
    from .trainer import Trainer

    path = Path(out) / "clock.csv"
    have = {(r["experiment"], r["attention"]) for r in read_rows(path, STUDY_CLOCK)[0]} if path.exists() else set()
    wanted: Dict[tuple, List[Tuple[str, str]]] = {}  # one timing per model, mode and precision: (experiment, mode)s
    setups: Dict[tuple, tuple] = {}
    for e in study.experiments:
        preset = e.base_preset()
        modes = ["dense", "lighthouse"] + [f"lighthouse k={k}" for k in e.topk if k != preset.topk]
        for mode in modes:
            if (e.name, mode) in have:
                continue
            p = e.base_preset(topk=int(mode.split("=")[1])) if "k=" in mode else preset
            fields = model_identity(p, mode == "dense")
            same = (json.dumps(fields, sort_keys=True, default=str), mode == "dense", e.precision, e.impl, e.loss)
            wanted.setdefault(same, []).append((e.name, mode))
            setups.setdefault(same, (p, "dense" if mode == "dense" else "lighthouse", e))
    if not wanted:
        return
    corpus = Corpus.load(corpus_folder)
    trainers, times = {}, {key: [] for key in wanted}
    for key, (p, attention, e) in setups.items():
        trainer = Trainer(
            p, p.seq, attention, device, e.precision, impl=e.impl, sdpa_backend=sdpa_backend, loss=e.loss, clip=e.clip
        )
        trainer.set_lr(p.lr)
        trainers[key] = trainer

    def run(key, i: int, timed: bool) -> None:
        p = setups[key][0]
        x, y = train_batch(corpus, i, p.batch, p.seq, 0)
        x, y = x.to(device), y.to(device)
        sync(device)
        t = time.perf_counter()
        trainers[key].step(x, y)
        sync(device)
        if timed:
            times[key].append((time.perf_counter() - t) * 1e3)

    for key in wanted:
        for i in range(warmup):
            run(key, i, False)
    for r in range(rounds):
        for key in wanted:
            for i in range(steps):
                run(key, warmup + r * steps + i, True)
    for key, names in wanted.items():
        timed = sorted(times[key])
        q = lambda f: timed[min(len(timed) - 1, int(round(f * (len(timed) - 1))))]  # noqa: E731
        figures = {"steps": len(timed), "median_step_ms": q(0.5), "p20_step_ms": q(0.2), "p80_step_ms": q(0.8)}
        for experiment, mode in names:
            append_row(path, STUDY_CLOCK, {"experiment": experiment, "attention": mode, **figures})
            console.print(f"clock: {experiment} {mode}: {q(0.5):.1f} ms per step (solo)")
    trainers.clear()
    free_memory(device)


@dataclass
class _Running:
    job: Job
    proc: subprocess.Popen
    started: float
    log: Path
    curve: Path


def _launch(
    job: Job, out: Path, curve: Path, device, corpus_folder: Path, snapshots: Path, sdpa_backend, cpu_threads: int
) -> _Running:
    specs = Path(out) / "jobs"
    specs.mkdir(parents=True, exist_ok=True)
    logs = Path(out) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    plan = job.plan
    if job.trunk is not None:
        from .arm import snapshot_path

        plan_dict = {
            **job.as_dict(),
            "plan": {**plan.as_dict(), "from_snapshot": str(snapshot_path(snapshots, job.trunk, plan.from_step))},
        }
    else:
        plan_dict = job.as_dict()
    spec = {
        "job": plan_dict,
        "device": str(device),
        "corpus": str(corpus_folder),
        "curve": str(curve),
        "snapshots": str(snapshots),
        "sdpa_backend": sdpa_backend,
        "cpu_threads": cpu_threads,
    }
    spec_path = specs / f"{curve.stem}.json"
    spec_path.write_text(json.dumps(spec, indent=1) + "\n")
    log = logs / f"{curve.stem}.log"
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lighthouse.train.worker", str(spec_path)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    return _Running(job, proc, time.monotonic(), log, curve)


def _set_aside(path: Path) -> None:
    """Move a job's unfinished curve (plain, or gzipped by pack_curves) out of the way of its re-run, as
    <job>.partial-N.csv[.gz] with N one past every earlier attempt's, whichever form that one is in (a packed study
    keeps its earlier plain .partial-1.csv)."""
    for current, suffix in ((path, ".csv"), (path.with_name(path.name + ".gz"), ".csv.gz")):
        if current.exists():
            n = 1
            while any(path.with_suffix(f".partial-{n}{s}").exists() for s in (".csv", ".csv.gz")):
                n += 1
            current.rename(path.with_suffix(f".partial-{n}{suffix}"))


def _last_line(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def resume_command(argv: Optional[Sequence[str]], out: Path) -> str:
    args = list(argv or ["lighthouse-bench", "study"])
    if "--resume" not in args:
        args.append("--resume")
    if "--out" not in args:
        args += ["--out", str(out)]
    return " ".join(shlex.quote(a) for a in args)


def run_study(
    experiments: Sequence[Experiment],
    out: Path,
    *,
    device: torch.device,
    seeds=None,
    concurrency: int = 1,
    corpus_root: Optional[Sequence[str]] = None,
    resume: bool = False,
    sdpa_backend: Optional[str] = None,
    snapshots: Optional[Path] = None,
    deadline_minutes: Optional[float] = None,
    clock: bool = True,
    cpu_threads: int = 1,
    console=None,
    argv=None,
) -> int:
    """Every job of the study into `out`; returns 0 (all done), 1 (a job failed or the deadline stopped some:
    --resume continues) or 130 (Ctrl-C)."""
    from ..harness.console import make_console

    console = console or make_console()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise StudyError(f"--out: {out} is a file, not a folder")
    study = expand(experiments, seeds)
    manifest = study.manifest()
    manifest_path = out / MANIFEST
    if manifest_path.exists():
        if not resume:
            raise StudyError(f"--out: {out} already holds a study; add --resume to continue it, or pick another --out")
        old = json.loads(manifest_path.read_text())
        if sorted(old["jobs"]) != sorted(manifest["jobs"]):
            added = sorted(set(manifest["jobs"]) - set(old["jobs"]))
            raise StudyError(
                f"--resume: the options give other jobs than the study in {out} "
                f"({len(added)} new, e.g. {added[:2]}); use the same --plan, --experiments and --seeds"
            )
    try:
        out.mkdir(parents=True, exist_ok=True)
        manifest_path.write_text(json.dumps(manifest, indent=1, default=str) + "\n")
    except OSError as err:
        raise StudyError(f"--out: cannot write to {out} ({err.strerror or err})") from None
    snapshots = Path(snapshots) if snapshots else out / "snapshots"
    info = machine.collect(
        argv,
        {
            "experiments": [e.name for e in experiments],
            "seeds": seeds,
            "concurrency": concurrency,
            "corpus_root": corpus_root,
            "sdpa_backend": sdpa_backend,
        },
    )
    previous = machine.read(out / "machine.json") if resume else None
    machine.write(out / "machine.json", info, previous)
    start = time.perf_counter()
    corpus_folder = prepare_corpus(corpus_root, console)
    corpus_meta = json.loads((corpus_folder / "manifest.json").read_text())
    (out / "corpus.json").write_text(
        json.dumps(
            {
                "root": corpus_meta["root"],
                "digest": corpus_meta["digest"],
                "train_files": len(corpus_meta["train_files"]),
                "val_files": len(corpus_meta["val_files"]),
                "train_bytes": (corpus_folder / "train.bin").stat().st_size,
                "val_bytes": (corpus_folder / "val.bin").stat().st_size,
            },
            indent=1,
        )
        + "\n"
    )
    deadline = time.monotonic() + deadline_minutes * 60 if deadline_minutes else None
    interrupted, failed, stopped = False, [], []
    running: List[_Running] = []
    try:
        if clock:
            calibrate(study, out, device, corpus_folder, sdpa_backend, console)
        jobs = list(study.jobs.values())
        todo = [j for j in jobs if not job_finished(out, j)]
        # a branch to run needs its trunk's snapshot: re-run a finished trunk whose snapshots are gone
        redo = {}
        for j in todo:
            if j.trunk and j.trunk not in {t.job_id for t in todo}:
                from .arm import snapshot_path

                if not snapshot_path(snapshots, j.trunk, j.plan.from_step).exists():
                    redo[j.trunk] = study.jobs[j.trunk]
        # seed by seed, trunks and dense arms before the branches that wait for them: a study cut short by its
        # deadline then holds whole seeds rather than every seed half done
        order = sorted(
            todo, key=lambda j: (j.plan.seed, j.trunk is not None, j.plan.start != "lighthouse", -j.plan.steps)
        )
        queue = [(t, curve_path(out, t.job_id).with_suffix(".redo.csv")) for t in redo.values()]
        queue += [(j, curve_path(out, j.job_id)) for j in order]
        console.print(
            f"[bold]lighthouse-bench study[/] {len(jobs)} jobs ({len(jobs) - len(todo)} done already"
            f"{f', {len(redo)} trunk(s) re-run for their snapshots' if redo else ''}), "
            f"{concurrency} at a time on {device} -> {out}"
        )
        failed_trunks = set()
        while queue or running:
            for r in list(running):
                code = r.proc.poll()
                if code is None:
                    continue
                running.remove(r)
                wall = time.monotonic() - r.started
                status = "ok" if code == 0 else "error"
                reason = "" if code == 0 else _last_line(r.log)
                if code != 0:
                    failed.append(r.job.job_id)
                    failed_trunks.add(r.job.job_id)
                if not r.curve.name.endswith(".redo.csv"):
                    append_row(
                        out / "jobs.csv",
                        STUDY_JOBS,
                        {
                            "job_id": r.job.job_id,
                            "status": status,
                            "reason": reason,
                            "wall_s": wall,
                            "log": str(r.log.relative_to(out)),
                        },
                    )
                console.print(
                    f"  {r.job.job_id}: {status} in {wall:.0f} s" + (f" ({reason})" if reason else ""), highlight=False
                )
            if deadline is not None and time.monotonic() > deadline:
                stopped = [r.job.job_id for r in running] + [j.job_id for j, _ in queue]
                for r in running:
                    os.killpg(r.proc.pid, signal.SIGTERM)
                for r in running:
                    r.proc.wait()
                running.clear()
                queue.clear()
                break
            while queue and len(running) < concurrency:
                job, curve = queue.pop(0)
                if job.trunk in failed_trunks:
                    failed.append(job.job_id)
                    append_row(
                        out / "jobs.csv",
                        STUDY_JOBS,
                        {"job_id": job.job_id, "status": "error", "reason": f"its trunk {job.trunk} failed"},
                    )
                    continue
                _set_aside(curve)
                curve.parent.mkdir(parents=True, exist_ok=True)
                running.append(_launch(job, out, curve, device, corpus_folder, snapshots, sdpa_backend, cpu_threads))
                console.print(
                    f"  started {job.job_id} ({job.plan.arm}, seed {job.plan.seed}, "
                    f"steps {job.plan.from_step}..{job.plan.steps})",
                    highlight=False,
                )
            time.sleep(0.5)
    except KeyboardInterrupt:
        interrupted = True
        for r in running:
            try:
                os.killpg(r.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for r in running:
            r.proc.wait()
    finally:
        machine.write(out / "machine.json", machine.finish(info, time.perf_counter() - start, interrupted), previous)
    if interrupted:
        console.print(f"[yellow]Interrupted.[/] Finished jobs are kept. Continue with:\n  {resume_command(argv, out)}")
        return EXIT_INTERRUPTED
    try:
        from .study_report import write_report

        for path in write_report(out):
            console.print(f"report: {path}")
    except Exception as err:  # noqa: BLE001 - the curves are safe on disk
        console.print(f"[red]study report failed ({type(err).__name__}: {err})[/]")
    if failed or stopped:
        console.print(
            f"[red]{len(failed)} job(s) failed, {len(stopped)} stopped at the deadline.[/] "
            f"Continue with:\n  {resume_command(argv, out)}"
        )
        return 1
    return 0
