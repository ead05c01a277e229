"""TEST-ONLY: plant a requested share of the layer's time inside one of its kernels, and measure what it delivered.

The spin of kernels/plant.py is set in SM cycles per program, and what that costs the layer depends on how many
waves of programs the kernel runs at a point: so each point is calibrated. The layer's fwd+bwd time (host-ahead
clock, the one the gate judges) is measured without a plant, then with trial spins until one moves it by a few
percent; the cost per cycle gives the cycles for each requested share, corrected by the ratio of asked to
delivered until a sample lands within 5% of the ask. What a plant delivered is then measured afresh (the median of
3), not read off the sample the search stopped on. Every `Plant` carries what was asked and what was delivered.
Used by scripts/gate_kernel_plant.py and tests/bench/test_kernel_plant.py.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence

from ..kernels.plant import PLANT_ENV, switch_value

#: First trial spin (cycles per program); multiplied by TRIAL_STEP until the layer moves by TRIAL_MIN_GAIN.
TRIAL_CYCLES, TRIAL_STEP, TRIAL_MIN_GAIN, MAX_CYCLES = 2048, 4, 0.03, 1 << 30
#: Corrections of a level's cycles at most, stopping once a sample is within CLOSE of the asked cost.
CORRECTIONS, CLOSE = 4, 0.05


@dataclass
class Plant:
    n: int
    kernel: str
    requested_pct: float
    cycles: int
    base_ms: float
    planted_ms: float

    @property
    def delivered_pct(self) -> float:
        return (self.planted_ms / self.base_ms - 1.0) * 100.0


@contextmanager
def planted(kernel: str, cycles_by_n: Dict[int, int]) -> Iterator[None]:
    """Set the test-only switch for the block (unset when every entry is 0), then put back what was there."""
    before = os.environ.get(PLANT_ENV)
    value = switch_value(kernel, cycles_by_n)
    if value:
        os.environ[PLANT_ENV] = value
    else:
        os.environ.pop(PLANT_ENV, None)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(PLANT_ENV, None)
        else:
            os.environ[PLANT_ENV] = before


def calibrate(
    time_layer: Callable[[], float], n: int, kernel: str, pcts: Sequence[float], base_samples: int = 3
) -> List[Plant]:
    """Plants of `pcts` percent of the layer's time at sequence length n in `kernel`. time_layer(): the layer's
    time in ms under whatever switch is set (the median of its own repetitions)."""

    def at(cycles: int) -> float:
        with planted(kernel, {n: cycles}):
            return time_layer()

    def median_at(cycles: int) -> float:
        return sorted(at(cycles) for _ in range(base_samples))[base_samples // 2]

    base = median_at(0)
    cycles, gain = TRIAL_CYCLES, 0.0
    while cycles <= MAX_CYCLES:
        gain = at(cycles) - base
        if gain >= TRIAL_MIN_GAIN * base:
            break
        cycles *= TRIAL_STEP
    if gain <= 0:
        raise RuntimeError(
            f"a spin of {cycles} cycles per program in the {kernel} kernel did not slow the layer at "
            f"N={n} (base {base:.4g} ms): the plant does not reach this kernel"
        )
    per_cycle = gain / cycles
    plants = []
    for pct in pcts:
        if pct <= 0:
            plants.append(Plant(n, kernel, pct, 0, base, base))
            continue
        want = pct / 100.0 * base
        c = max(1, round(want / per_cycle))
        for _ in range(CORRECTIONS):  # by the ratio of asked to delivered: waves make the cost not quite linear
            got = at(c)
            if got <= base or abs(got - base - want) <= CLOSE * want:
                break
            c = max(1, round(c * want / (got - base)))
        # what it delivers, measured afresh: the sample the search stopped on was picked for being close
        delivered = median_at(c)
        plants.append(Plant(n, kernel, pct, c, base, delivered))
    return plants


def layer_timer(point, device, seed: int = 0, max_seconds: float = 1.0) -> Callable[[], float]:
    """time_layer for `calibrate`: the Triton layer's fwd+bwd at `point` on its own inputs (made once), host-ahead
    median (as launched where the host-ahead clock cannot run)."""
    from .. import lighthouse_attention
    from .inputs import random_inputs
    from ..harness.timing import measure

    x = random_inputs(point.shape, device, seed)

    cfg = point.config("triton")  # the point's own config: its rope placement travels with it

    def run():
        return lighthouse_attention(x.q, x.k, x.v, config=cfg)

    def time_layer() -> float:
        t = measure(
            run, "fwdbwd", x.leaves, x.grad_out, device=device, warmup=2, rep=30, min_rep=5, max_seconds=max_seconds
        )
        ahead: Optional[float] = t.host_ahead_median_ms
        return ahead if ahead is not None else t.median_ms

    return time_layer
