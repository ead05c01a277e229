"""Which scorer retrieves planted needles: per scorer and N, the needle recall over every measured
configuration (mean, best and the best configuration), and the mean coverage and output error; and what the
configurations do to a trained model's own q, k, v (`checkpoint_table`, `--inputs checkpoint:PATH`)."""

from __future__ import annotations

from statistics import median
from typing import Dict, List, Tuple

from ..harness.tables import fmt, fmt_size, num

#: Needle inputs whose recall the tables show: the position-free needles, and those planted in rotated q, k.
NEEDLE_INPUTS = ("needle", "needle-rope")


def _scorer(r: dict) -> str:
    """The scorer, with the RoPE placement when it is not pre (a file of pre rows reads as before)."""
    rope = r.get("rope") or "pre"
    return r["scorer"] if rope == "pre" else f"{r['scorer']} rope={rope}"


def scorer_table(rows: List[dict]) -> Tuple[List[str], List[List[str]]]:
    """(headers, rows) from quality rows (ok rows of needle inputs for recall, random inputs for error); one
    line per scorer, RoPE placement and N; needle-rope recall in columns of its own where measured."""
    groups: Dict[Tuple[str, int], Dict[str, list]] = {}
    rope_needles = any(r.get("inputs") == "needle-rope" for r in rows)
    for r in rows:
        if r.get("status") != "ok" or num(r.get("n")) is None:
            continue
        g = groups.setdefault((_scorer(r), int(num(r["n"]))), {"recall": [], "rope": [], "err": [], "cov": []})
        if r.get("inputs") in NEEDLE_INPUTS and num(r.get("needle_recall")) is not None:
            g["recall" if r["inputs"] == "needle" else "rope"].append(
                (num(r["needle_recall"]), f"L={r['levels']} p={r['pooling']} k={r['topk']}")
            )
        if r.get("inputs") == "random":
            if num(r.get("out_rel_err")) is not None:
                g["err"].append(num(r["out_rel_err"]))
            if num(r.get("coverage")) is not None:
                g["cov"].append(num(r["coverage"]))
    headers = [
        "scorer",
        "N",
        "configs",
        "mean needle recall",
        "best needle recall",
        "best configuration",
        *(["mean needle-rope recall", "best needle-rope recall"] if rope_needles else []),
        "mean coverage (random)",
        "mean out_rel_err (random)",
    ]
    out = []
    for (scorer, n), g in sorted(groups.items()):
        rec, rot = g["recall"], g["rope"]
        best = max(rec) if rec else None
        out.append(
            [
                scorer,
                fmt_size(n),
                str(max(len(rec), len(rot), len(g["err"]))),
                fmt(sum(v for v, _ in rec) / len(rec) if rec else None),
                fmt(best[0] if best else None),
                best[1] if best else "-",
                *(
                    [fmt(sum(v for v, _ in rot) / len(rot) if rot else None), fmt(max(rot)[0] if rot else None)]
                    if rope_needles
                    else []
                ),
                fmt(sum(g["cov"]) / len(g["cov"]) if g["cov"] else None),
                fmt(sum(g["err"]) / len(g["err"]) if g["err"] else None),
            ]
        )
    return headers, out


def needle_verdict(rows: List[dict], threshold: float = 0.9) -> List[str]:
    """One sentence per N: dense's needle recall, and per scorer how many measured configurations (L, p, k)
    retrieve the planted needles (needle recall >= threshold; a configuration measured more than once counts
    with its lowest recall, as `recommend` judges it) and which (L, p) families they belong to; then whether the
    retrieving configurations are the same for every scorer (then no scorer's scores are what retrieves them)."""
    per_n: Dict[int, Dict[str, Dict[tuple, float]]] = {}
    dense: Dict[int, set] = {}
    for r in rows:
        recall, n = num(r.get("needle_recall")), num(r.get("n"))
        if r.get("status") != "ok" or r.get("inputs") != "needle" or recall is None or n is None:
            continue
        configs = per_n.setdefault(int(n), {}).setdefault(_scorer(r), {})
        key = (r["levels"], r["pooling"], r["topk"])
        configs[key] = min(recall, configs.get(key, recall))
        if num(r.get("dense_needle_recall")) is not None:
            dense.setdefault(int(n), set()).add(num(r["dense_needle_recall"]))
    out = []
    for n, by_scorer in sorted(per_n.items()):
        parts, hits_by_scorer = [], {}
        for scorer, configs in sorted(by_scorer.items()):
            hits = {key for key, v in configs.items() if v >= threshold}
            hits_by_scorer[scorer] = frozenset(hits)
            families = sorted({f"L={lv} p={p}" for lv, p, _ in hits})
            parts.append(f"{scorer} {len(hits)} of {len(configs)}" + (f" ({', '.join(families)})" if families else ""))
        same = len(hits_by_scorer) > 1 and len(set(hits_by_scorer.values())) == 1 and any(hits_by_scorer.values())
        dense_txt = ", ".join(fmt(x) for x in sorted(dense.get(n, ()))) or "not measured"
        out.append(
            f"N={fmt_size(n)}: dense needle recall {dense_txt}; configurations with needle recall >= {threshold:g}: "
            + "; ".join(parts)
            + "."
            + (
                " The very same configurations for every scorer: what retrieves the needles is the pyramid's "
                "shape and budget, not the scorer."
                if same
                else ""
            )
        )
    return out


