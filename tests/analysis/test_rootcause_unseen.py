"""Missed scrapes: a counter's increase over a gap is kept, an onset in a gap is dated in it."""

from __future__ import annotations

import numpy as np

from perfintel.analysis.rootcause.unseen import (
    counted_over_gaps,
    gap_dated,
    spread_increase,
    unseen_span,
)
from perfintel.analysis.signals import SeriesInput, as_matrix
from perfintel.model import label_set

NAN = np.nan


def _counter(values: list[float]) -> SeriesInput:
    return SeriesInput(label_set({"__name__": "c_total"}), np.array(values), True)


def test_spread_increase_shares_a_gaps_increase_evenly_and_reads_a_drop_as_a_restart() -> None:
    out = spread_increase(np.array([NAN, 0.0, 1.0, NAN, NAN, 31.0, 32.0, 2.0, NAN]))
    assert np.array_equal(out, [NAN, NAN, 1.0, 10.0, 10.0, 10.0, 1.0, 2.0, NAN], equal_nan=True)


def test_a_burst_counted_while_missed_is_kept_not_interpolated_away() -> None:
    # 1 or 2 a step, a burst of about 60 counted in three missed scrapes
    v = np.cumsum(np.r_[0.0, np.tile([1.0, 2.0], 11)])
    v[10:13] = NAN
    v[13:] += 60.0
    s = _counter(list(v))
    x, usable = as_matrix([s])
    assert x[0].max() <= 2  # interpolated: the burst is gone
    out = counted_over_gaps(x, usable, [s])
    assert np.isclose(out[0, 10:14].sum(), v[13] - v[9]) and out[0, 10:14].min() > 15
    whole = _counter(list(np.arange(20.0)))
    xw, uw = as_matrix([whole])
    assert counted_over_gaps(xw, uw, [whole]) is xw  # nothing missed: untouched


def test_an_onset_in_a_gap_is_dated_inside_it() -> None:
    g = SeriesInput(label_set({"__name__": "g"}), np.array([0.0, 0, NAN, NAN, NAN, 5, 5, 5]))
    assert unseen_span(g, 2) == (2, 5) and unseen_span(g, 5) == (2, 5)
    assert unseen_span(g, 6) is None and unseen_span(g, 1) is None
    assert gap_dated(1.0, g, 0, 2, 0.5) == (4, 1.5)  # the middle, half the gap uncertain
    assert gap_dated(2.0, g, 0, 2, 0.5) == (5, 0.5)  # first seen
    assert gap_dated(1.0, g, 0, 6, 0.5) is None
    # a counter's increase is unknown from the step after its last sample seen
    c = _counter([0.0, 1, 2, NAN, 4, 5])
    assert unseen_span(c, 3) == (3, 5) and unseen_span(c, 5) == (3, 5)
    assert unseen_span(c, 2) is None
