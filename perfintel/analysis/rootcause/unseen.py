"""Onsets in missed scrapes: a change first seen after a gap began somewhere inside it.

The ranking reads series with their missed samples filled in (interior gaps interpolated
linearly: :func:`~perfintel.analysis.signals.interpolate_gaps`). A step that happened while
a series was not scraped then becomes a ramp across the gap, and its onset (the first step
beyond the threshold) falls near the gap's start: the change is dated as early as the gap
allows, before changes it followed that were seen. All the data say is that it began after
the last sample seen before it and by the first seen with it.

With ``gap_onsets`` on, a change whose onset step, or the step before it, was not sampled
(a counter's increase: neither sample of the step missed) takes, as its onset, the middle
of that span (``gap_onsets`` = 1) and an onset uncertainty of at least half of it, or the
first step seen with it (2: dated when seen, as a scrape-based system first knows of it).
A single missed sample moves an onset by at most its half step of uncertainty.

A counter says more of a gap than a gauge: its increase over the gap is the difference of
the samples around it, only its timing inside the gap is lost. Read as increases per step,
each missed sample makes two steps' increases unknown, and interpolating them from the
steps around the gap drops whatever the counter counted in between: a burst of CPU or
errors that fell in missed scrapes vanishes, its neighbours' rates taking its place. With
``counter_gaps`` on, the steps of a gap share the increase over it evenly (the rate over
the gap, as ``rate()`` over a range spanning it reads it: :func:`spread_increase`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..signals import SeriesInput, interpolate_gaps, per_step_increase


def spread_increase(values: np.ndarray) -> np.ndarray:
    """A counter's increase per step, each run of missed samples between two seen ones
    sharing the increase between them evenly (a drop: a restart from 0, as
    :func:`~perfintel.analysis.signals.per_step_increase` reads one); ``NaN`` before the
    second sample seen and after the last."""
    v = np.asarray(values, dtype=np.float64)
    out = np.full(v.shape, np.nan)
    seen = np.flatnonzero(np.isfinite(v))
    if seen.size < 2:
        return out
    d = np.diff(v[seen])
    inc = np.where(d < 0, v[seen[1:]], d) / np.diff(seen)
    # every step after a seen sample up to the next seen one takes that interval's rate
    at = np.arange(seen[0] + 1, seen[-1] + 1)
    out[at] = inc[np.searchsorted(seen, at, side="left") - 1]
    return out


def unseen_span(s: SeriesInput, at: int) -> tuple[int, int] | None:
    """Grid indices ``(lo, hi)`` a change of ``s`` dated ``at`` began between, when the samples
    at or just before ``at`` were missed: ``lo`` the step after the last one seen before,
    ``hi`` the first seen from ``at`` on; ``None`` when both were seen."""
    v = np.asarray(s.values, dtype=np.float64)
    seen = np.isfinite(per_step_increase(v) if s.counter else v)
    if at < 1 or at >= seen.size or (seen[at] and seen[at - 1]):
        return None
    before = np.flatnonzero(seen[:at])
    after = np.flatnonzero(seen[at:])
    lo = int(before[-1]) + 1 if before.size else 0
    hi = at + int(after[0]) if after.size else seen.size - 1
    return lo, hi


def gap_dated(
    how: float, s: SeriesInput, start: int, onset: int, tol: float
) -> tuple[int, float] | None:
    """The onset (window steps from grid index ``start``) and its uncertainty of a change of
    ``s`` dated ``onset`` with ``tol``, when that date rests on missed samples (see the module
    docstring; ``how`` is ``gap_onsets``); ``None`` when it does not."""
    span = unseen_span(s, start + onset)
    if span is None:
        return None
    lo, hi = span[0] - start, span[1] - start
    if how >= 2:
        return hi, tol
    return (lo + hi + 1) // 2, max(tol, (hi - lo) / 2)


def counted_over_gaps(
    x: np.ndarray, usable: np.ndarray, series: Sequence[SeriesInput]
) -> np.ndarray:
    """Rows ``x`` (as :func:`~perfintel.analysis.signals.as_matrix` gives them) with each
    usable counter that missed samples inside its range read by :func:`spread_increase`."""
    out = x
    for i, s in enumerate(series):
        if not (s.counter and usable[i]):
            continue
        v = np.asarray(s.values, dtype=np.float64)
        seen = np.flatnonzero(np.isfinite(v))
        if seen.size < 2 or seen[-1] - seen[0] + 1 == seen.size:
            continue  # no gap between its first and last sample
        if out is x:
            out = x.copy()
        out[i] = interpolate_gaps(spread_increase(v))
    return out
