"""A change that began inside the baseline: its history of outliers is what came before it."""

from __future__ import annotations

import numpy as np

from perfintel.analysis.rootcause import RootCauseParams, rank_root_causes
from perfintel.analysis.rootcause_rise import rise_start
from perfintel.analysis.signals import Grid, SeriesInput
from perfintel.model import label_set

STEP = 60_000
N = 240
GRID = Grid(0, STEP, N)
T = 220 * STEP  # the incident time: the window opens at 190, the baseline at 10
KW = {"window_ms": 30 * STEP, "baseline_ms": 180 * STEP}


def _pool_filled_before_the_window() -> list[SeriesInput]:
    """A pool of 15 ± 2 connections that began to fill at 165 (inside the baseline), reached its
    cap of 50 at 180 and holds it; the latency of the same pod ramps from 200."""
    rng = np.random.default_rng(3)
    pool = np.round(15 + rng.normal(0, 2, N))
    pool[165:180] = np.round(np.linspace(17, 50, 15))
    pool[180:] = 50.0
    latency = 0.1 + rng.normal(0, 0.002, N)
    latency[200:] += 0.004 * np.arange(N - 200)
    pod = {"pod": "user-1", "service": "user"}
    return [
        SeriesInput(label_set({"__name__": "db_client_connections_in_use", **pod}), pool),
        SeriesInput(label_set({"__name__": "http_request_duration_seconds", **pod}), latency),
    ]


def test_the_final_run_holding_the_largest_z_is_found() -> None:
    z = np.array([0.2, -1.0, 3.0, 0.1, 1.6, 4.0, 6.0, 5.5])
    assert rise_start(z, 1.0, 1.5) == 4
    assert rise_start(z, -1.0, 1.5) is None  # nothing departs downward at the end
    z[2] = 9.0  # the largest |z| is an older outlier, not the final run
    assert rise_start(z, 1.0, 1.5) is None


def test_a_pool_filled_in_the_baseline_is_a_change_dated_where_it_began() -> None:
    series = _pool_filled_before_the_window()
    off = rank_root_causes(T, series, GRID, params=RootCauseParams(rise=0.0), **KW)
    assert 0 not in [c.index for c in off]  # its own rise set the baseline's tail
    on = rank_root_causes(T, series, GRID, params=RootCauseParams(rise=0.1), **KW)
    assert on[0].index == 0
    assert 163 * STEP <= on[0].onset_ms <= 168 * STEP
    assert [f.index for f in on[0].followers] == [1]


def test_a_series_that_came_back_in_the_baseline_is_not_rescued() -> None:
    """The baseline's largest |z| is an old excursion that ended: the tail test stands."""
    series = _pool_filled_before_the_window()
    pool = series[0].values.copy()
    pool[100:110] = 80.0  # an older, larger excursion that came back
    pool[165:] = np.round(15 + np.random.default_rng(4).normal(0, 2, N - 165))
    pool[195:] = 50.0  # a smaller step in the window
    series = [SeriesInput(series[0].labels, pool), series[1]]
    on = rank_root_causes(T, series, GRID, params=RootCauseParams(rise=0.1), **KW)
    assert 0 not in [c.index for c in on]
