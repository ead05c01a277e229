"""The regression gate's independent yardstick: dense causal attention as plain PyTorch does it, timed here.

Every other figure of the gate goes through project code: the dense cuDNN baseline, the floor and Lighthouse's
own SDPA call all run `lighthouse/sdpa.py`, and all of them are timed by `lighthouse/harness/timing.py`. A slowdown
there moves both sides of every ratio and cancels out. This module shares no code with the project: its inputs
are drawn here (the same generator, seed, order and shapes as `inputs.random_inputs`, so the values equal the
sweep's), it calls `torch.nn.functional.scaled_dot_product_attention` directly (PyTorch picks the backend) and
it has its own CUDA-event timer. The gate divides each Lighthouse point's time by it (`speedup_vs_plain_sdpa`).
The timer has both clocks of the sweep, by its own means: as launched, and host ahead, with a GPU sleep
(torch.cuda._sleep) queued before the begin event that outlasts the host's issue of the call (dense SDPA never
waits on the GPU inside a call, so a fixed sleep does what the sweep's hold kernel does).

One row per (shape, pass), written to `reference.csv` beside the sweep's results.csv.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ..harness.tables import DENSE_MATCH_COLUMNS as SHAPE_COLUMNS, REFERENCE, read_rows, write_rows

#: What the rows are called (the `impl` column) and the file they go to (format: tables.REFERENCE).
IMPL = "plain_torch_sdpa"
FILE = "reference.csv"
_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
_FLUSH_BYTES = 256 * 1024 * 1024


def _percentile(xs: Sequence[float], q: float) -> float:
    xs = sorted(xs)
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _sleep_cycles_per_ms(device) -> float:
    """torch.cuda._sleep cycles per millisecond at the clock the GPU runs now (after the warm-up)."""
    import torch

    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    torch.cuda._sleep(1_000_000)
    end.record()
    end.synchronize()
    return 1_000_000 / max(begin.elapsed_time(end), 1e-3)


def _time(step, device, warmup: int, rep: int, min_rep: int, max_seconds: float) -> Tuple[List[float], List[float]]:
    """Milliseconds per call of `step` on both clocks, (as launched, host ahead), alternating: CUDA events around
    each call with the L2 cache written over before it (outside the timed region); host ahead, a GPU sleep of
    1 ms + 4 x the longest host issue time seen is queued before the begin event. A wall clock on the CPU (one
    clock: host ahead is as launched). Stops at `rep`, or after `max_seconds` once `min_rep` calls are timed."""
    import torch

    cuda = device.type == "cuda"
    flush = torch.empty(_FLUSH_BYTES // 4, dtype=torch.int32, device=device) if cuda else None
    for _ in range(max(1, warmup)):
        step()
    if cuda:
        torch.cuda.synchronize(device)
    cycles_per_ms = _sleep_cycles_per_ms(device) if cuda else 0.0
    samples: List[float] = []
    ahead: List[float] = []
    issue_ms = 0.0
    start = time.perf_counter()
    while len(samples) < rep and not (len(samples) >= min_rep and time.perf_counter() - start >= max_seconds):
        if not cuda:
            t = time.perf_counter()
            step()
            samples.append((time.perf_counter() - t) * 1e3)
            ahead.append(samples[-1])
            continue
        for sleep_ms, into in ((0.0, samples), (1.0 + 4.0 * issue_ms, ahead)):
            flush.zero_()
            if sleep_ms:
                torch.cuda._sleep(max(1, int(sleep_ms * cycles_per_ms)))
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            t = time.perf_counter()
            step()
            issue_ms = max(issue_ms, (time.perf_counter() - t) * 1e3)
            end.record()
            end.synchronize()
            into.append(begin.elapsed_time(end))
    return samples, ahead


def measure_one(
    shape: Dict[str, object],
    pass_: str,
    device,
    seed: int,
    warmup: int = 3,
    rep: int = 20,
    min_rep: int = 3,
    max_seconds: float = 3.0,
) -> dict:
    """One reference row: plain causal SDPA on the shape's q, k, v (B, H, N, D; GQA through enable_gqa), for
    `fwd` (autograd recording), `bwd` (backward alone on one graph) or `fwdbwd`. A failure is a row too."""
    import torch
    import torch.nn.functional as F

    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    row = {
        "impl": IMPL,
        "kind": "reference",
        **{c: shape[c] for c in SHAPE_COLUMNS if c != "pass"},
        "pass": pass_,
        "device": dev.type,
        "status": "ok",
        "reason": "",
        "torch": torch.__version__,
    }
    try:
        b, h, hkv, n, d = (int(shape[c]) for c in ("batch", "heads", "kv_heads", "n", "head_dim"))
        dt = getattr(torch, _DTYPES[str(shape["dtype"])])
        g = torch.Generator(device=dev).manual_seed(seed)
        q = torch.randn(b, h, n, d, generator=g, device=dev, dtype=dt).requires_grad_()
        k = torch.randn(b, hkv, n, d, generator=g, device=dev, dtype=dt).requires_grad_()
        v = torch.randn(b, hkv, n, d, generator=g, device=dev, dtype=dt).requires_grad_()
        grad_out = torch.randn(b, h, n, d, generator=g, device=dev, dtype=dt)
        kw = {"is_causal": True, **({"enable_gqa": True} if h != hkv else {})}
        state = {}

        def clear():
            q.grad = k.grad = v.grad = None

        if pass_ == "fwd":

            def step():
                F.scaled_dot_product_attention(q, k, v, **kw)
        elif pass_ == "fwdbwd":

            def step():
                clear()
                F.scaled_dot_product_attention(q, k, v, **kw).backward(grad_out)
        elif pass_ == "bwd":
            state["out"] = F.scaled_dot_product_attention(q, k, v, **kw)

            def step():
                clear()
                state["out"].backward(grad_out, retain_graph=True)
        else:
            raise ValueError(f"pass must be one of fwd, bwd, fwdbwd, got {pass_!r}")
        samples, ahead = _time(step, dev, warmup, rep, min_rep, max_seconds)
        row.update(
            median_ms=_percentile(samples, 50),
            p20_ms=_percentile(samples, 20),
            p80_ms=_percentile(samples, 80),
            reps=len(samples),
            host_ahead_median_ms=_percentile(ahead, 50),
            host_ahead_p20_ms=_percentile(ahead, 20),
            host_ahead_p80_ms=_percentile(ahead, 80),
        )
    except Exception as err:  # noqa: BLE001 - a reference that cannot run leaves its points unjudged (exit 2)
        oom = "out of memory" in str(err).lower()
        row.update(status="oom" if oom else "error", reason=f"{type(err).__name__}: {' '.join(str(err).split())[:300]}")
    finally:
        q = k = v = grad_out = state = None  # noqa: F841
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    row["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return row


def shapes_of(rows: Iterable[dict]) -> List[Tuple[Dict[str, str], str]]:
    """The distinct (shape, pass) of the Lighthouse rows of a results table, in order."""
    seen: Dict[Tuple[str, ...], Tuple[Dict[str, str], str]] = {}
    for r in rows:
        if r.get("kind", "lighthouse") != "lighthouse":
            continue
        key = tuple(str(r.get(c)) for c in SHAPE_COLUMNS)
        seen.setdefault(key, ({c: r.get(c) for c in SHAPE_COLUMNS}, str(r.get("pass"))))
    return list(seen.values())


def measure(rows: Iterable[dict], device, seed: int, **timing) -> List[dict]:
    """A reference row for every (shape, pass) that the given results rows hold a Lighthouse row of."""
    return [measure_one(shape, pass_, device, seed, **timing) for shape, pass_ in shapes_of(rows)]


def write(path: Path, rows: Sequence[dict]) -> None:
    write_rows(path, REFERENCE, rows)


def read(path: Path) -> Optional[List[dict]]:
    """The finished rows of a reference.csv, or None when there is none."""
    path = Path(path)
    if not path.is_file():
        return None
    return read_rows(path, REFERENCE)[0]
