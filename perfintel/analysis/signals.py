"""Series on a common grid, as the correlation, root-cause and change-impact models see them.

A :class:`SeriesInput` is one series' values on a regular time grid shared by
every series of a request (NaN = no sample in that step) with its labels and
whether it is a counter. The models turn a list of them into a matrix with
:func:`as_matrix`: counters become their increase per step (resets handled as
Prometheus does: a drop means the counter restarted from zero), interior gaps
are interpolated and the ends carried, and series too short or constant to
say anything are marked unusable instead of raising.

The helpers are vectorised over rows (series) where it matters: hundreds of
series are analysed at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from perfintel.model import LabelSet, metric_name

#: metric-name endings of Prometheus counters (and of histogram/summary parts)
COUNTER_SUFFIXES = ("_total", "_count", "_sum", "_bucket")
#: robust sigma of a normal distribution per median absolute deviation
MAD_SIGMA = 1.4826
#: fewest finite points for a series to be analysed
MIN_POINTS = 8


@dataclass(frozen=True)
class SeriesInput:
    """One series on the request's grid: ``values[i]`` is the value in step ``i`` (NaN: none).

    ``counter`` marks a monotonically increasing counter (its increase per step
    is analysed, not its raw value); :func:`series_input` guesses it from the
    metric name when not given.
    """

    labels: LabelSet
    values: np.ndarray
    counter: bool = False


def looks_like_counter(labels: LabelSet) -> bool:
    """Whether the metric name follows the Prometheus counter conventions."""
    return metric_name(labels).endswith(COUNTER_SUFFIXES)


def series_input(labels: LabelSet, values: np.ndarray, counter: bool | None = None) -> SeriesInput:
    """A :class:`SeriesInput`, the counter flag guessed from the name when ``None``."""
    flag = looks_like_counter(labels) if counter is None else counter
    return SeriesInput(labels, np.asarray(values, dtype=np.float64), flag)


def per_step_increase(x: np.ndarray) -> np.ndarray:
    """Increase of a counter in each step (``NaN`` in the first; a drop is a restart from 0)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.full(x.shape, np.nan)
    if x.size < 2:
        return out
    d = np.diff(x)
    out[1:] = np.where(d < 0, x[1:], d)
    return out


def interpolate_gaps(x: np.ndarray) -> np.ndarray:
    """Interior NaNs interpolated linearly, leading/trailing ones carried from the nearest value.

    An all-NaN row stays all NaN. Infinite values count as missing.
    """
    x = np.array(x, dtype=np.float64)
    bad = ~np.isfinite(x)
    if not bad.any():
        return x
    ok = np.flatnonzero(~bad)
    if ok.size == 0:
        return np.full(x.shape, np.nan)
    idx = np.arange(x.size)
    x[bad] = np.interp(idx[bad], ok, x[ok])
    return x


def robust_sigma(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``1.4826 × median absolute deviation`` along ``axis`` (NaNs ignored)."""
    med = np.nanmedian(x, axis=axis, keepdims=True)
    return np.asarray(MAD_SIGMA * np.nanmedian(np.abs(x - med), axis=axis))


def as_matrix(series: Sequence[SeriesInput]) -> tuple[np.ndarray, np.ndarray]:
    """``(values, usable)``: one row per series on the common grid, ready for the models.

    Counters are turned into increases per step, gaps are filled
    (:func:`interpolate_gaps`). ``usable[i]`` is ``False`` for a series with
    fewer than :data:`MIN_POINTS` finite points or no variation; its row is
    then all zeros. Every input must have the same length.
    """
    out, reasons = as_matrix_with_reasons(series)
    return out, np.array([not r for r in reasons], dtype=bool)


def as_matrix_with_reasons(series: Sequence[SeriesInput]) -> tuple[np.ndarray, list[str]]:
    """:func:`as_matrix` with, per series, why it cannot be analysed (``""``: it can), in
    words a user can act on (a range too short, a series that never moved)."""
    if not series:
        return np.zeros((0, 0)), []
    t = len(series[0].values)
    if any(len(s.values) != t for s in series):
        raise ValueError("every series must have one value per step of the same grid")
    out = np.zeros((len(series), t))
    reasons = [""] * len(series)
    for i, s in enumerate(series):
        v = np.asarray(s.values, dtype=np.float64)
        if s.counter:
            v = per_step_increase(v)
        n = int(np.isfinite(v).sum())
        if n < MIN_POINTS:
            what = "increases" if s.counter else "points"
            reasons[i] = f"only {n} {what} in the range (at least {MIN_POINTS} needed)"
            continue
        v = interpolate_gaps(v)
        if not np.ptp(v) > 0:
            reasons[i] = "a counter that grew evenly" if s.counter else "constant in the range"
            continue
        out[i] = v
    return out, reasons


def remove_seasonal_profiles(x: np.ndarray, seasons: Sequence[int]) -> np.ndarray:
    """Rows of ``x`` minus their per-phase median profile of each season (longest first).

    A season of ``m`` steps is used when the rows hold at least two full
    cycles; phases are counted from the end of the grid, the profile is the
    median over the cycles of each cycle's deviation from its own mean (a
    level shift or trend inside one cycle barely moves it).
    """
    out = np.array(x, dtype=np.float64)
    if out.ndim != 2:
        raise ValueError("expected a matrix (series × steps)")
    t = out.shape[1]
    for m in sorted({int(s) for s in seasons if int(s) >= 2 and t >= 2 * int(s)}, reverse=True):
        k = t // m
        w = out[:, t - k * m :].reshape(out.shape[0], k, m)
        dev = w - w.mean(axis=2, keepdims=True)
        prof = np.median(dev, axis=1) if k >= 3 else dev.mean(axis=1)
        prof -= prof.mean(axis=1, keepdims=True)
        reps = -(-t // m)
        full = np.tile(prof, (1, reps))[:, reps * m - t :]
        out -= full
    return out


@dataclass(frozen=True)
class Grid:
    """The regular time grid of a request: ``size`` steps of ``step_ms`` from ``start_ms``."""

    start_ms: int
    step_ms: int
    size: int

    @property
    def timestamps(self) -> np.ndarray:
        return self.start_ms + self.step_ms * np.arange(self.size, dtype=np.int64)

    def index(self, t_ms: int) -> int:
        """The step holding ``t_ms`` (may lie outside ``[0, size)``)."""
        return int((t_ms - self.start_ms) // self.step_ms)

    def time(self, i: int) -> int:
        return int(self.start_ms + self.step_ms * i)
