"""The dense baselines, one entry each: a new baseline is one more entry of REGISTRY.

An entry says what it is called (the option value and the CSV `impl`), whether it can run here, how to build the
call to time, and its colour in the charts. Pure Python at import (torch is imported by the functions), so the
tables and the CLI can list the baselines before torch is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence


@dataclass(frozen=True)
class Baseline:
    """One dense baseline.

    name: the option value (--baseline); csv: the CSV `impl` and the `speedup_vs_<csv>` column; colour: its
    line in the charts; sdpa_backend: the SDPA backend it forces (None: not an SDPA backend); unavailable():
    why it cannot run in this process at all (None: it can); default(device, dtypes, probe): whether a sweep
    runs it by default; build(x, bench, backend, graphed, retain): the call to time; every_failure_unsupported:
    a failure of this baseline is `unsupported` (the code under test is not the baseline)."""

    name: str
    csv: str
    colour: str
    build: Callable
    sdpa_backend: Optional[str] = None
    unavailable: Callable[[], Optional[str]] = lambda: None
    default: Callable = lambda device, dtypes, probe: False
    every_failure_unsupported: bool = False


def _sdpa(backend: str, colour: str) -> Baseline:
    def build(x, bench, sdpa_backend, graphed: bool, retain: bool):
        if graphed:
            from ..cuda_graph import graph_dense

            return ("graphed", lambda: graph_dense(x.q, x.k, x.v, sdpa_backend, retain_graph=retain))
        from ..sdpa import dense_attention

        return ("call", lambda: dense_attention(x.q, x.k, x.v, sdpa_backend))

    return Baseline(
        backend,
        f"sdpa_{backend}",
        colour,
        build,
        sdpa_backend=backend,
        default=lambda device, dtypes, probe: any(probe(backend, device, dt) for dt in dtypes),
    )


def flex_unavailable_reason() -> Optional[str]:
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention  # noqa: F401
    except Exception as err:  # noqa: BLE001 - any import failure means: not in this torch
        return f"FlexAttention is not available in this torch ({err})"
    return None


def _flex_build(x, bench, sdpa_backend, graphed: bool, retain: bool):
    from .failures import Unsupported

    if graphed:
        raise Unsupported("--cuda-graph: FlexAttention is compiled by torch.compile, not graphed here")
    s = x.q.shape
    flex, mask, gqa = bench.flex(), bench.block_mask(s[2]), x.q.shape[1] != x.k.shape[1]
    return ("call", lambda: flex(x.q, x.k, x.v, block_mask=mask, enable_gqa=gqa))


#: In the order they are measured and charted.
REGISTRY = (
    _sdpa("cudnn", "#000000"),
    _sdpa("flash", "#5a5a5a"),
    _sdpa("efficient", "#8c564b"),
    _sdpa("math", "#a0a0a0"),
    # FlexAttention counts by default on CUDA only: compiling it on the CPU takes long and nobody deploys that.
    Baseline(
        "flex",
        "flex",
        "#bcbd22",
        _flex_build,
        unavailable=flex_unavailable_reason,
        default=lambda device, dtypes, probe: device.type == "cuda" and flex_unavailable_reason() is None,
        every_failure_unsupported=True,
    ),
)
BY_NAME: Dict[str, Baseline] = {b.name: b for b in REGISTRY}
BY_CSV: Dict[str, Baseline] = {b.csv: b for b in REGISTRY}


def defaults(device, dtypes: Sequence[str], probe) -> list:
    """The baselines a sweep runs when --baseline is not given: every one that runs on this device in one of
    the dtypes (probe(backend, device, dtype) tries a tiny call)."""
    return [b.name for b in REGISTRY if b.default(device, dtypes, probe)]


def colour(csv: str, fallback: str = "gray") -> str:
    return BY_CSV[csv].colour if csv in BY_CSV else fallback


def short(csv: str) -> str:
    """The baseline's option name for a CSV impl (sdpa_cudnn -> cudnn); other impls unchanged."""
    return BY_CSV[csv].name if csv in BY_CSV else csv
