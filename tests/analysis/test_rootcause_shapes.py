"""Shape tests counted in time: a pool at its cap on five-minute samples is a saturation."""

from __future__ import annotations

import numpy as np
import pytest

from perfintel.analysis.rootcause import rank_root_causes
from perfintel.analysis.rootcause.shapes import samples, shape
from perfintel.analysis.signals import Grid, SeriesInput
from perfintel.model import label_set

FIVE_MIN = 300_000


def _pool_and_latency(step_ms: int, n: int, t: int) -> list[SeriesInput]:
    """A pool that hits its cap (50) one step before ``t`` and stays there; the latency of
    the same instance rises (by more sigmas) in that step and stays up; a quiet CPU."""
    rng = np.random.default_rng(3)
    pool = 20.0 + rng.normal(0, 1.0, n)
    pool[t - 1 :] = 50.0
    latency = 0.1 + rng.normal(0, 0.002, n)
    latency[t - 1 :] += 0.2
    cpu = 1.0 + rng.normal(0, 0.05, n)
    inst = {"service": "svc-a", "instance": "svc-a-0:9100"}
    return [
        SeriesInput(label_set({**inst, "__name__": "request_latency_seconds"}), latency),
        SeriesInput(label_set({**inst, "__name__": "pool_in_use"}), pool),
        SeriesInput(label_set({**inst, "__name__": "memory_bytes"}), cpu),
    ]


def test_pool_stuck_at_its_cap_on_five_minute_samples_ranks_before_its_latency() -> None:
    # 5 h of 5-minute samples, asked at step 50: the cap is held for 4 samples (20 minutes)
    # up to the end of the data, fewer than the 5 samples the test used to need
    n, t = 54, 50
    series = _pool_and_latency(FIVE_MIN, n, t)
    causes = rank_root_causes(t * FIVE_MIN, series, Grid(0, FIVE_MIN, n))
    assert [c.index for c in causes[:2]] == [1, 0]
    assert causes[0].shape == "saturation"


@pytest.mark.parametrize("step_s", [15, 30, 60])
def test_counts_at_a_minute_and_finer_are_the_samples_they_were(step_s: int) -> None:
    step = step_s * 1000
    assert (samples(5, step, 1), samples(8, step, 4), samples(5, step, 2)) == (5, 8, 5)


def test_counts_on_coarse_steps_are_minutes_floored() -> None:
    assert (samples(5, 120_000, 1), samples(8, 120_000, 4), samples(5, 120_000, 2)) == (3, 4, 3)
    assert (samples(5, FIVE_MIN, 1), samples(8, FIVE_MIN, 4), samples(5, FIVE_MIN, 2)) == (1, 4, 2)


def test_a_twenty_minute_shift_on_five_minute_samples_is_no_spike() -> None:
    z = np.r_[np.zeros(10), np.full(4, 9.0), np.zeros(3)]
    values = 1.0 + z
    assert shape(z, 10, values, FIVE_MIN) == "shift"
    assert shape(z, 10, values, 60_000) == "spike"  # four minutes is a spike
