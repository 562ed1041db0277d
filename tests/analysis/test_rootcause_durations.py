"""Durations counted in time (options, off by default): the slack after the asked time."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from perfintel.analysis.rootcause import rank_root_causes
from perfintel.analysis.rootcause.durations import (
    in_time,
    ramp_clip,
    spike_return,
    symptom_reach,
    to_first_symptom,
)
from perfintel.analysis.rootcause.parameters import RootCauseParams
from perfintel.analysis.rootcause.words import role_codes
from perfintel.analysis.signals import Grid, SeriesInput
from perfintel.model import label_set

QUARTER = 15_000


def _pool_filling(
    n: int, before_end: int, pool: int, latency: int, cpu: int
) -> tuple[int, int, list[SeriesInput]]:
    """``n`` steps, asked ``before_end`` steps before the end (the step returned with them): a
    pool hits its cap ``pool`` steps after the asked time and its latency follows ``latency``
    steps after it; another service's CPU shifted ``cpu`` steps before it (smaller)."""
    t = n - before_end
    rng = np.random.default_rng(5)
    in_use = 20.0 + rng.normal(0, 1.0, n)
    in_use[t + pool :] = 50.0
    slow = 0.1 + rng.normal(0, 0.002, n)
    slow[t + latency :] += 0.2
    busy = 5.0 + rng.normal(0, 0.2, n)
    busy[t - cpu :] += 3.0
    a = {"service": "svc-a", "instance": "svc-a-0:9100"}
    b = {"service": "svc-b", "instance": "svc-b-0:9100"}
    series = [
        SeriesInput(label_set({**a, "__name__": "request_latency_seconds"}), slow),
        SeriesInput(label_set({**a, "__name__": "pool_in_use"}), in_use),
        SeriesInput(label_set({**b, "__name__": "cpu_usage"}), busy),
    ]
    return n, t, series


def test_a_change_30_s_after_the_asked_time_counts_with_a_minute_of_slack() -> None:
    # 4 h of 15-second samples, asked 12 minutes before the end: the pool hits its cap 30 s
    # after the asked time, its latency 15 s later; the CPU shifted 20 minutes before
    n, t, series = _pool_filling(4 * 60 * 4, 4 * 12, pool=2, latency=3, cpu=4 * 20)
    grid = Grid(0, QUARTER, n)
    # one step of slack is 15 s here: the pool is late and the other service's CPU ranks first
    # (without symptom_minutes, on by default: the pool began before the first symptom)
    off = RootCauseParams(symptom_minutes=0.0)
    assert rank_root_causes(t * QUARTER, series, grid, params=off)[0].index == 2
    on = replace(off, slack_minutes=1.0)
    assert rank_root_causes(t * QUARTER, series, grid, params=on)[0].index == 1
    assert rank_root_causes(t * QUARTER, series, grid)[0].index == 1  # the defaults


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


def test_a_cause_may_begin_up_to_the_first_symptom_after_the_asked_time() -> None:
    # 4 h of minutes, asked when a fault begins (its injection), 20 minutes before the end: the
    # pool hits its cap 4 minutes later and its latency a minute after; the CPU shifted 20
    # minutes before the asked time
    n, t, series = _pool_filling(4 * 60, 20, pool=4, latency=5, cpu=20)
    grid = Grid(0, 60_000, n)
    off = RootCauseParams(slack_minutes=0.0, symptom_minutes=0.0)
    on = replace(off, symptom_minutes=10.0)
    # asked at the injection: the pool began 4 minutes later, past the slack, so it is late
    assert rank_root_causes(t * 60_000, series, grid, params=off)[0].index == 2
    # a cause begins no later than the first symptom: the latency, a minute after the pool
    assert rank_root_causes(t * 60_000, series, grid, params=on)[0].index == 1
    # capped: the latency began 5 minutes after the asked time, 3 minutes do not reach it
    capped = replace(off, symptom_minutes=3.0)
    assert rank_root_causes(t * 60_000, series, grid, params=capped)[0].index == 2
    # asked at the alert (the latency had risen) the slack stays: the same ranking either way
    alert = (t + 7) * 60_000
    assert [c.index for c in rank_root_causes(alert, series, grid, params=on)] == [
        c.index for c in rank_root_causes(alert, series, grid, params=off)
    ]


def test_the_slack_opens_only_to_a_symptom_after_the_asked_time() -> None:
    p = RootCauseParams(symptom_minutes=5.0)
    names = ("latency_seconds", "cpu_usage", "errors_total", "request_latency_seconds")
    roles = role_codes(label_set({"__name__": n}) for n in names)
    onset = np.array([-3, 2, 4, 9])
    changed = np.ones(4, dtype=bool)
    assert to_first_symptom(p, 60_000, 0, onset, changed, roles).onset_slack == 4
    assert to_first_symptom(p, 60_000, 0, onset, onset > 4, roles).onset_slack == 5  # capped
    assert to_first_symptom(p, 60_000, 0, onset, onset < 3, roles) == p  # none after
    off = replace(p, symptom_minutes=0.0)
    assert to_first_symptom(off, 60_000, 0, onset, changed, roles) == off
    assert symptom_reach(p, 15_000) == 20 and symptom_reach(p, 300_000) == 1
