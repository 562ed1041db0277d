"""Seasonal periods: from the sampling step (calendar) or from the data (ACF)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DAY_SECONDS = 86_400.0
WEEK_SECONDS = 7 * DAY_SECONDS
#: a period is used only with at least this many full cycles of history
MIN_CYCLES = 2
#: autocorrelation a peak needs to count as a season
MIN_ACF = 0.2
#: how far the ACF must rise from its lowest earlier value to a peak
MIN_PROMINENCE = 0.1


def season_lengths_for(step_seconds: float, n: int) -> list[int]:
    """Daily and weekly periods in steps of ``step_seconds``, given ``n`` points of history.

    A period is included when it is at least 2 steps long and the history holds
    at least ``MIN_CYCLES`` full cycles of it.

    >>> season_lengths_for(3600, 700)
    [24, 168]
    >>> season_lengths_for(60, 10_080)
    [1440]
    >>> season_lengths_for(86400, 400)
    [7]
    """
    if not step_seconds > 0:
        return []
    out: list[int] = []
    for period in (DAY_SECONDS, WEEK_SECONDS):
        m = round(period / step_seconds)
        if m >= 2 and n >= MIN_CYCLES * m and m not in out:
            out.append(m)
    return out


def usable_seasons(n: int, season_lengths: Sequence[int]) -> tuple[int, ...]:
    """Sorted distinct periods ``>= 2`` with at least ``MIN_CYCLES`` cycles in ``n`` points."""
    return tuple(
        sorted({int(m) for m in season_lengths if int(m) >= 2 and n >= MIN_CYCLES * int(m)})
    )


def acf(x: np.ndarray, max_lag: int) -> np.ndarray:
    """Autocorrelations ``r[0..max_lag]`` (FFT, mean-centred, denominator ``n``)."""
    x = np.asarray(x, dtype=np.float64) - np.mean(x)
    n = x.size
    nfft = 1 << int(np.ceil(np.log2(2 * n)))
    f = np.fft.rfft(x, nfft)
    r = np.fft.irfft(f * np.conj(f), nfft)[: max_lag + 1]
    return r / r[0] if r[0] > 0 else np.zeros(max_lag + 1)


def detect_season_lengths(z: np.ndarray, max_seasons: int = 2) -> list[int]:
    """Seasonal periods found in the data by autocorrelation peaks.

    The series is linearly detrended, then the ACF's local maxima above
    ``MIN_ACF`` (up to half the length) that rise at least ``MIN_PROMINENCE``
    above the lowest earlier ACF value and dominate a +-25 % neighbourhood
    are candidates. The first season is the shortest candidate whose ACF is
    within 80 % of the best one (so the daily cycle wins over its multiples);
    a second season is looked for in the differences at the first period
    (see :func:`_second_season`).
    """
    z = np.asarray(z, dtype=np.float64)
    n = z.size
    max_lag = n // MIN_CYCLES
    if max_lag < 4:
        return []
    t = np.arange(n)
    x = z - np.polyval(np.polyfit(t, z, 1), t)
    r = acf(x, max_lag)
    k = np.arange(2, max_lag)
    local = (r[k] > r[k - 1]) & (r[k] >= r[k + 1]) & (r[k] > MIN_ACF)
    # a real cycle has a trough before its peak, and its peak dominates the
    # neighbourhood (noise wiggles on a slowly decaying ACF do neither)
    trough = np.minimum.accumulate(r)
    peaks = np.array(
        [
            p
            for p in k[local]
            if r[p] - trough[p] >= MIN_PROMINENCE
            and r[p] >= np.max(r[max(1, p - p // 4) : min(max_lag, p + p // 4) + 1])
        ],
        dtype=np.int64,
    )
    if peaks.size == 0:
        return []
    best = float(np.max(r[peaks]))
    first = _refine(r, int(peaks[r[peaks] >= 0.8 * best][0]), n)
    out = [first]
    if max_seasons > 1:
        second = _second_season(x, first)
        if second:
            out.append(second)
    return out[:max_seasons]


def _refine(r: np.ndarray, p: int, n: int) -> int:
    """The vertex of a parabola fitted to the ACF within +-10 % of the peak at ``p``.

    A broad peak (a smooth cycle) has a flat top, where noise moves the
    argmax by a few lags and the ``(n - k) / n`` taper of the ACF estimate
    pulls it to shorter lags; the fitted vertex of the untapered ACF is
    steadier.
    """
    w = p // 10
    if w < 2 or p + w >= r.size:
        return p
    lags = np.arange(p - w, p + w + 1, dtype=np.float64)
    vals = r[p - w : p + w + 1] * n / (n - lags)
    a, b, _ = np.polyfit(lags - p, vals, 2)
    if not a < 0:
        return p
    vertex = p - b / (2 * a)
    return round(float(vertex)) if abs(vertex - p) <= w else p


def _second_season(x: np.ndarray, first: int) -> int | None:
    """A longer period, a multiple of ``first``, seen in the lag-``first`` differences.

    Differencing at the first period removes that cycle, so a weekly pattern
    of hourly data shows as an autocorrelation peak at 168 that the daily
    cycle hides in the raw ACF. The multiple with the highest autocorrelation
    (within ``first / 24`` steps of ``k * first``, ``k >= 2``) is taken when
    it exceeds ``MIN_ACF``.
    """
    d = x[first:] - x[:-first]
    max_lag = d.size // MIN_CYCLES
    if max_lag < 2 * first + 1:
        return None
    r = acf(d, max_lag)
    tol = max(1, first // 24)
    best, best_r = None, MIN_ACF
    for mult in range(2, max_lag // first + 1):
        lo, hi = mult * first - tol, min(max_lag, mult * first + tol)
        k = lo + int(np.argmax(r[lo : hi + 1]))
        if r[k] > best_r:
            best, best_r = k, float(r[k])
    return best
