"""A change that began inside the baseline: its history of outliers is what came before it."""

from __future__ import annotations

import numpy as np

from perfintel.analysis.rootcause import RootCauseParams, rank_root_causes
from perfintel.analysis.rootcause.rise import before_window, rise_start
from perfintel.analysis.signals import Grid, SeriesInput
from perfintel.model import label_set

STEP = 60_000
N = 240
GRID = Grid(0, STEP, N)
T = 220 * STEP  # the incident time: the window opens at 190, the baseline at 10
KW = {"window_ms": 30 * STEP, "baseline_ms": 180 * STEP}


def _pool_filled_before_the_window(slow: int = 200, jump: float = 0.0) -> list[SeriesInput]:
    """A pool of 15 ± 2 connections that began to fill at 165 (inside the baseline), reached its
    cap of 50 at 180 and holds it; the latency of the same pod ramps from ``slow`` (and jumps
    by ``jump`` there)."""
    rng = np.random.default_rng(3)
    pool = np.round(15 + rng.normal(0, 2, N))
    pool[165:180] = np.round(np.linspace(17, 50, 15))
    pool[180:] = 50.0
    latency = 0.1 + rng.normal(0, 0.002, N)
    latency[slow:] += jump + 0.004 * np.arange(N - slow)
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


def test_a_spike_begun_just_before_the_window_that_came_back_is_not_a_rise() -> None:
    """Its start sets the baseline's tail too, but the series came back in the window: not a
    rise that runs on, so the tail test stands."""
    series = _pool_filled_before_the_window()
    pool = np.round(15 + np.random.default_rng(5).normal(0, 2, N))
    pool[188:196] = 45.0  # two steps in the baseline, six in the window, then back
    series = [SeriesInput(series[0].labels, pool), series[1]]
    off = rank_root_causes(T, series, GRID, params=RootCauseParams(rise=0.0), **KW)
    assert 0 not in [c.index for c in off]
    on = rank_root_causes(T, series, GRID, params=RootCauseParams(rise=0.1), **KW)
    assert 0 not in [c.index for c in on]


def test_before_window_pads_the_paths_of_changes_dated_there() -> None:
    z = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    early = [None, np.array([7.0, 8.0, 4.0, 5.0, 6.0])]
    ext, onset = before_window(z, np.array([1, -2]), early)
    assert ext.tolist() == [[0.0, 0.0, 1.0, 2.0, 3.0], [7.0, 8.0, 4.0, 5.0, 6.0]]
    assert onset.tolist() == [3, 0]


def test_a_pool_full_before_its_latency_rose_before_the_window_explains_it() -> None:
    """The latency jumped at 186, before the window too (dated there by ``lead``): exhaustion
    reads both paths before the window, where the pool was already full."""
    series = _pool_filled_before_the_window(slow=186, jump=0.05)
    on = rank_root_causes(T, series, GRID, params=RootCauseParams(rise=0.1), **KW)
    assert [c.index for c in on] == [0, 1]
    assert on[1].onset_ms < 190 * STEP  # the latency is dated before the window
    assert [f.index for f in on[0].followers] == [1]
