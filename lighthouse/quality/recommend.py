"""`lighthouse-bench recommend`: the fastest measured configuration that meets a quality bar.

Joins sweep rows (speed: `speedup_vs_<baseline>` of the Lighthouse row for one pass) with quality rows
(the bar: needle recall on `needle` inputs, or out_rel_err on `random` inputs, or either on any inputs kind
named with --inputs) for the same configuration (N, L, p, k, scorer, rope) and names the one with the largest
speedup among those that meet the bar, with the runners-up and their figures. It never guesses: a
configuration counts only when both figures were measured (status ok) at exactly the requested N; what is
missing is listed instead. Where one configuration has several measured rows (several shapes, both
Lighthouse paths, several layers of a checkpoint) the figure used is the *least favourable* of them for the
quality bar (lowest recall, largest error) and the fastest Lighthouse path for speed at each shape, then
the slowest shape: nothing is ever better than a measurement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ..harness.baselines import short as baseline_option
from ..harness.tables import CONFIG_COLUMNS as CONFIG
from ..harness.tables import QUALITY, SPEEDUP_COLUMNS, SWEEP, fmt_size, header_of, read_rows
from ..harness.tables import num as _num

SWEEP_FILE, QUALITY_FILE = "results.csv", "quality.csv"
#: Quality figures shown for every configuration (the bar's own figure first, then the others in this order).
SHOWN_FIGURES = ("needle_recall", "out_rel_err", "coverage")


def _int(text) -> Optional[int]:
    x = _num(text)
    return int(x) if x is not None else None


@dataclass(frozen=True)
class Bar:
    """The quality bar: `figure` >= threshold (needle_recall) or <= threshold (out_rel_err)."""

    figure: str  # "needle_recall" or "out_rel_err"
    threshold: float
    inputs: str  # quality inputs kind the figure is read from

    @property
    def higher_is_better(self) -> bool:
        return self.figure != "out_rel_err"

    def met(self, value: float) -> bool:
        return value >= self.threshold if self.higher_is_better else value <= self.threshold

    def worst(self, values: Iterable[float]) -> float:
        return min(values) if self.higher_is_better else max(values)

    def describe(self) -> str:
        op = ">=" if self.higher_is_better else "<="
        return f"{self.figure} {op} {self.threshold:g} on {self.inputs} inputs"


@dataclass
class Candidate:
    config: Tuple[int, int, int, str, str]  # (levels, pooling, topk, scorer, rope)
    speedup: float
    quality: float
    meets: bool
    extra: Dict[str, Optional[float]] = field(default_factory=dict)

    def label(self) -> str:
        levels, p, k, s, rope = self.config
        return f"L={levels} p={p} k={k} {s}" + ("" if rope == "pre" else f" rope={rope}")


@dataclass
class Recommendation:
    seq: int
    bar: Bar
    pass_: str
    baseline: str
    chosen: Optional[Candidate]
    ranked: List[Candidate]  # every configuration with both figures, best first (meeting the bar first)
    speed_only: List[Tuple] = field(default_factory=list)  # measured speed, no quality
    quality_only: List[Tuple] = field(default_factory=list)  # measured quality, no speed
    why_missing: List[str] = field(default_factory=list)  # per side with no figure at all: what is missing


def find_files(paths: Sequence[Path]) -> Tuple[List[Path], List[Path]]:
    """Folders or CSV files -> (sweep CSVs, quality CSVs), told apart by name or by header."""
    sweeps, qualities = [], []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            for f in sorted(path.rglob("*.csv")):
                if f.name == SWEEP_FILE:
                    sweeps.append(f)
                elif f.name == QUALITY_FILE:
                    qualities.append(f)
            continue
        if not path.is_file():
            raise ValueError(f"RESULT DIRS: {path} does not exist")
        header = header_of(path)
        if "out_rel_err" in header:
            qualities.append(path)
        elif "median_ms" in header:
            sweeps.append(path)
        else:
            raise ValueError(f"RESULT DIRS: {path} is neither a sweep results.csv nor a quality quality.csv")
    return sweeps, qualities


def load(paths: Sequence[Path]) -> Tuple[List[dict], List[dict]]:
    """(sweep rows, quality rows): the complete rows of every file found (torn rows are not measurements)."""
    sweeps, qualities = find_files(paths)
    return (
        [r for p in sweeps for r in read_rows(p, SWEEP)[0]],
        [r for p in qualities for r in read_rows(p, QUALITY)[0]],
    )


def _key(row: dict) -> Optional[Tuple[int, int, int, str, str]]:
    vals = tuple(_int(row.get(c)) for c in CONFIG[:3])
    if None in vals or not row.get("scorer"):
        return None
    return (*vals, row["scorer"], row.get("rope") or "pre")  # tables read a file without `rope` as pre


def speed_table(rows: Iterable[dict], seq: int, pass_: str, baseline: str) -> Dict[Tuple, float]:
    """config -> speedup over `baseline`: per shape the fastest Lighthouse path, then the slowest shape."""
    col = f"speedup_vs_{baseline}"
    per_shape: Dict[Tuple, Dict[Tuple, float]] = {}
    for r in rows:
        if r.get("kind") != "lighthouse" or r.get("status") != "ok" or r.get("pass") != pass_:
            continue
        if _int(r.get("n")) != seq:
            continue
        key, value = _key(r), _num(r.get(col))
        if key is None or value is None:
            continue
        shape = tuple(r.get(c) for c in ("dtype", "batch", "heads", "kv_heads", "head_dim", "device"))
        best = per_shape.setdefault(key, {})
        best[shape] = max(value, best.get(shape, value))
    return {k: min(v.values()) for k, v in per_shape.items()}


def quality_table(rows: Iterable[dict], seq: int, bar: Bar) -> Dict[Tuple, Dict[str, float]]:
    """config -> {bar figure: the least favourable measured value, plus other figures (their worst)}."""
    seen: Dict[Tuple, List[dict]] = {}
    for r in rows:
        if r.get("status") != "ok" or r.get("inputs") != bar.inputs or _int(r.get("n")) != seq:
            continue
        key = _key(r)
        if key is not None and _num(r.get(bar.figure)) is not None:
            seen.setdefault(key, []).append(r)
    out = {}
    for key, rs in seen.items():
        figs = {bar.figure: bar.worst(_num(r[bar.figure]) for r in rs)}
        for name, worst in (("needle_recall", min), ("out_rel_err", max), ("coverage", min), ("cos_median", min)):
            vals = [v for v in (_num(r.get(name)) for r in rs) if v is not None]
            if name != bar.figure and vals:
                figs[name] = worst(vals)
        out[key] = figs
    return out


def recommend(
    sweep_rows: List[dict],
    quality_rows: List[dict],
    seq: int,
    bar: Bar,
    pass_: str = "fwdbwd",
    baseline: str = "sdpa_cudnn",
    ropes: Optional[Sequence[str]] = None,
) -> Recommendation:
    """`ropes`: the RoPE placements to choose among (None: every one measured)."""
    if ropes is not None:
        sweep_rows = [r for r in sweep_rows if r.get("kind") != "lighthouse" or (r.get("rope") or "pre") in ropes]
        quality_rows = [r for r in quality_rows if (r.get("rope") or "pre") in ropes]
    speed = speed_table(sweep_rows, seq, pass_, baseline)
    quality = quality_table(quality_rows, seq, bar)
    ranked = []
    for key in speed.keys() & quality.keys():
        figs = quality[key]
        value = figs[bar.figure]
        others = {k: v for k, v in figs.items() if k != bar.figure}
        ranked.append(Candidate(key, speed[key], value, bar.met(value), others))
    ranked.sort(key=lambda c: (not c.meets, -c.speedup, c.config))
    chosen = ranked[0] if ranked and ranked[0].meets else None
    why = [
        w
        for w in (
            why_no_speed(sweep_rows, seq, pass_, baseline) if not speed else None,
            why_no_quality(quality_rows, seq, bar) if not quality else None,
        )
        if w
    ]
    return Recommendation(
        seq,
        bar,
        pass_,
        baseline,
        chosen,
        ranked,
        sorted(speed.keys() - quality.keys()),
        sorted(quality.keys() - speed.keys()),
        why,
    )


def _seqs(rows: Iterable[dict]) -> str:
    return ", ".join(str(n) for n in sorted({n for r in rows for n in [_int(r.get("n"))] if n is not None}))


def why_no_speed(rows: Sequence[dict], seq: int, pass_: str, baseline: str) -> str:
    """Why the sweep rows give no speed figure: no ok row, another N, another pass, or another dense baseline
    (the first of these that holds, so the sentence blames what is really missing)."""
    ok = [r for r in rows if r.get("kind") == "lighthouse" and r.get("status") == "ok"]
    if not ok:
        return (
            "the sweep results hold no ok Lighthouse row"
            + ("" if rows else " (no results.csv given)")
            + f": run `lighthouse-bench sweep --seq {seq} --pass {pass_} ...`"
        )
    at_n = [r for r in ok if _int(r.get("n")) == seq]
    if not at_n:
        return (
            f"the sweep measured N = {_seqs(ok)}, not {seq}: run `lighthouse-bench sweep --seq {seq} ...` "
            f"(no figure is interpolated)"
        )
    passes = sorted({r.get("pass") or "?" for r in at_n})
    if pass_ not in passes:
        return (
            f"the sweep measured N={seq} on the {' and '.join(passes)} pass{'es' if len(passes) > 1 else ''}, "
            f"not {pass_}: give --pass {passes[0]} or run `lighthouse-bench sweep --seq {seq} --pass {pass_} ...`"
        )
    measured = sorted(
        {
            c.removeprefix("speedup_vs_")
            for r in at_n
            if r.get("pass") == pass_
            for c in SPEEDUP_COLUMNS
            if _num(r.get(c)) is not None
        }
    )
    have = (
        f"it timed {', '.join(baseline_option(b) for b in measured)}: give --baseline {baseline_option(measured[0])}"
        if measured
        else "it timed no dense baseline"
    )
    return (
        f"the sweep's {pass_} rows at N={seq} have no speedup over {baseline} ({have}) or run "
        f"`lighthouse-bench sweep --seq {seq} --pass {pass_} --baseline {baseline_option(baseline)} ...`"
    )


def why_no_quality(rows: Sequence[dict], seq: int, bar: Bar) -> str:
    """Why the quality rows give no figure for the bar: no ok row, another N, other inputs, or no such figure."""
    run = f"`lighthouse-bench quality --seq {seq} --inputs {bar.inputs} ...`"
    ok = [r for r in rows if r.get("status") == "ok"]
    if not ok:
        return "the quality results hold no ok row" + ("" if rows else " (no quality.csv given)") + f": run {run}"
    at_n = [r for r in ok if _int(r.get("n")) == seq]
    if not at_n:
        return f"the quality runs measured N = {_seqs(ok)}, not {seq}: run {run} (no figure is interpolated)"
    kinds = sorted({r.get("inputs") or "?" for r in at_n})
    if bar.inputs not in kinds:
        return f"the quality rows at N={seq} are on {', '.join(kinds)} inputs, not {bar.inputs}: run {run}"
    return f"the {bar.inputs} quality rows at N={seq} have no {bar.figure}: run {run}"


def _fmt(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.3g}"


def _config_label(key) -> str:
    return Candidate(key, 0, 0, False).label()


def _closest(rec: Recommendation) -> str:
    """The configuration nearest the bar (its best figure; the faster among equals) and by how much it misses."""
    bar = rec.bar
    c = min(rec.ranked, key=lambda c: (-c.quality if bar.higher_is_better else c.quality, -c.speedup))
    side = "below" if bar.higher_is_better else "above"
    return (
        f"The closest is {c.label()} ({c.speedup:.2f}x): {bar.figure} {_fmt(c.quality)}, {side} the bar "
        f"{bar.threshold:g} by {_fmt(abs(c.quality - bar.threshold))}."
    )


def _table(rec: Recommendation, shown: Sequence[Candidate]) -> List[str]:
    """Markdown rows: configuration, speedup, the bar's figure, whether it meets the bar, the other figures."""
    others = [f for f in SHOWN_FIGURES if f != rec.bar.figure]
    lines = [
        "| " + " | ".join(["configuration", "speedup", rec.bar.figure, "meets bar", *others]) + " |",
        "|" + "---|" * (4 + len(others)),
    ]
    for c in shown:
        cells = [
            c.label(),
            f"{c.speedup:.2f}x",
            _fmt(c.quality),
            "yes" if c.meets else "no",
            *(_fmt(c.extra.get(f)) for f in others),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render(rec: Recommendation, runners_up: int = 5) -> str:
    """Markdown: the choice (or why there is none), the runners-up, what is missing."""
    n = fmt_size(rec.seq)
    lines = [
        f"## Recommendation for N={n}",
        "",
        f"Bar: {rec.bar.describe()}; speed: speedup over {rec.baseline} on the {rec.pass_} pass.",
        "",
    ]
    if not rec.ranked:
        lines.append(f"No configuration has both figures measured at N={rec.seq}:")
        lines += [f"- {why}" for why in rec.why_missing] or [
            "- the sweep and the quality runs measured different configurations at this N (listed below)"
        ]
    elif rec.chosen is None:
        lines.append(f"No measured configuration meets the bar ({len(rec.ranked)} measured). {_closest(rec)}")
    else:
        c = rec.chosen
        lines.append(
            f"**Use {c.label()}**: {c.speedup:.2f}x {rec.baseline} ({rec.pass_}), {rec.bar.figure} = {_fmt(c.quality)}."
        )
        lines += ["", *_table(rec, rec.ranked[: runners_up + 1])]
    if rec.why_missing:  # one side has nothing at all: its sentence above says why, no per-configuration list
        return "\n".join(lines) + "\n"
    if rec.speed_only:
        lines += [
            "",
            f"Speed measured but no {rec.bar.inputs} quality at N={rec.seq} "
            "(run `lighthouse-bench quality`): " + "; ".join(_config_label(k) for k in rec.speed_only),
        ]
    if rec.quality_only:
        lines += [
            "",
            f"Quality measured but no {rec.pass_} speed at N={rec.seq} (run `lighthouse-bench sweep`): "
            + "; ".join(_config_label(k) for k in rec.quality_only),
        ]
    return "\n".join(lines) + "\n"
