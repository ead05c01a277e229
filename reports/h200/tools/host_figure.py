"""Which host figure should the gate judge? Four candidates judged against the committed H200 runs (issue 24).

    python reports/h200/tools/host_figure.py

The gate judged the host's absolute time per call (`host_ms_per_call`) until the fifth session; one check failed
on it (+19-33%) with no code change, and passed minutes later (reports/h200/check/check-after-s5-first/,
check-after-s5/). Candidates, each per Lighthouse point and run: the absolute ms; the ms over the floor row's host
ms (the stock SDPA alone on the S rows); over the dense cuDNN row's; over the sum of both. For each of two baselines
(the three runs of check/record-s4/ the gate's baseline comes from, and the two baseline runs of
check/gate-host-ratio/) and each judged run (the two checks of the fifth session, and gate-host-ratio's judgments
with 0% and a 10% host-side delay, first measurement and repeats): the change of the best (lowest) measurement from
the baseline's median, against the gate's own limit for the figure (max(6%, the baseline's spread):
lighthouse.bench.check.tolerance_for). `!` marks a verdict of REGRESSED. Wanted: none in the 0% runs and the two
checks, every point in the 10% runs.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pandas as pd

CHECK = Path(__file__).resolve().parents[1] / "check"
sys.path.insert(0, str(CHECK.parents[2]))

from lighthouse.bench.check import DEFAULT_TOLERANCE, SPREAD_FACTOR  # noqa: E402

CANDIDATES = ("absolute", "over floor", "over cudnn", "over both")


def figures(results: Path, candidate: str) -> dict:
    """{N in K: the candidate figure} for the ok Lighthouse rows of one results.csv."""
    d = pd.read_csv(results)
    d = d[d.status == "ok"]

    def host(impl):
        return d[d.impl == impl].set_index(["n", "batch"]).host_ms_per_call

    own, floor, dense = host("lighthouse_triton"), host("floor"), host("sdpa_cudnn")
    out = {}
    for key in own.index:
        if key in floor.index and key in dense.index:
            stock = {"absolute": 1.0, "over floor": floor[key], "over cudnn": dense[key]}
            out[key[0] // 1024] = own[key] / stock.get(candidate, floor[key] + dense[key])
    return out


def measurements(folder: Path) -> list:
    """A judged run's results.csv, then its repeats'."""
    return [folder / "results.csv", *sorted(folder.glob("repeat-*/results.csv"))]


def main() -> None:
    baselines = {
        "record-s4": sorted(CHECK.glob("record-s4/run-*/results.csv")),
        "gate-host-ratio": sorted(CHECK.glob("gate-host-ratio/record/run-*/results.csv")),
    }
    judged = {
        "check-after-s5-first (0%)": CHECK / "check-after-s5-first",
        "check-after-s5 (0%)": CHECK / "check-after-s5",
        **{
            f"gate-host-ratio planted {p}": CHECK / "gate-host-ratio" / f"planted-{p}"
            for p in ("0-1", "0-2", "10-1", "10-2")
        },
    }
    for candidate in CANDIDATES:
        for base_name, runs in baselines.items():
            base = [figures(r, candidate) for r in runs]
            alarms = []
            for name, folder in judged.items():
                seen: dict = {}
                for results in measurements(folder):
                    for n, v in figures(results, candidate).items():
                        seen.setdefault(n, []).append(v)
                cells = []
                for n in sorted(seen):
                    values = [b[n] for b in base]
                    mid = statistics.median(values)
                    limit = max(DEFAULT_TOLERANCE, SPREAD_FACTOR * (max(values) - min(values)) / mid)
                    change = min(seen[n]) / mid - 1
                    bad = change > limit
                    cells.append(f"{n}K {100 * change:+.1f}% (limit {100 * limit:.1f}%){' !' if bad else ''}")
                    if bad:
                        alarms.append(name)
                print(f"host figure {candidate}, baseline {base_name}: {name}: " + ", ".join(cells))
            false = sorted({a for a in alarms if "planted 10" not in a})
            print(f"host figure {candidate}, baseline {base_name}: false alarms in {', '.join(false) or 'none'}")
    delivered()
    stock_wander()


def stock_wander() -> None:
    """How far each stock SDPA's host time per call moved between the two 0% judgments of gate-host-ratio (first
    measurements): (larger - smaller) / smaller, per point."""
    per = {}
    for folder in sorted((CHECK / "gate-host-ratio").glob("planted-0-*")):
        d = pd.read_csv(folder / "results.csv")
        for _, r in d[(d.status == "ok") & d.impl.isin(["floor", "sdpa_cudnn"])].iterrows():
            per.setdefault((r.impl, r.n // 1024), []).append(r.host_ms_per_call)
    for (impl, n), v in sorted(per.items()):
        print(f"stock host time {impl} {n}K over the 0% runs: {min(v):.3f} .. {max(v):.3f} ms (+{100 * (max(v) / min(v) - 1):.1f}%)")


def delivered() -> None:
    """What the 10% host-side plant delivered: the host's time per call, median over every measurement of the 10%
    judgments against that of the 0% ones, as a share of the layer's median host-ahead time (the plant's ask: a
    busy-wait of 10% of the layer time per call, scripts/gate_slowdowns.py --where host)."""
    rows = {}
    for pct in ("0", "10"):
        for folder in sorted((CHECK / "gate-host-ratio").glob(f"planted-{pct}-*")):
            for results in measurements(folder):
                d = pd.read_csv(results)
                for _, r in d[(d.impl == "lighthouse_triton") & (d.status == "ok")].iterrows():
                    rows.setdefault((r.n // 1024, pct), []).append((r.host_ms_per_call, r.host_ahead_median_ms))
    for n in sorted({n for n, _ in rows}):
        base, planted = rows[(n, "0")], rows[(n, "10")]
        added = statistics.median(h for h, _ in planted) - statistics.median(h for h, _ in base)
        layer = statistics.median(a for _, a in base)
        print(
            f"host plant 10% at {n}K: host per call {statistics.median(h for h, _ in base):.3f} -> "
            f"{statistics.median(h for h, _ in planted):.3f} ms (+{added:.3f} ms = {100 * added / layer:.1f}% of the "
            f"layer's {layer:.3f} ms host ahead)"
        )


if __name__ == "__main__":
    main()
