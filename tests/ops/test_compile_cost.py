"""The kernels stay cheap to compile: no sorting network in their Triton IR (issue 13, PERF_NOTES step 7).

`tl.sort` and `tl.topk` build a bitonic network on a tensor of rank log2(n) (`tensor<2x2x...x2>`), fully
unrolled; the selection kernel's seven such sorts took 58 s of a 69 s cold compile. The kernels' IR is read
for sm_90 without a GPU (scripts/compile_times.py --ranks, in a process without TRITON_INTERPRET, since
the interpreter replaces the kernels); the highest tensor rank is 3 (the gather's rows x tokens x dims).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

ROOT = Path(__file__).resolve().parents[2]


def test_no_kernel_builds_a_sorting_network():
    """Catches a tl.sort / tl.topk (or any high-rank reshape) put back into a kernel: the cold first call
    would go back from seconds to a minute per configuration."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "compile_times.py"), "--ranks", "--config", "98304,1536,3,4"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = re.findall(r"^rank (\d+) (\w+)", proc.stdout, re.M)
    assert {name for _, name in ranks} >= {"_norm_scores_kernel", "_select_kernel", "_gather_kernel", "_pull_kernel"}
    assert all(int(r) <= 3 for r, _ in ranks), proc.stdout
