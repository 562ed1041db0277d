"""How abnormal each series became and when its change began (principles 1 and 2 of
:mod:`~perfintel.analysis.rootcause.ranking`).

Rows of values on one grid in, :class:`~perfintel.analysis.rootcause.changes.Changes` out:
each series against the line and spread of its own baseline (a cycle carried in phase when it
fits better), its peak departure in the window, whether that is a change, and where it
began; a change already under way when the window opens (``lead``) or begun inside the
baseline (``rise``) measured again from earlier. No labels, no ranking here.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np

from ..signals import MAD_SIGMA
from .baseline import baseline_line, grid_spread, seasonal_line, wander_factor
from .changes import Changes
from .parameters import RootCauseParams
from .rise import risen


def measure_changes(
    x: np.ndarray,
    usable: np.ndarray,
    ws: int,
    we: int,
    b0: int,
    p: RootCauseParams,
    periods: Sequence[int] = (),
    lead: int = 0,
    rise: bool = False,
) -> Changes:
    """Change profiles of rows ``x`` over window steps ``[ws, we)`` against baseline ``[b0, ws)``
    (and, ``lead`` > 0, of the changes already under way at ``ws``: see :func:`lead_dated`; with
    ``rise`` and ``p.rise`` > 0, of those that began inside the baseline: see
    :func:`~perfintel.analysis.rootcause.rise.risen`)."""
    base = x[:, b0:ws]
    level, slope, sigma = baseline_line(base)
    steps_sigma = MAD_SIGMA * np.median(np.abs(np.diff(base, axis=1)), axis=1) / np.sqrt(2)
    t = np.arange(we - ws)
    tb = np.arange(b0 - ws, 0)
    line = level[:, None] + slope[:, None] * tb[None, :]
    expected = level[:, None] + slope[:, None] * t[None, :]
    if p.seasonal_gain > 0:
        # a cycle the baseline holds at least three times (an hour of minutes, a day of five
        # minutes...) is carried into the window, in phase
        b = base.shape[1]
        for m in sorted({int(m) for m in periods if m >= 4 and 3 * m <= b}):
            on, lv, sl, cyc = seasonal_line(base, m, b + we - ws, p.seasonal_gain)
            if not on.any():
                continue
            fit = lv[:, None] + sl[:, None] * tb[None, :] + cyc[:, :b]
            dev = base - fit
            spread = MAD_SIGMA * np.median(
                np.abs(dev - np.median(dev, axis=1, keepdims=True)), axis=1
            )
            floor = np.maximum(0.5 * steps_sigma, 1e-3 * np.abs(lv) + 1e-12)
            better = on & (spread < sigma)
            line = np.where(better[:, None], fit, line)
            ahead = lv[:, None] + sl[:, None] * t[None, :] + cyc[:, b:]
            expected = np.where(better[:, None], ahead, expected)
            sigma = np.where(better, np.maximum(spread, floor), sigma)
    least = np.full(x.shape[0], p.min_sigma)
    if p.wander > 0:
        # the line is extrapolated into the window: how far it may err grows with how slowly
        # the series wanders (few independent points in its baseline) and how far it reaches
        least = least * wander_factor(base - line, p.wander * (we - ws))
    if p.grid_floor > 0:
        sigma = np.maximum(sigma, grid_spread(x[:, b0:we], base))
    z = (x[:, ws:we] - expected) / sigma[:, None]
    z[~usable] = 0.0
    base_z = (base - line) / sigma[:, None]
    tail = np.max(np.abs(base_z), axis=1)
    peak_at = np.argmax(np.abs(z), axis=1)
    peak = z[np.arange(z.shape[0]), peak_at]
    changed = usable & (np.abs(peak) >= np.maximum(least, p.tail_factor * tail))
    onset = peak_at.astype(np.int64)
    for r in np.flatnonzero(changed):
        onset[r] = onset_of(z[r], int(peak_at[r]), p)
    ch = Changes(z, expected, peak, peak_at, onset, changed, tail, base_z)
    if lead > 0:
        ch = lead_dated(ch, x, usable, ws, we, b0, p, periods, lead)
    if rise and p.rise > 0:
        again = partial(remeasure, x, usable, we, ws - b0, p, periods)
        risen(ch, under_way(ch, p), ws, b0, p, again)
    return ch


def remeasure(
    x: np.ndarray,
    usable: np.ndarray,
    we: int,
    length: int,
    p: RootCauseParams,
    periods: Sequence[int],
    rows: np.ndarray,
    start: int,
) -> tuple[Changes, np.ndarray, np.ndarray]:
    """Rows ``rows`` over ``[start, we)`` against the ``length`` steps before ``start``, which
    of them were already under way at ``start``, and their values over ``[start, we)``."""
    ext = measure_changes(x[rows], usable[rows], start, we, max(0, start - length), p, periods)
    return ext, under_way(ext, p), x[rows, start:we]


def lead_dated(
    ch: Changes,
    x: np.ndarray,
    usable: np.ndarray,
    ws: int,
    we: int,
    b0: int,
    p: RootCauseParams,
    periods: Sequence[int],
    lead: int,
) -> Changes:
    """``ch`` with the changes already under way at the window start dated where they began.

    Such a change is analysed again over a window opened ``lead`` steps
    earlier, against a baseline of the same length before that (its early
    ramp no longer tilts the line nor widens the spread); it takes that onset,
    peak and z-scores when it is a change there too, its beginning is seen
    there (not under way already at that earlier start: a drift older than the
    bound is not dated) and it peaks inside the window (one that faded before
    the window is not under way).
    """
    lead = min(lead, ws - 4)
    rows = np.flatnonzero(ch.changed & under_way(ch, p))
    if lead < 1 or rows.size == 0:
        return ch
    start = ws - lead
    ext = measure_changes(x[rows], usable[rows], start, we, max(0, start - (ws - b0)), p, periods)
    began = ~under_way(ext, p)  # where it began is seen: within the bound
    take = ext.changed & began & (ext.onset < lead) & (ext.peak_at >= lead)
    for k in np.flatnonzero(take):
        r = int(rows[k])
        ch.z[r] = ext.z[k, lead:]
        ch.expected[r] = ext.expected[k, lead:]
        ch.peak[r] = ext.peak[k]
        ch.peak_at[r] = ext.peak_at[k] - lead
        ch.onset[r] = ext.onset[k] - lead
        ch.early[r] = (ext.z[k], x[r, start:we])
    ch.lead = lead
    return ch


def under_way(ch: Changes, p: RootCauseParams) -> np.ndarray:
    """Rows whose departure never came back within ``onset_sigma / 2`` from the window start
    to their peak: the change was already under way when the window opened."""
    before = np.arange(ch.z.shape[1])[None, :] <= ch.peak_at[:, None]
    toward = np.sign(ch.peak)[:, None] * ch.z
    return np.asarray(np.where(before, toward, np.inf).min(axis=1) >= p.onset_sigma / 2)


def onset_of(z: np.ndarray, peak_at: int, p: RootCauseParams) -> int:
    """Where the departure holding the peak began (window index; see principle 2)."""
    sign = 1.0 if z[peak_at] >= 0 else -1.0
    v = sign * z[: peak_at + 1]
    top = float(v[-1])
    below = np.flatnonzero(v < p.onset_sigma / 2)
    start = int(below[-1]) + 1 if below.size else 0
    level = min(max(p.onset_sigma, p.onset_fraction * top), top)
    return start + int(np.argmax(v[start:] >= level))
