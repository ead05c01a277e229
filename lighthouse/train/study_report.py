"""What a study shows, computed from its files only: study.json, clock.csv and curves/*.csv.

Per arm and seed (`arms.csv`): the final validation loss (the step the arm ends at), in the mode it trains in and,
for arms that used Lighthouse, in both modes; the gap to the dense arm of the same seed, length and experiment, in
percent of dense's loss; the solo-clock wall time (steps x solo step time of each mode, clock.csv) and its ratio
to dense's; and the dense curve read at the arm's wall time (loss at equal wall-clock, interpolated between
validation points). Across seeds (`summary.csv`): mean and 95% t interval of the loss and of the paired gap.
`study.md` holds the tables, the verdict on the paper's claim and the recovery answer; charts beside it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..harness.tables import STUDY_CLOCK, fmt, num, read_rows
from .stats import Interval, mean_interval
from .study_curves import at_step, interpolate, load_curves, val_curve

CLAIM_PCT = 1.0  # the paper's claim, read as: a gap of at most 1% of dense's loss, or an interval holding 0
PRECISE_PCT = 2.0  # an interval wider than this (half-width, % of dense's loss) decides nothing


@dataclass
class ArmResult:
    experiment: str
    label: str
    seed: int
    length: int
    switch_step: Optional[int]
    topk: Optional[int]
    dense_steps: Optional[int]
    val_loss: Optional[float]
    val_lighthouse: Optional[float]
    val_dense_mode: Optional[float]
    dense_val_loss: Optional[float]
    gap_pct: Optional[float]
    wall_s: Optional[float]
    dense_wall_s: Optional[float]
    dense_at_equal_wall: Optional[float]
    epochs: Optional[float]
    s_over_n: Optional[float]

    @property
    def wall_ratio(self) -> Optional[float]:
        return self.wall_s / self.dense_wall_s if self.wall_s and self.dense_wall_s else None


def _clock(out: Path) -> Dict[Tuple[str, str], float]:
    path = Path(out) / "clock.csv"
    if not path.exists():
        return {}
    return {(r["experiment"], r["attention"]): num(r["median_step_ms"]) / 1e3 for r in read_rows(path, STUDY_CLOCK)[0]}


def _s_over_n(experiment: dict, topk: Optional[int]) -> Optional[float]:
    from ..plan import plan_for
    from .presets import get_preset

    overrides = dict(experiment.get("overrides") or ())
    if experiment.get("lr") is not None:
        overrides["lr"] = experiment["lr"]
    if topk is not None:
        overrides["topk"] = topk
    p = get_preset(experiment["preset"], **overrides)
    try:
        return plan_for(p.lighthouse(), p.batch, p.heads, p.kv_heads, p.seq, p.head_dim).selected_len / p.seq
    except ValueError:
        return None


def arm_results(out: Path) -> List[ArmResult]:
    out = Path(out)
    manifest = json.loads((out / "study.json").read_text())
    experiments = {e["name"]: e for e in manifest["experiments"]}
    curves, clock = load_curves(out), _clock(out)
    arms = manifest["arms"]
    dense_of = {(a["experiment"], a["seed"], a["length"]): a for a in arms if a["label"] == "dense"}
    results = []
    for a in arms:
        rows = curves.get(a["job_id"], [])
        e, length = a["experiment"], a["length"]
        dense_arm = dense_of.get((e, a["seed"], length))
        dense_rows = curves.get(dense_arm["job_id"], []) if dense_arm else []
        dense_val = at_step(dense_rows, length, "val_loss")
        val = at_step(rows, length, "val_loss")
        lh_mode = a["label"] != "dense"
        t_dense = clock.get((e, "dense"))
        t_lh = clock.get((e, a["label"] if a["label"].startswith("lighthouse k=") else "lighthouse"))
        if a["label"].startswith("lighthouse k=") and t_lh is None:
            t_lh = clock.get((e, "lighthouse"))  # the trunk's k
        dense_wall = length * t_dense if t_dense else None
        if a["label"] == "dense":
            wall = dense_wall
        elif a["switch_step"] is not None:
            wall = a["switch_step"] * t_lh + (length - a["switch_step"]) * t_dense if t_lh and t_dense else None
        else:
            wall = length * t_lh if t_lh else None
        at_wall = None
        if wall is not None and t_dense:
            at_wall = interpolate(val_curve(dense_rows), wall / t_dense)
        gap = 100 * (val - dense_val) / dense_val if val is not None and dense_val and lh_mode else None
        results.append(
            ArmResult(
                e,
                a["label"],
                a["seed"],
                length,
                a["switch_step"],
                a.get("topk"),
                length - a["switch_step"] if a["switch_step"] is not None else None,
                val,
                at_step(rows, length, "val_loss_lighthouse") if lh_mode else None,
                at_step(rows, length, "val_loss_dense") if lh_mode else None,
                dense_val,
                gap,
                wall,
                dense_wall,
                at_wall,
                at_step(rows, length, "epochs"),
                _s_over_n(experiments[e], a.get("topk")) if lh_mode else None,
            )
        )
    return results


@dataclass
class Summary:
    experiment: str
    label: str
    length: int
    switch_step: Optional[int]
    dense_steps: Optional[int]
    topk: Optional[int]
    s_over_n: Optional[float]
    loss: Optional[Interval]
    gap: Optional[Interval]
    wall_ratio: Optional[float]
    stage1_dense_mode: Optional[Interval]
    seeds: int

    def reaches_claim(self) -> bool:
        return self.gap is not None and reaches_claim(self.gap)

    def verdict(self) -> str:
        return "" if self.gap is None else claim_verdict(self.gap)


def reaches_claim(gap: Interval) -> bool:
    """The paper's claim on one gap (% of dense's loss): at most CLAIM_PCT, or an interval holding 0."""
    return gap.mean <= CLAIM_PCT or gap.contains(0.0)


def claim_verdict(gap: Interval) -> str:
    """yes / no, or inconclusive when the interval is wider than PRECISE_PCT (or there is one seed)."""
    if gap.low is not None and gap.low > CLAIM_PCT:
        return "no"  # the whole interval lies above the claim, however wide it is
    if gap.half_width is None or gap.half_width > PRECISE_PCT:
        return "inconclusive"
    return "yes" if reaches_claim(gap) else "no"


def summarize(results: Sequence[ArmResult]) -> List[Summary]:
    groups: Dict[tuple, List[ArmResult]] = {}
    for r in results:
        groups.setdefault((r.experiment, r.label, r.length, r.switch_step, r.topk), []).append(r)
    out = []
    for (e, label, length, switch, topk), rs in groups.items():
        losses = [r.val_loss for r in rs if r.val_loss is not None]
        gaps = [r.gap_pct for r in rs if r.gap_pct is not None]
        ratios = [r.wall_ratio for r in rs if r.wall_ratio is not None]
        dense_mode = [r.val_dense_mode for r in rs if r.val_dense_mode is not None and r.switch_step is None]
        out.append(
            Summary(
                e,
                label,
                length,
                switch,
                length - switch if switch is not None else None,
                topk,
                rs[0].s_over_n,
                mean_interval(losses) if losses else None,
                mean_interval(gaps) if gaps else None,
                sum(ratios) / len(ratios) if ratios else None,
                mean_interval(dense_mode) if dense_mode else None,
                len(losses),
            )
        )
    return sorted(out, key=lambda s: (s.experiment, s.length, s.label != "dense", -(s.dense_steps or 0), s.topk or 0))


def _iv(iv: Optional[Interval], digits: int = 4, pct: bool = False) -> str:
    if iv is None:
        return ""
    unit = "%" if pct else ""
    mean = f"{iv.mean:+.2f}{unit}" if pct else fmt(iv.mean, digits)
    if iv.half_width is None:
        return f"{mean} (1 seed)"
    hw = f"{iv.half_width:.2f}{unit}" if pct else fmt(iv.half_width, 2)
    return f"{mean} ± {hw}"


SUMMARY_COLUMNS = (
    "experiment",
    "arm",
    "length",
    "switch_step",
    "dense_steps",
    "topk",
    "s_over_n",
    "seeds",
    "loss_mean",
    "loss_hw",
    "gap_pct_mean",
    "gap_pct_hw",
    "wall_ratio",
    "dense_mode_mean",
    "dense_mode_hw",
)


def _summary_rows(summaries: Sequence[Summary]) -> List[dict]:
    rows = []
    for s in summaries:
        rows.append(
            {
                "experiment": s.experiment,
                "arm": s.label,
                "length": s.length,
                "switch_step": s.switch_step,
                "dense_steps": s.dense_steps,
                "topk": s.topk,
                "s_over_n": s.s_over_n,
                "seeds": s.seeds,
                "loss_mean": s.loss.mean if s.loss else None,
                "loss_hw": s.loss.half_width if s.loss else None,
                "gap_pct_mean": s.gap.mean if s.gap else None,
                "gap_pct_hw": s.gap.half_width if s.gap else None,
                "wall_ratio": s.wall_ratio,
                "dense_mode_mean": s.stage1_dense_mode.mean if s.stage1_dense_mode else None,
                "dense_mode_hw": s.stage1_dense_mode.half_width if s.stage1_dense_mode else None,
            }
        )
    return rows


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[dict]) -> None:
    import csv

    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns))
        w.writeheader()
        for r in rows:
            w.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in columns})


def _md(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def verdict_rows(summaries: Sequence[Summary]) -> List[List[str]]:
    """The verdict table: one row per Lighthouse configuration that ends dense-evaluated (two-stage, recovery)."""
    rows = []
    for s in summaries:
        if s.label != "lighthouse-then-dense" or s.gap is None:
            continue
        rows.append(
            [
                s.experiment,
                f"{s.length} steps, switch at {s.switch_step} ({s.dense_steps} dense)",
                _iv(s.gap, pct=True),
                fmt(s.wall_ratio, 3),
                str(s.seeds),
                s.verdict(),
            ]
        )
    return rows


def recovery_answer(summaries: Sequence[Summary]) -> List[str]:
    """Per experiment and run length: the fewest dense steps whose mean gap is within 1%, and its saving."""
    lines = []
    groups: Dict[Tuple[str, int], List[Summary]] = {}
    for s in summaries:
        if s.label == "lighthouse-then-dense" and s.gap is not None:
            groups.setdefault((s.experiment, s.length), []).append(s)
    for (e, length), ss in sorted(groups.items()):
        ss.sort(key=lambda s: s.dense_steps)
        within = [s for s in ss if s.gap.mean <= CLAIM_PCT]
        trend = ", ".join(f"{s.dense_steps}: {s.gap.mean:+.2f}%" for s in ss)
        if within:
            s = within[0]
            saving = f"{100 * (1 - s.wall_ratio):.1f}%" if s.wall_ratio else "unknown"
            lines.append(
                f"- {e}, {length} steps: the fewest dense steps within {CLAIM_PCT:g}% of dense is "
                f"**{s.dense_steps}** (gap {_iv(s.gap, pct=True)}, {s.seeds} seeds); the whole run's "
                f"wall-clock saving there is {saving}. Gap by dense steps: {trend}."
            )
        else:
            lines.append(
                f"- {e}, {length} steps: no number of dense steps tried gets within {CLAIM_PCT:g}%. "
                f"Gap by dense steps: {trend}."
            )
    return lines


def write_report(out: Path) -> List[Path]:
    """arms.csv, summary.csv, study.md and the charts of a study folder; returns the paths written."""
    out = Path(out)
    results = arm_results(out)
    summaries = summarize(results)
    arm_cols = (
        "experiment",
        "label",
        "seed",
        "length",
        "switch_step",
        "dense_steps",
        "topk",
        "s_over_n",
        "val_loss",
        "val_lighthouse",
        "val_dense_mode",
        "dense_val_loss",
        "gap_pct",
        "wall_s",
        "dense_wall_s",
        "dense_at_equal_wall",
        "epochs",
    )
    _write_csv(out / "arms.csv", arm_cols, [r.__dict__ for r in results])
    _write_csv(out / "summary.csv", SUMMARY_COLUMNS, _summary_rows(summaries))
    manifest = json.loads((out / "study.json").read_text())
    parts = [
        "# Study",
        "",
        "Validation loss in nats per byte on held-out files. Gap: (arm - dense) / dense of the same "
        "seed, in percent, mean ± the half-width of its 95% t interval over seeds. Wall ratio: the arm's training "
        "time over dense's, from solo step times (clock.csv).",
        "",
    ]
    for e in manifest["experiments"]:
        parts += [
            f"- **{e['name']}** ({e['kind']}): {e.get('description', '')} preset {e['preset']}, "
            f"precision {e['precision']}, clip {e['clip']}, schedule {e['schedule']} "
            f"(warm-up {e['warmup_steps']} steps), seeds {', '.join(map(str, e['seeds']))}."
        ]
    parts += ["", "## Verdict: does Lighthouse-then-dense match dense?", ""]
    vrows = verdict_rows(summaries)
    parts += [
        _md(("experiment", "configuration", "gap to dense", "wall ratio", "seeds", "matches dense"), vrows)
        if vrows
        else "No Lighthouse-then-dense arm has finished."
    ]
    reached = [r for r in vrows if r[-1] == "yes"]
    vague = [r for r in vrows if r[-1] == "inconclusive"]
    parts += [
        "",
        (
            f"{len(reached)} of {len(vrows)} configurations reach the paper's claim (a gap of at most "
            f"{CLAIM_PCT:g}% of dense's loss, or a 95% interval that contains 0, with a half-width of at most "
            f"{PRECISE_PCT:g}%); {len(vague)} are inconclusive (a wider interval that reaches below {CLAIM_PCT:g}%)."
            if vrows
            else ""
        ),
        "",
    ]
    parts += ["## Recovery: dense steps after the switch", ""] + (recovery_answer(summaries) or ["(none)"])
    parts += ["", "## Every arm", ""]
    parts += [
        _md(
            (
                "experiment",
                "arm",
                "steps",
                "dense steps",
                "k",
                "S/N",
                "seeds",
                "val loss",
                "gap",
                "dense-mode val (stage 1)",
                "wall ratio",
            ),
            [
                [
                    s.experiment,
                    s.label,
                    s.length,
                    s.dense_steps if s.dense_steps is not None else "",
                    s.topk or "",
                    fmt(s.s_over_n, 3) if s.s_over_n else "",
                    s.seeds,
                    _iv(s.loss),
                    _iv(s.gap, pct=True),
                    _iv(s.stage1_dense_mode),
                    fmt(s.wall_ratio, 3),
                ]
                for s in summaries
            ],
        )
    ]
    eq = [r for r in results if r.label == "lighthouse-then-dense" and r.dense_at_equal_wall is not None]
    if eq:
        parts += [
            "",
            "## Equal wall-clock",
            "",
            "Dense's validation loss read at the Lighthouse-then-dense arm's own wall time (same seed):",
            "",
        ]
        groups: Dict[tuple, List[ArmResult]] = {}
        for r in eq:
            groups.setdefault((r.experiment, r.length, r.switch_step), []).append(r)
        parts += [
            _md(
                ("experiment", "steps", "switch", "Lighthouse-then-dense", "dense at that wall time"),
                [
                    [
                        e,
                        length,
                        sw,
                        _iv(mean_interval([r.val_loss for r in rs])),
                        _iv(mean_interval([r.dense_at_equal_wall for r in rs])),
                    ]
                    for (e, length, sw), rs in sorted(groups.items())
                ],
            )
        ]
    md = out / "study.md"
    md.write_text("\n".join(parts) + "\n")
    paths = [out / "arms.csv", out / "summary.csv", md]
    try:
        from .study_charts import draw

        paths += draw(out, results, summaries)
    except Exception as err:  # noqa: BLE001 - the tables are written
        print(f"study charts failed ({type(err).__name__}: {err})")
    return paths