CHECKPOINT_PREFIX = "checkpoint:"
#: Row key the report sets to the folder of the quality.csv a row came from: two runs may name their models by
#: the same path (e.g. /tmp/models/dense on a lent machine), and the table must not merge them.
SOURCE = "_source"


def _model(r: dict) -> str:
    model = r["inputs"][len(CHECKPOINT_PREFIX) :]
    return f"{r[SOURCE]}: {model}" if r.get(SOURCE) else model


def _checkpoint_rows(rows: List[dict]) -> List[dict]:
    return [
        r
        for r in rows
        if r.get("status") == "ok"
        and str(r.get("inputs", "")).startswith(CHECKPOINT_PREFIX)
        and num(r.get("n")) is not None
        and num(r.get("out_rel_err")) is not None
    ]


def checkpoint_layer_medians(rows: List[dict], figure: str) -> Dict[Tuple[str, int, str], Dict[int, float]]:
    """{(model, N, scorer): {layer: median of `figure` over the configurations measured at that layer}} from the
    ok checkpoint rows: the per-layer picture `checkpoint_layer_charts` draws."""
    values: Dict[Tuple[str, int, str], Dict[int, list]] = {}
    for r in _checkpoint_rows(rows):
        if num(r.get(figure)) is not None and num(r.get("layer")) is not None:
            key = (_model(r), int(num(r["n"])), r["scorer"])
            values.setdefault(key, {}).setdefault(int(num(r["layer"])), []).append(num(r[figure]))
    return {key: {layer: median(v) for layer, v in sorted(by_layer.items())} for key, by_layer in values.items()}


def checkpoint_table(rows: List[dict]) -> Tuple[List[str], List[List[str]]]:
    """(headers, rows): per checkpoint model, N and scorer, over every (layer, configuration) row measured on
    that model's captured q, k, v: the medians of out_rel_err, of the per-token cosine (its median and p10
    columns), of the coverage and of where the error lies (norm_ratio_median, err_top10_share; "-" for files
    measured before those existed); and, among the configurations measured on every layer of the group, the one
    whose *worst* layer has the smallest out_rel_err (a configuration is as good as its worst layer, as
    `recommend` judges it), with that worst-layer error."""
    groups: Dict[Tuple[str, int, str], List[dict]] = {}
    for r in _checkpoint_rows(rows):
        groups.setdefault((_model(r), int(num(r["n"])), r["scorer"]), []).append(r)
    headers = [
        "model",
        "N",
        "scorer",
        "layers",
        "configs",
        "median out_rel_err",
        "median cosine (per-token median)",
        "median cosine (per-token p10)",
        "median coverage",
        "median norm ratio",
        "median top-10% error share",
        "closest configuration",
        "its worst-layer out_rel_err",
    ]
    out = []
    for (model, n, scorer), rs in sorted(groups.items()):

        def med(col):
            values = [num(r.get(col)) for r in rs if num(r.get(col)) is not None]
            return median(values) if values else None

        layers = {num(r.get("layer")) for r in rs}
        worst: Dict[Tuple[int, int, int], float] = {}
        seen: Dict[Tuple[int, int, int], set] = {}
        for r in rs:
            key = (int(num(r["levels"])), int(num(r["pooling"])), int(num(r["topk"])))
            worst[key] = max(worst.get(key, float("-inf")), num(r["out_rel_err"]))
            seen.setdefault(key, set()).add(num(r.get("layer")))
        complete = {key: err for key, err in worst.items() if seen[key] == layers}  # a failed layer hides nothing
        best = min(complete.items(), key=lambda item: (item[1], item[0])) if complete else None
        out.append(
            [
                model,
                fmt_size(n),
                scorer,
                str(len(layers)),
                str(len(worst)),
                fmt(med("out_rel_err")),
                fmt(med("cos_median")),
                fmt(med("cos_p10")),
                fmt(med("coverage")),
                fmt(med("norm_ratio_median")),
                fmt(med("err_top10_share")),
                "L={} p={} k={}".format(*best[0]) if best else "-",
                fmt(best[1] if best else None),
            ]
        )
    return headers, out
