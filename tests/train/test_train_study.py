"""The study: jobs merged where runs are prefixes of each other, arms side by side equal to arms alone, gaps and
intervals by hand."""

import gzip
import json
import math
import statistics

import pytest
import torch

pytest.importorskip("transformers")

from lighthouse.harness.tables import TRAIN_CURVE, append_row, read_rows  # noqa: E402
from lighthouse.train import data  # noqa: E402
from lighthouse.train.arm import train_arm  # noqa: E402
from lighthouse.train.study_curves import load_curves  # noqa: E402
from lighthouse.train.study_plan import Experiment, Job, expand  # noqa: E402
from lighthouse.train.study_report import arm_results, summarize  # noqa: E402
from lighthouse.train.study_run import run_study  # noqa: E402


def _tree(root):
    for i in range(80):
        sub = root / f"pkg{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"m{i}.py").write_text("".join(f"def f{i}_{j}(x):\n    return x * {j} + {i}\n" for j in range(60)))
    return root


def test_a_budget_too_large_for_n_names_its_experiment_when_the_plan_loads():
    """Catches a plan whose stage-1 budgets do not fit N failing only once its jobs start (the H200 run of E3 with
    k=768 at N=8K, L=3, p=4 died after its clock): every k of the experiment is checked as it is built."""
    common = dict(preset="tiny", overrides=(("seq", 8192), ("levels", 3), ("pooling", 4)), seeds=(0,))
    Experiment("E3", "stage1", topk=(256, 512), **common)  # k * p**(L-1) <= N: fine
    with pytest.raises(ValueError, match=r"experiment E3: sequence length N=8192 is too short .*topk=768"):
        Experiment("E3", "stage1", topk=(256, 768), **common)
    with pytest.raises(ValueError, match="experiment E1: sequence length N=8192"):
        Experiment("E1", "two-stage", **{**common, "overrides": common["overrides"] + (("topk", 1024),)})


def test_jobs_merge_where_runs_are_prefixes_and_stay_apart_where_the_schedule_differs():
    """Catches a study that trains E1's arms again beside E2's, or merges a wsd arm with a constant one (their
    learning rates differ at every step of the decay)."""
    common = dict(preset="tiny", seeds=(0,), warmup_steps=2, eval_every=10, val_windows=1)
    e1 = Experiment("E1", "two-stage", steps=40, dense_from=0.75, **common)
    e2 = Experiment("E2", "recovery", run_lengths=(20, 40), dense_steps=(5, 10), **common)
    e4 = Experiment("E4", "two-stage", steps=40, dense_from=0.75, schedule="wsd", **common)
    study = expand([e1, e2, e4])
    jobs = list(study.jobs.values())
    constant = [j for j in jobs if j.schedule.kind == "constant"]
    # one dense arm (40 steps, read at 20 and 40), one trunk (to 35, snapshots at every switch), one branch per switch
    assert sorted((j.plan.arm, j.plan.steps) for j in constant if j.trunk is None) == [
        ("dense", 40),
        ("lighthouse", 35),
    ]
    trunk = next(j for j in constant if j.plan.arm == "lighthouse")
    assert trunk.plan.snapshot_at == (10, 15, 30, 35)
    branches = sorted((j.plan.switch_step, j.plan.steps) for j in constant if j.trunk is not None)
    assert branches == [(10, 20), (15, 20), (30, 40), (35, 40)]
    e1_arm = next(a for a in study.arms if a.experiment == "E1" and a.label == "lighthouse-then-dense")
    e2_arm = next(a for a in study.arms if a.experiment == "E2" and a.switch_step == 30)
    assert e1_arm.job_id == e2_arm.job_id  # E1 is E2's 40-step, 10-dense point: trained once
    wsd = [j for j in jobs if j.schedule.kind == "wsd"]
    assert len(wsd) == 3 and all(j.schedule.total_steps == 40 for j in wsd)  # the trunk decays at the run's end
    assert Job.from_dict(json.loads(json.dumps(trunk.as_dict()))).job_id == trunk.job_id
    # a dense arm never runs Lighthouse: an experiment that differs only in k or the RoPE placement shares it
    post = Experiment(
        "E5", "two-stage", steps=40, dense_from=0.75, overrides=(("rope", "post"), ("topk", 256)), **common
    )
    both = expand([e1, post])
    assert sum(j.plan.arm == "dense" for j in both.jobs.values()) == 1
    assert sum(j.plan.arm == "lighthouse" for j in both.jobs.values()) == 2


