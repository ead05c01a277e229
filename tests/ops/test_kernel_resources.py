"""scripts/kernel_resources.py: the gather and pull kernels compiled offline for sm_90 (no GPU needed), run in a
child process without TRITON_INTERPRET (the interpreter's kernels cannot be compiled)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _table(*args):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "kernel_resources.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    if run.returncode and "ptxas" in run.stderr and "not found" in run.stderr.lower():
        pytest.skip("Triton's bundled ptxas is missing")
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.strip().splitlines()
    head = lines[0].split()
    return {(row[0], row[1]): dict(zip(head, row)) for row in (line.split() for line in lines[1:])}


def test_post_mode_kernels_compile_without_libdevice_trigonometry():
    """The rotation's cos/sin must stay straight-line float32: libdevice's __nv_cosf/__nv_sinf (what tl.cos and
    tl.sin compile to) carried float64 and branches into the pull and made it 10x longer (PERF_NOTES step 12)."""
    small = ("--n", "4096", "--topk", "256", "--heads", "4", "--kv-heads", "2", "--head-dim", "64")
    rows = _table(*small, "--stage", "gather", "--stage", "pool_bwd")
    for stage in ("gather", "pool_bwd"):
        post = rows[("post", stage)]
        assert post["libdevice_sin_cos"] == "0" and post["f64"] == "0", (stage, post)
    assert int(rows[("post", "pool_bwd")]["stack"]) == 0, "the post-mode pull spills"
    assert int(rows[("post", "pool_bwd")]["regs"]) <= 128, rows[("post", "pool_bwd")]


def test_gather_does_not_spill_at_the_paper_point():
    """At 96K, k=1536, L=3, p=4, H=8, D=128 the coarsest level's (32 rows, 4 tokens, 128 columns) load spilled
    424-432 bytes a thread at 255 registers (8 warps/SM); it is now pooled as separate (rows, D) loads (PERF_NOTES
    step 14). Spills or a fall below 12 warps/SM here mean the restructuring was undone."""
    rows = _table("--stage", "gather")
    for rope in ("pre", "post"):
        row = rows[(rope, "gather")]
        assert (row["stack"], row["STL"], row["LDL"]) == ("0", "0", "0"), (rope, row)
        assert int(row["warps/SM"]) >= 12, (rope, row)
