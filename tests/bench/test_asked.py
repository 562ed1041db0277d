"""Generated incidents asked at another time or coarsened keep their faults and truth."""

from __future__ import annotations

import numpy as np
import pytest

from perfintel.analysis.signals import Grid, SeriesInput
from perfintel.bench.asked import (
    ask_time,
    asked,
    coarsen_values,
    coarsened,
    later_profile,
    transform,
)
from perfintel.bench.incidents import (
    DEFAULT_PROFILE,
    VARIANT_PROFILE,
    Incident,
    generate_incident,
)
from perfintel.model import label_set

MIN = 60_000
NAN = np.nan


def _incident(values: list[list[float]], counters: list[bool], step_ms: int = MIN) -> Incident:
    series = [
        SeriesInput(label_set({"__name__": f"m{i}"}), np.array(v, dtype=np.float64), c)
        for i, (v, c) in enumerate(zip(values, counters, strict=True))
    ]
    n = len(values[0])
    return Incident(
        seed=1,
        profile="hand",
        kind="level_shift",
        start_ms=1_000 * MIN,
        step_ms=step_ms,
        series=series,
        root=1,
        onset_ms=1_000 * MIN + 3 * step_ms + step_ms // 2,
        time_ms=1_000 * MIN + (n - 3) * step_ms,
        services=["a"],
        callees=[[]],
        affected=[1],
        background=[0],
    )


def test_gauges_average_their_scraped_samples_counters_keep_the_last() -> None:
    gauge = np.array([1.0, 3.0, NAN, 5.0, NAN, NAN, 7.0])
    assert np.array_equal(coarsen_values(gauge, 2, False), [2.0, 5.0, NAN], equal_nan=True)
    counter = np.array([10.0, 12.0, 15.0, NAN, 20.0, 30.0, 99.0])
    # a scrape every 2 steps sees 12, misses the one at NaN, sees 30; the 7th is no whole group
    assert np.array_equal(coarsen_values(counter, 2, True), [12.0, NAN, 30.0], equal_nan=True)
    assert np.array_equal(coarsen_values(gauge, 1, False), gauge, equal_nan=True)


def test_coarsened_incident_keeps_truth_and_stamps_groups_at_their_last_step() -> None:
    inc = _incident([[1.0, 2, 3, 4, 5, 6, 7, 8], [0.0, 1, 2, 3, 4, 5, 6, 7]], [False, True])
    out = coarsened(inc, 3)
    assert out.step_ms == 3 * MIN and out.start_ms == inc.start_ms + 2 * MIN
    assert np.array_equal(out.series[0].values, [2.0, 5.0])
    assert np.array_equal(out.series[1].values, [2.0, 5.0])
    assert [s.counter for s in out.series] == [False, True]
    assert (out.root, out.affected, out.background) == (inc.root, inc.affected, inc.background)
    assert (out.onset_ms, out.time_ms) == (inc.onset_ms, inc.time_ms)
    # the coarse sample the alert time reads is the last one whole at that time (no later data)
    grid = Grid(out.start_ms, out.step_ms, 2)
    alert_step = (inc.time_ms - inc.start_ms) // MIN  # fine step 5
    assert grid.time(grid.index(inc.time_ms)) <= inc.time_ms
    assert grid.index(inc.time_ms) == (alert_step - 2) // 3
    assert coarsened(inc, 1) is inc


def test_generated_incident_coarsened_has_the_same_fault() -> None:
    inc = generate_incident(4, DEFAULT_PROFILE)
    out = coarsened(inc, 5)
    n = len(inc.series[0].values) // 5
    root = inc.series[inc.root]
    assert len(out.series) == len(inc.series) and len(out.series[0].values) == n
    want = (
        root.values[4 : 5 * n : 5]
        if root.counter
        else root.values[: 5 * n].reshape(n, 5).mean(axis=1)
    )
    assert np.allclose(out.series[out.root].values, want)


def test_asked_moves_only_the_time_asked() -> None:
    inc = _incident([[1.0] * 10, [2.0] * 10], [False, False])
    last = inc.start_ms + 9 * MIN
    assert ask_time(inc, "at-alert") == inc.time_ms == inc.start_ms + 7 * MIN
    assert ask_time(inc, "end") == last
    assert ask_time(inc, "onset") == inc.start_ms + 3 * MIN  # snapped down to its step
    assert ask_time(inc, "+2m") == last
    assert asked(inc, "+3m") is None  # the data end two minutes after the alert
    out = asked(inc, "end")
    assert out is not None and out.time_ms == last
    assert (out.onset_ms, out.root, out.series) == (inc.onset_ms, inc.root, inc.series)
    with pytest.raises(ValueError):
        ask_time(inc, "later")
    with pytest.raises(ValueError):
        transform("5m")


def test_later_profile_gives_the_same_draws_more_data_after_the_alert() -> None:
    for profile in (DEFAULT_PROFILE, VARIANT_PROFILE):
        for seed in (0, 5):
            inc = generate_incident(seed, profile)
            later = generate_incident(seed, later_profile(profile, 10))
            end = lambda i: i.start_ms + i.step_ms * (len(i.series[0].values) - 1)  # noqa: E731
            assert end(later) - later.time_ms >= 10 * MIN
            assert (later.kind, later.root, later.affected) == (inc.kind, inc.root, inc.affected)
            assert asked(later, "+10m") is not None
