"""Which scorer retrieves planted needles: per scorer and N, the needle recall over every measured
configuration (mean, best and the best configuration), and the mean coverage and output error."""

from __future__ import annotations

from typing import Dict, List, Tuple

from ..bench.results import fmt, fmt_size, num


def scorer_table(rows: List[dict]) -> Tuple[List[str], List[List[str]]]:
    """(headers, rows) from quality rows (ok rows of needle inputs for recall, random inputs for error)."""
    groups: Dict[Tuple[str, int], Dict[str, list]] = {}
    for r in rows:
        if r.get("status") != "ok" or num(r.get("n")) is None:
            continue
        g = groups.setdefault((r["scorer"], int(num(r["n"]))), {"recall": [], "err": [], "cov": []})
        if r.get("inputs") == "needle" and num(r.get("needle_recall")) is not None:
            g["recall"].append((num(r["needle_recall"]), f"L={r['levels']} p={r['pooling']} k={r['topk']}"))
        if r.get("inputs") == "random":
            if num(r.get("out_rel_err")) is not None:
                g["err"].append(num(r["out_rel_err"]))
            if num(r.get("coverage")) is not None:
                g["cov"].append(num(r["coverage"]))
    headers = ["scorer", "N", "configs", "mean needle recall", "best needle recall", "best configuration",
               "mean coverage (random)", "mean out_rel_err (random)"]
    out = []
    for (scorer, n), g in sorted(groups.items()):
        rec = g["recall"]
        best = max(rec) if rec else None
        out.append([scorer, fmt_size(n), str(max(len(rec), len(g["err"]))),
                    fmt(sum(v for v, _ in rec) / len(rec) if rec else None), fmt(best[0] if best else None),
                    best[1] if best else "-", fmt(sum(g["cov"]) / len(g["cov"]) if g["cov"] else None),
                    fmt(sum(g["err"]) / len(g["err"]) if g["err"] else None)])
    return headers, out