def test_a_seeds_override_is_what_the_manifest_records():
    """study.json and study.md said "seeds 0, 1, 2" for a run of `--seeds 3,4,5` (reports/h200/study/seeds345)."""
    e = Experiment(
        "E2", "recovery", preset="tiny", seeds=(0, 1, 2), run_lengths=(20,), dense_steps=(5,), warmup_steps=2
    )
    study = expand([e], seeds=(3, 4))
    assert [list(x["seeds"]) for x in study.manifest()["experiments"]] == [[3, 4]]
    assert sorted({a.seed for a in study.arms}) == [3, 4]
    assert sorted({a.seed for a in expand([e]).arms}) == [0, 1, 2]


def test_arms_side_by_side_equal_arms_alone(tmp_path):
    """Catches worker processes that train something else than the arm alone (another seed's data, a lost
    snapshot, the branch from the wrong step): on the CPU (deterministic) the curves agree exactly."""
    root = _tree(tmp_path / "src")
    e = Experiment(
        "E",
        "two-stage",
        preset="tiny",
        precision="fp32",
        seeds=(0,),
        steps=6,
        dense_from=0.5,
        warmup_steps=1,
        eval_every=3,
        val_windows=1,
        loss="chunked",
    )
    code = run_study(
        [e], tmp_path / "s", device=torch.device("cpu"), concurrency=3, corpus_root=[str(root)], clock=False
    )
    assert code == 0
    corpus = data.build_corpus([root])
    alone = tmp_path / "alone.csv"
    for plan in ("dense", "lighthouse-then-dense"):
        from lighthouse.train.arm import ArmPlan
        from lighthouse.train.schedule import Schedule

        p = e.base_preset()
        arm = ArmPlan(
            plan,
            0,
            6,
            start="dense" if plan == "dense" else "lighthouse",
            switch_step=None if plan == "dense" else 3,
            eval_every=3,
            val_windows=1,
        )
        train_arm(
            arm,
            p,
            Schedule("constant", p.lr, 6, 1),
            corpus,
            alone,
            device=torch.device("cpu"),
            precision="fp32",
            loss="chunked",
        )
    solo = {(r["arm"], r["step"]): r for r in read_rows(alone, TRAIN_CURVE)[0]}
    shared = {}
    for path in (tmp_path / "s" / "curves").glob("*.csv"):
        for r in read_rows(path, TRAIN_CURVE)[0]:
            arm = "dense" if r["arm"] == "dense" else "lighthouse-then-dense"
            shared[(arm, r["step"])] = r
    assert set(solo) == set(shared)
    for key, r in solo.items():
        assert float(shared[key]["train_loss"]) == float(r["train_loss"]), key
        if r["val_loss"]:
            assert float(shared[key]["val_loss"]) == float(r["val_loss"]), key
    assert (tmp_path / "s" / "study.md").exists() and (tmp_path / "s" / "summary.csv").exists()

    # A committed study has its curves gzipped (pack_curves): --resume must count those jobs as done, and a job
    # whose packed curve is unfinished must be set aside and run again, not read twice.
    from lighthouse.train.study_curves import curve_files, pack_curves

    out = tmp_path / "s"
    assert pack_curves(out) == len(curve_files(out)) > 0
    before = load_curves(out)
    dense = next(job for job in before if job.startswith("dense"))
    packed = out / "curves" / f"{dense}.csv.gz"
    lines = gzip.decompress(packed.read_bytes()).decode().splitlines(keepends=True)
    packed.write_bytes(gzip.compress("".join(lines[:-2]).encode()))  # the dense arm stopped two steps short
    code = run_study(
        [e], out, device=torch.device("cpu"), concurrency=3, corpus_root=[str(root)], clock=False, resume=True
    )
    assert code == 0
    names = sorted(p.name for p in (out / "curves").iterdir())
    assert f"{dense}.partial-1.csv.gz" in names and f"{dense}.csv" in names
    assert sorted(p.name for p in curve_files(out).values()) == sorted(
        f"{job}.csv" if job == dense else f"{job}.csv.gz" for job in before
    )

    def losses(curves):
        return {job: [(r["step"], r["train_loss"], r["val_loss"]) for r in rows] for job, rows in curves.items()}

    after = load_curves(out)
    assert {j: r for j, r in after.items() if j != dense} == {j: r for j, r in before.items() if j != dense}
    assert losses(after) == losses(before)  # the re-run dense arm repeats its losses exactly (CPU)


