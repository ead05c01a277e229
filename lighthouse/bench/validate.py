"""`lighthouse-bench validate`: is the Triton path right on this device? Per point, forward and backward on the
same random inputs against the PyTorch path (the executable spec): identical selection and relative errors of
out, dq, dk, dv within the dtype's tolerance (`parity.parity_rows`, the check's correctness gate); then the
Triton path run again (bitwise the same: its kernels use no atomics) and once more with every output buffer
poisoned (NaN, `kernels.alloc.POISON`: an element a kernel forgets to write shows up).

Timings are not its job (`sweep`, `profile`); the one-off acceptance script that also timed the H200 lives
with its data (reports/h200/tools/gpu_validate.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..harness.tables import PARITY_FIGURES, VALIDATE
from . import parity

#: The relative error accepted per dtype: float32 agrees to rounding; half precision to its 8 (bf16) or 11
#: (fp16) mantissa bits through softmax and the backward (the check's PARITY_TOL).
TOLERANCE = {"fp32": 1e-5, "bf16": parity.PARITY_TOL, "fp16": parity.PARITY_TOL}
VALIDATE_FILE = "validate.csv"
#: Points validated when an option is not given: on CUDA the acceptance points of issues 2 and 4 (32K and 128K,
#: GQA, both dtypes); on the CPU (Triton interpreted) one small shape.
DEFAULTS = {
    "cuda": {"seq": "32k,128k", "topk": "1024,4096", "kv_heads": "8,2", "dtype": "bf16,fp32"},
    "cpu": {
        "seq": "512",
        "topk": "128",
        "levels": "2",
        "pooling": "2",
        "heads": "2",
        "head_dim": "32",
        "dtype": "fp32",
    },
}


def _triton_runs(point, device, seed: int) -> Dict[str, bool]:
    """bitwise_repeat, poisoned_equal: two Triton runs, the second with poisoned buffers, against a first."""
    import torch

    from ..kernels import alloc
    from .inputs import random_inputs

    x = random_inputs(point.shape, device, seed)
    cfg = point.config()
    first = parity.run_path("triton", x.q, x.k, x.v, x.grad_out, cfg)
    again = parity.run_path("triton", x.q, x.k, x.v, x.grad_out, cfg)
    poison, alloc.POISON = alloc.POISON, True
    try:
        poisoned = parity.run_path("triton", x.q, x.k, x.v, x.grad_out, cfg)
    finally:
        alloc.POISON = poison
    return {
        "bitwise_repeat": all(torch.equal(a, b) for a, b in zip(first, again)),
        "poisoned_equal": all(torch.equal(a, b) for a, b in zip(first, poisoned)),
    }


def validate_point(point, device, seed: int = 0) -> dict:
    """One row of validate.csv: the parity row of `point` and the two Triton runs; `ok` when all hold."""
    tol = TOLERANCE[point.shape.dtype]
    [row] = parity.parity_rows([point], device, seed=seed, tol=tol)
    row.update(tolerance=tol, bitwise_repeat=None, poisoned_equal=None)
    if row["status"] == "ok":
        row.update(_triton_runs(point, device, seed))
        row["ok"] = bool(row["ok"] and row["bitwise_repeat"] and row["poisoned_equal"])
    return row


def _line(row: dict) -> str:
    errs = " ".join(f"{f}={row[f'rel_{f}']:.2g}" for f in PARITY_FIGURES if row.get(f"rel_{f}") is not None)
    where = (
        f"{row['dtype']} n={row['n']} topk={row['topk']} L={row['levels']} p={row['pooling']} "
        f"{row['scorer']} Hq={row['heads']} Hkv={row['kv_heads']} D={row['head_dim']}"
    )
    if row.get("status") != "ok":
        return f"{where}: {row.get('status')}: {row.get('reason')}"
    return (
        f"{where}: {'ok' if row['ok'] else 'FAILED'} - selection "
        f"{'identical' if row['same_selection'] else 'DIFFERENT'}, rel err {errs} (<= {row['tolerance']:g}), "
        f"repeat {'bitwise' if row['bitwise_repeat'] else 'DIFFERS'}, "
        f"poisoned {'same' if row['poisoned_equal'] else 'DIFFERS'}"
    )


def run_validate(
    points: Sequence,
    device,
    out: Path,
    *,
    seed: int = 0,
    resume: bool = False,
    options: Optional[dict] = None,
    argv: Optional[List[str]] = None,
    console=None,
) -> int:
    """Validate every point into out/validate.csv through the harness's row loop (--out, --resume, Ctrl-C).
    Returns 0 when every point holds, 1 when one does not (or failed to run), 2 when none could run, 130 on
    Ctrl-C."""
    from ..harness.loop import EXIT_FAILED, EXIT_OK, Item, RowLoop

    loop = RowLoop(
        "validate", out, VALIDATE, VALIDATE_FILE, resume=resume, options=options, argv=argv, console=console, show=_line
    )
    kept = loop.prepare(keep=lambda r: str(r.get("ok")) == "True")  # a failed point is validated again

    def cells(p) -> dict:
        return {"impl": "triton vs torch", "pass": "fwdbwd", **p.cells(), "ok": False}

    def rows(p):
        why = p.shape.invalid_reason()
        yield {**cells(p), "status": "invalid", "reason": why} if why else validate_point(p, device, seed)

    todo = [p for p in points if loop.key(cells(p)) not in kept]
    outcome = loop.run(
        (Item(f"n={p.shape.n} {p.shape.dtype} k={p.topk}", lambda p=p: rows(p), cells(p)) for p in todo),
        total=len(todo),
        device=device,
    )
    code = loop.finish(outcome)
    failed = [r for r in loop.rows() if r.get("status") == "ok" and str(r.get("ok")) != "True"]
    if code == EXIT_OK and failed:
        loop.console.print(
            f"[bold red]validate: FAILED - {len(failed)} point(s) disagree with the PyTorch path "
            "or with themselves (see validate.csv)[/]",
            soft_wrap=True,
        )
        return EXIT_FAILED
    if code == EXIT_OK:
        loop.console.print(
            "[bold green]validate: PASSED - the Triton path matches the PyTorch path, repeats "
            "bit for bit and writes every output element[/]",
            soft_wrap=True,
        )
    return code
