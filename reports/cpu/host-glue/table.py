"""PERF_NOTES step 15's table, recomputed from host_time_stubbed.csv: per (N, k, pass, stage) and build, the median
over the three runs of each run's median host time, in us.

    python reports/cpu/host-glue/table.py
"""

from pathlib import Path

import pandas as pd

d = pd.read_csv(Path(__file__).with_name("host_time_stubbed.csv"))
med = d.groupby(["n", "topk", "pass", "stage", "build"]).host_ms.median().unstack("build") * 1e3
for (n, topk), g in med.groupby(level=["n", "topk"]):
    print(f"N={n}, k={topk} (us): stage, before, after")
    for (_, _, pas, stage), r in g.iterrows():
        print(f"  {pas} {stage}: {r['before']:.1f} -> {r['after']:.1f}")