def test_gaps_are_paired_by_seed_and_intervals_match_a_direct_computation(tmp_path):
    """Catches gaps against another seed's dense arm, a final loss read at the wrong step, or an interval that is
    not the t interval of the per-seed gaps."""
    e = Experiment(
        "E",
        "two-stage",
        preset="tiny",
        seeds=(0, 1, 2),
        steps=4,
        dense_from=0.5,
        warmup_steps=1,
        eval_every=2,
        val_windows=1,
    )
    study = expand([e])
    out = tmp_path / "s"
    (out / "curves").mkdir(parents=True)
    (out / "study.json").write_text(json.dumps(study.manifest(), default=str))
    dense_final = {0: 2.0, 1: 2.2, 2: 1.9}
    lh_final = {0: 2.1, 1: 2.2, 2: 2.09}
    for job in study.jobs.values():
        seed = job.plan.seed
        for step in range(job.plan.from_step + 1, job.plan.steps + 1):
            val = None
            if step == job.plan.steps:
                val = dense_final[seed] if job.plan.arm == "dense" else (lh_final[seed] if job.trunk else 3.0)
            append_row(
                out / "curves" / f"{job.job_id}.csv",
                TRAIN_CURVE,
                {
                    "arm": job.plan.arm,
                    "seed": seed,
                    "step": step,
                    "attention": "dense",
                    "tokens": step,
                    "train_loss": 3.0,
                    "val_loss": val,
                    "elapsed_s": step,
                },
            )
    summaries = summarize(arm_results(out))
    s = next(x for x in summaries if x.label == "lighthouse-then-dense")
    gaps = [100 * (lh_final[k] - dense_final[k]) / dense_final[k] for k in (0, 1, 2)]
    assert s.gap.mean == pytest.approx(statistics.fmean(gaps))
    assert s.gap.half_width == pytest.approx(4.302653 * statistics.stdev(gaps) / math.sqrt(3), rel=1e-5)
    assert s.loss.mean == pytest.approx(statistics.fmean(lh_final.values()))


