"""Durations counted in time (options, off by default): the slack after the asked time."""

from __future__ import annotations

import numpy as np

from perfintel.analysis.rootcause import rank_root_causes
from perfintel.analysis.rootcause.durations import in_time, ramp_clip, spike_return
from perfintel.analysis.rootcause.parameters import RootCauseParams
from perfintel.analysis.signals import Grid, SeriesInput
from perfintel.model import label_set

QUARTER = 15_000


def _pool_filling_after_the_asked_time() -> tuple[int, int, list[SeriesInput]]:
    """4 h of 15-second samples, asked 12 minutes before the end: a pool hits its cap 30 s
    after the asked time and its latency follows; another service's CPU shifted 20 minutes
    before (smaller)."""
    n = 4 * 60 * 4
    t = n - 4 * 12
    rng = np.random.default_rng(5)
    pool = 20.0 + rng.normal(0, 1.0, n)
    pool[t + 2 :] = 50.0
    latency = 0.1 + rng.normal(0, 0.002, n)
    latency[t + 3 :] += 0.2
    cpu = 5.0 + rng.normal(0, 0.2, n)
    cpu[t - 4 * 20 :] += 3.0
    a = {"service": "svc-a", "instance": "svc-a-0:9100"}
    b = {"service": "svc-b", "instance": "svc-b-0:9100"}
    series = [
        SeriesInput(label_set({**a, "__name__": "request_latency_seconds"}), latency),
        SeriesInput(label_set({**a, "__name__": "pool_in_use"}), pool),
        SeriesInput(label_set({**b, "__name__": "cpu_usage"}), cpu),
    ]
    return n, t, series


def test_a_change_30_s_after_the_asked_time_counts_with_a_minute_of_slack() -> None:
    n, t, series = _pool_filling_after_the_asked_time()
    grid = Grid(0, QUARTER, n)
    # one step of slack is 15 s here: the pool is late and the other service's CPU ranks first
    assert rank_root_causes(t * QUARTER, series, grid)[0].index == 2
    on = RootCauseParams(slack_minutes=1.0)
    assert rank_root_causes(t * QUARTER, series, grid, params=on)[0].index == 1


def test_durations_are_the_old_steps_at_one_minute_and_off() -> None:
    off, on = (
        RootCauseParams(),
        RootCauseParams(slack_minutes=1.0, tolerance_minutes=1.0, spike_return_minutes=2.0),
    )
    for step in (15_000, 60_000, 300_000):
        assert in_time(off, step) == off
        assert ramp_clip(off, step) == (1.0, 3.0)
        assert spike_return(off, step) == 2
    assert in_time(on, 60_000).onset_slack == 1
    assert ramp_clip(on, 60_000) == (1.0, 3.0)
    assert spike_return(on, 60_000) == 2
    assert in_time(on, 15_000).onset_slack == 4
    assert ramp_clip(on, 15_000) == (4.0, 12.0)
    assert spike_return(on, 15_000) == 8
    assert in_time(on, 300_000).onset_slack == 1
    assert spike_return(on, 300_000) == 1
