"""A series' normal behaviour, learned from the baseline before a root-cause analysis window.

Arrays in, arrays out (rows: series): a robust line and spread
(:func:`baseline_line`) and a line plus a repeating cycle
(:func:`seasonal_line`); :mod:`perfintel.analysis.rootcause` turns them into
z-scores over its window.
"""

from __future__ import annotations

import numpy as np

from ..signals import MAD_SIGMA


def baseline_line(base: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Robust line through each row of ``base``: ``(level at the window start, slope, sigma)``."""
    b = base.shape[1]
    h = b // 2
    if h >= 4:
        slope = (np.median(base[:, b - h :], axis=1) - np.median(base[:, :h], axis=1)) / (b - h)
    else:
        slope = np.zeros(base.shape[0])
    t = np.arange(b) - b  # steps before the window start
    resid = base - slope[:, None] * t[None, :]
    level = np.median(resid, axis=1)
    dev = resid - level[:, None]
    sigma = MAD_SIGMA * np.median(np.abs(dev), axis=1)
    sigma = np.where(sigma > 0, sigma, np.std(dev, axis=1))
    if b > 2:
        steps = MAD_SIGMA * np.median(np.abs(np.diff(base, axis=1)), axis=1) / np.sqrt(2)
        sigma = np.maximum(sigma, 0.5 * steps)
    sigma = np.maximum(sigma, 1e-3 * np.abs(level) + 1e-12)
    return level, slope, sigma


#: a value's grid is never finer than the unit of its 6th significant digit (as the
#: anomaly detector's resolution: a float does not make a grid of its last bits)
GRID_DIGITS = 6
_SQRT12 = float(np.sqrt(12.0))


def value_grid(values: np.ndarray) -> float:
    """The coarsest power of ten, at most 1, that every nonzero value of ``values`` is a
    whole multiple of (1 for counts and for a series that was only ever 0), never finer
    than the unit of the smallest value's ``GRID_DIGITS``-th significant digit."""
    v = np.abs(values[np.isfinite(values)])
    v = np.unique(v[v > 0])
    if v.size == 0:
        return 1.0
    finest = int(np.floor(np.log10(v[0]))) - (GRID_DIGITS - 1)
    k = 0
    while k > finest:
        with np.errstate(over="ignore"):
            m = v / 10.0**k
        if not np.all(np.isfinite(m)):
            # the largest value over a finer unit overflows: no finer unit is whole either
            break
        if np.all(np.abs(m - np.round(m)) <= 1e-9 * m) and np.all(np.round(m) >= 1):
            return 10.0**k
        k -= 1
    return 10.0**finest


def grid_spread(x: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Per row of ``x``: the spread of rounding to its values' grid (``grid / sqrt(12)``)
    for rows whose ``base`` was constant (every finite value equal), 0 for the others
    (their own spread says more). Rows without a constant baseline cost nothing."""
    out = np.zeros(x.shape[0])
    finite = np.isfinite(base)
    lo = np.min(np.where(finite, base, np.inf), axis=1)
    hi = np.max(np.where(finite, base, -np.inf), axis=1)
    for r in np.flatnonzero(finite.any(axis=1) & (lo == hi)):
        out[r] = value_grid(x[r]) / _SQRT12
    return out


def seasonal_line(
    base: np.ndarray, period: int, steps: int, min_corr: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A line plus a cycle of ``period`` steps through each row of ``base``.

    Returns ``(on, level, slope, cycle)``: ``on`` marks the rows whose cycle
    repeats (the profiles of the even and the odd cycles correlate at least
    ``min_corr``: a profile fitted to noise does not); the line (level at the
    window start, slope per step) is drawn through whole cycles, so the cycle
    does not tilt it; ``cycle`` covers the baseline and ``steps - len(base)``
    steps after it.
    """
    rows, b = base.shape
    k = b // period
    first = b - k * period
    cycles = base[:, first:].reshape(rows, k, period)
    means = np.median(cycles, axis=2)  # one level per whole cycle
    centre = first + period * (np.arange(k) + 0.5) - b  # steps before the window start
    slope = (means[:, -1] - means[:, 0]) / (centre[-1] - centre[0])
    t = np.arange(b) - b
    flat = base - slope[:, None] * t[None, :]
    fc = flat[:, first:].reshape(rows, k, period)
    prof = np.median(fc - np.median(fc, axis=(1, 2), keepdims=True), axis=1)
    prof -= np.median(prof, axis=1, keepdims=True)
    even = fc[:, 0::2].mean(axis=1)
    odd = fc[:, 1::2].mean(axis=1)
    even = even - even.mean(axis=1, keepdims=True)
    odd = odd - odd.mean(axis=1, keepdims=True)
    den = np.sqrt((even**2).sum(axis=1) * (odd**2).sum(axis=1))
    corr = np.divide((even * odd).sum(axis=1), den, out=np.zeros(den.shape), where=den > 0)
    cycle = prof[:, (np.arange(steps) - first) % period]
    level = np.median(flat - cycle[:, :b], axis=1)
    return corr >= min_corr, level, slope, cycle


def wander_factor(resid: np.ndarray, horizon: float) -> np.ndarray:
    """Per row of ``resid`` (a baseline's residuals from its fitted line): how much wider the
    error of that line extrapolated ``horizon`` steps past the baseline's end is than the
    residuals' spread, for an AR(1) noise of the residuals' lag-1 autocorrelation ``phi``.

    ``n`` points of such a noise hold ``n (1 - phi) / (1 + phi)`` independent ones (at least
    one): the level and the slope fitted on them are that much less certain, and the error
    at ``h`` steps from the baseline's centre has variance ``sigma² (1 + 1/n_eff +
    12 h² / (n_eff n²))`` (a line's least-squares prediction error): a series that wanders
    slowly, over a short baseline, may go that far from its line without any change.
    """
    n = resid.shape[1]
    if n < 3:
        return np.ones(resid.shape[0])
    d = resid - resid.mean(axis=1, keepdims=True)
    var = np.sum(d * d, axis=1)
    lag1 = np.sum(d[:, 1:] * d[:, :-1], axis=1)
    phi = np.clip(np.divide(lag1, var, out=np.zeros(var.shape), where=var > 0), 0.0, 0.99)
    n_eff = np.maximum(n * (1 - phi) / (1 + phi), 1.0)
    h = n / 2 + horizon
    return np.asarray(np.sqrt(1 + 1 / n_eff + 12 * h * h / (n_eff * n * n)))