def test_report_states_the_verdict_of_a_study_folder(tmp_path):
    """Catches a report that leaves the study out or shows a verdict the numbers do not support."""
    test_gaps_are_paired_by_seed_and_intervals_match_a_direct_computation(tmp_path)
    from lighthouse.report.build import build_report

    build_report([tmp_path / "s"], tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Two-stage study" in text
    # gaps +5%, 0%, +10% of dense: mean +5%, a 95% interval far wider than 2% -> inconclusive
    line = next(row for row in text.splitlines() if row.startswith("| E |"))
    assert "+5.00%" in line and line.rstrip(" |").endswith("inconclusive")
    assert "0 of 1 configurations reach the paper's claim." in text


def test_report_finds_the_studies_below_a_folder(tmp_path):
    """Catches `report reports/h200/study` failing with "no results.csv found" where the folder holds studies
    (each one level down), or taking a study's own subfolders for runs."""
    test_gaps_are_paired_by_seed_and_intervals_match_a_direct_computation(tmp_path / "studies")
    from lighthouse.report.build import build_report, split_train_inputs

    assert split_train_inputs([tmp_path / "studies"]) == ([tmp_path / "studies" / "s"], [])
    build_report([tmp_path / "studies"], tmp_path / "report")
    assert "## Training s" in (tmp_path / "report" / "report.md").read_text()


def test_the_clock_takes_turns_and_times_a_dense_model_once(tmp_path, monkeypatch):
    """Catches a calibration that times each mode in one block (a clock drift then lands on one mode alone) or
    that times E5-post's dense arm apart from E4's (a dense arm never runs Lighthouse: its RoPE placement and
    schedule do not make it another model)."""
    from lighthouse.train import study_run
    from lighthouse.train.trainer import Trainer

    root = _tree(tmp_path / "src")
    corpus = data.build_corpus([root])
    corpus.save(tmp_path / "corpus")
    common = dict(preset="tiny", precision="fp32", seeds=(0,), steps=6, dense_from=0.5, warmup_steps=1, loss="chunked")
    e4 = Experiment("E4", "two-stage", schedule="wsd", **common)
    e5 = Experiment("E5-post", "two-stage", overrides=(("rope", "post"),), **common)
    order = []
    monkeypatch.setattr(Trainer, "step", lambda self, x, y: order.append(id(self)))

    class Quiet:
        def print(self, *a, **k):
            pass

    study_run.calibrate(expand([e4, e5]), tmp_path, torch.device("cpu"), tmp_path / "corpus", None, Quiet(), 2, 3, 1)
    rows = {(r["experiment"], r["attention"]): r for r in read_rows(tmp_path / "clock.csv", study_run.STUDY_CLOCK)[0]}
    assert set(rows) == {(e, m) for e in ("E4", "E5-post") for m in ("dense", "lighthouse")}
    # three models (one dense, Lighthouse pre, Lighthouse post): 1 warm-up each, then 2 rounds of 3 steps in turn
    assert len(order) == 3 + 2 * 3 * 3
    timed = order[3:]
    blocks = [timed[i : i + 3] for i in range(0, len(timed), 3)]
    assert all(len(set(b)) == 1 for b in blocks)  # 3 steps of one model at a time
    turns = [b[0] for b in blocks]
    assert len(set(turns[:3])) == 3 and turns[3:] == turns[:3]  # every model once per round, the same order
    assert rows["E4", "dense"]["median_step_ms"] == rows["E5-post", "dense"]["median_step_ms"]
    assert int(rows["E4", "dense"]["steps"]) == 6


def test_packed_curves_read_back_as_the_plain_ones(tmp_path):
    """Catches a packed study (curves/*.csv.gz, as committed) whose report differs from the plain one, a job read
    twice when both forms are present, and non-deterministic packing (a time stamp in the gzip header)."""
    from lighthouse.train.study_curves import curve_files, pack_curves

    out = tmp_path / "s"
    (out / "curves").mkdir(parents=True)
    for job, val in (("dense-s0-aa", 2.0), ("lighthouse-s0-bb", 2.5)):
        for step in (1, 2, 3):
            append_row(
                out / "curves" / f"{job}.csv",
                TRAIN_CURVE,
                {
                    "arm": job.split("-s")[0],
                    "seed": 0,
                    "step": step,
                    "attention": "dense",
                    "tokens": step,
                    "train_loss": 3.0 - step / 10,
                    "val_loss": val if step == 3 else None,
                    "elapsed_s": step,
                },
            )
    (out / "curves" / "lighthouse-s0-bb.redo.csv").write_text("not read")
    plain = load_curves(out)
    assert pack_curves(out) == 2 and pack_curves(out) == 0
    assert sorted(p.name for p in curve_files(out).values()) == ["dense-s0-aa.csv.gz", "lighthouse-s0-bb.csv.gz"]
    assert load_curves(out) == plain and float(plain["lighthouse-s0-bb"][-1]["val_loss"]) == 2.5
    first = (out / "curves" / "dense-s0-aa.csv.gz").read_bytes()
    # the gzip header (RFC 1952): no file name (FLG bit 3) and a zero MTIME, which two packs within one second
    # would not tell apart from a time stamp
    assert first[:3] == b"\x1f\x8b\x08" and not first[3] & 0x08 and first[4:8] == bytes(4)
    (out / "curves" / "dense-s0-aa.csv").write_bytes(gzip.decompress(first))
    with pytest.raises(ValueError, match="both"):
        curve_files(out)
    (out / "curves" / "dense-s0-aa.csv.gz").unlink()
    pack_curves(out)
    assert (out / "curves" / "dense-s0-aa.csv.gz").read_bytes() == first


def test_a_resume_numbers_set_aside_curves_past_earlier_attempts_in_either_form(tmp_path):
    """Catches a packed unfinished curve set aside as <job>.partial-1.csv.gz beside an earlier attempt's plain
    <job>.partial-1.csv (reports/h200/study/seeds6-14 holds both kinds), so that two attempts share a number."""
    from lighthouse.train.study_run import _set_aside, curve_path

    curve = curve_path(tmp_path, "lighthouse-then-dense-s11-e8f1722b")
    curve.parent.mkdir(parents=True)
    curve.with_suffix(".partial-1.csv").write_text("first attempt")
    curve.with_name(curve.name + ".gz").write_bytes(gzip.compress(b"second attempt"))
    _set_aside(curve)
    names = sorted(p.name for p in curve.parent.iterdir())
    assert names == [f"{curve.stem}.partial-1.csv", f"{curve.stem}.partial-2.csv.gz"]
    curve.write_text("third attempt")
    _set_aside(curve)
    assert (curve.parent / f"{curve.stem}.partial-3.csv").read_text() == "third attempt"
    _set_aside(curve)  # nothing left to move
    assert len(list(curve.parent.iterdir())) == 3
