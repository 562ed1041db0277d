"""Autoregression on short and seasonal lags, fitted by (nearly) least squares.

``z_t = c + sum_l w_l z_{t-l}`` over a lag set built from the seasons ``m``:

* ``short``: lags ``1..p`` (``p = min(24, m_1)``), ``m - 1, m, m + 1`` for every
  season and ``2 m_1, 2 m_1 + 1``;
* ``multi``: ``short`` plus ``k m_1 - 1 .. k m_1 + 1`` for ``k = 2, 3`` and
  ``2 m - 1 .. 2 m + 1`` for the longer seasons;
* ``long``: lags ``1..min(48, 2 m_1)`` and ``m - 1 .. m + 1`` for the longer seasons.

Without a season the lags are ``1..min(24, n / 10)``. Lags need three times
their length of history, else they are dropped. The fit is ridge regression
with a penalty relative to the mean diagonal of ``X'X`` and is iterated
recursively to the horizon; the forecast is clipped to the history's range
widened by twice its span, so an explosive fit cannot run away.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from .base import Forecaster

Variant = Literal["short", "multi", "long"]
_RIDGE: dict[str, float] = {"short": 1e-6, "multi": 1e-4, "long": 1e-4}
#: at most this many of the latest points are used for fitting
MAX_FIT_POINTS = 5_000


def ar_lags(variant: Variant, seasons: Sequence[int], n: int) -> list[int]:
    lags: set[int] = set()
    if not seasons:
        lags.update(range(1, max(2, min(24, n // 10)) + 1))
    else:
        m1 = min(seasons)
        others = [m for m in seasons if m != m1]
        if variant == "long":
            lags.update(range(1, min(48, 2 * m1) + 1))
        else:
            lags.update(range(1, min(24, m1) + 1))
            for m in seasons:
                lags.update((m - 1, m, m + 1))
            lags.update((2 * m1, 2 * m1 + 1))
            if variant == "multi":
                for k in (2, 3):
                    lags.update((k * m1 - 1, k * m1, k * m1 + 1))
                for m in others:
                    lags.update((2 * m - 1, 2 * m, 2 * m + 1))
        for m in others:
            lags.update((m - 1, m, m + 1))
    return sorted(lag for lag in lags if lag >= 1 and 3 * lag < n)


def lag_gram(x: np.ndarray, lags: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``X'X`` and ``X'y`` of the lag regression, without a matrix product.

    Column ``k`` of ``X`` is ``x[t - lags[k]]`` and ``y`` is ``x[t]`` for
    ``t = max(lags) .. n - 1``. Every entry is a window sum of ``x[s] x[s + d]``
    for one lag difference ``d``, read off one cumulative sum per distinct
    ``d``. This keeps the fit in a few vector operations: a multi-threaded BLAS
    on a busy machine makes the small product ``X'X`` a hundred times slower.
    """
    n = x.size
    la = np.concatenate([[0], np.asarray(lags, dtype=np.int64)])
    top = int(la.max())
    hi = np.maximum(la[:, None], la[None, :])
    d = np.abs(la[:, None] - la[None, :])
    uniq, inv = np.unique(d, return_inverse=True)
    rows = inv.reshape(d.shape)
    # entry (i, j) sums x[s] x[s + d] over s in [top - hi, n - hi): per distinct d
    # one cumulative sum over the union of its windows, all stored end to end
    hmax = np.zeros(uniq.size, dtype=np.int64)
    hmin = np.full(uniq.size, n, dtype=np.int64)
    np.maximum.at(hmax, rows.ravel(), hi.ravel())
    np.minimum.at(hmin, rows.ravel(), hi.ravel())
    start = top - hmax
    stop = n - hmin
    offsets = np.concatenate([[0], np.cumsum(stop - start + 1)])
    flat = np.zeros(int(offsets[-1]))
    for k, dd in enumerate(uniq.tolist()):
        s0, s1, o = int(start[k]), int(stop[k]), int(offsets[k])
        np.cumsum(x[s0:s1] * x[s0 + dd : s1 + dd], out=flat[o + 1 : o + 1 + s1 - s0])
    base = offsets[rows] - start[rows]
    full = flat[base + n - hi] - flat[base + top - hi]
    return full[1:, 1:], full[1:, 0]


def fit_ar(x: np.ndarray, lags: Sequence[int], ridge: float) -> np.ndarray:
    """Ridge AR coefficients for centred ``x`` (no intercept)."""
    g, xy = lag_gram(x, lags)
    pen = ridge * max(float(np.trace(g)) / len(lags), 1e-12)
    a = g + pen * np.eye(len(lags))
    try:
        return np.linalg.solve(a, xy)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(a, xy, rcond=None)[0]


def iterate_ar(x: np.ndarray, w: np.ndarray, lags: Sequence[int], h: int) -> np.ndarray:
    n = x.size
    la = np.asarray(lags)
    top = int(la.max())
    buf = np.concatenate([x[n - top :], np.zeros(h)])
    for j in range(h):
        p = top + j
        buf[p] = w @ buf[p - la]
    return buf[top:]


class SeasonalAR(Forecaster):
    def __init__(self, variant: Variant = "short") -> None:
        self.variant = variant
        self.name = f"ar_{variant}"

    def min_length(self, seasons: Sequence[int]) -> int:
        return 30

    def point(self, z: np.ndarray, h: int, seasons: Sequence[int]) -> np.ndarray:
        zz = z[-MAX_FIT_POINTS:]
        lags = ar_lags(self.variant, seasons, zz.size)
        if not lags:
            return np.full(h, z[-1])
        mu = float(np.mean(zz))
        x = zz - mu
        w = fit_ar(x, lags, _RIDGE[self.variant])
        f = iterate_ar(x, w, lags, h) + mu
        lo, hi = float(np.min(z)), float(np.max(z))
        span = max(hi - lo, 1e-9)
        return np.clip(f, lo - 2 * span, hi + 2 * span)
