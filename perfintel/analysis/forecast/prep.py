"""Turning a raw series into model space and back.

Steps, in order:

1. ``±inf`` become NaN; leading NaNs are dropped; trailing NaNs are counted
   (the forecast then starts after them) and dropped; interior gaps are filled
   by linear interpolation.
2. Isolated outliers are clipped: a point more than ``OUTLIER_MADS`` robust
   standard deviations away from the running median of its neighbourhood (and
   from its value one season earlier) is pulled back to that bound.
3. A positive series is modelled in logs (multiplicative seasonality and errors
   that scale with the level; bounds stay positive); any other in levels, and
   if it never went below zero its forecasts and bounds are clipped at zero.
4. The result is centred on its median and divided by a robust spread, so every
   model sees values of order one whatever the units (``1e300`` included).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perfintel.errors import BadInputError

OUTLIER_MADS = 12.0
_MEDIAN_WINDOW = 7


@dataclass(frozen=True)
class Prepared:
    """A series ready for the models (``z``) and how to map forecasts back."""

    z: np.ndarray
    log: bool
    center: float
    scale: float
    trailing: int
    constant: bool
    filled: int
    nonnegative: bool = False

    def to_data(self, zf: np.ndarray) -> np.ndarray:
        v = np.asarray(zf, dtype=np.float64) * self.scale + self.center
        if self.log:
            with np.errstate(over="ignore"):
                return np.exp(np.minimum(v, 709.0))
        return v

    def to_model(self, v: np.ndarray) -> np.ndarray:
        x = np.asarray(v, dtype=np.float64)
        if self.log:
            with np.errstate(divide="ignore", invalid="ignore"):
                x = np.log(np.maximum(x, np.finfo(np.float64).tiny))
        return (x - self.center) / self.scale


def fill_gaps(y: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Drop leading/trailing NaNs and interpolate interior ones.

    Returns the filled array, the number of trailing NaNs and of filled points.
    """
    y = np.asarray(y, dtype=np.float64).ravel().copy()
    y[~np.isfinite(y)] = np.nan
    ok = np.flatnonzero(~np.isnan(y))
    if ok.size == 0:
        raise BadInputError("series has no finite values")
    trailing = y.size - 1 - int(ok[-1])
    y = y[ok[0] : ok[-1] + 1]
    miss = np.isnan(y)
    filled = int(miss.sum())
    if filled:
        idx = np.arange(y.size)
        y[miss] = np.interp(idx[miss], idx[~miss], y[~miss])
    return y, trailing, filled


def clip_outliers(x: np.ndarray, season: int | None = None) -> np.ndarray:
    """Pull isolated spikes back to ``OUTLIER_MADS`` robust sigmas of the local median."""
    if x.size < 4 * _MEDIAN_WINDOW:
        return x
    from scipy.ndimage import median_filter  # lazy: scipy costs ~60 MiB at service start-up

    med = median_filter(x, size=_MEDIAN_WINDOW, mode="nearest")
    e = x - med
    sigma = 1.4826 * np.median(np.abs(e - np.median(e)))
    if not sigma > 0:
        return x
    bound = OUTLIER_MADS * sigma
    bad = np.abs(e) > bound
    if season and season < x.size:
        # a value that repeats one season earlier is a pattern, not a spike
        same = np.zeros(x.size, dtype=bool)
        same[season:] = np.abs(x[season:] - x[:-season]) <= bound
        bad &= ~same
    if not bad.any():
        return x
    out = x.copy()
    out[bad] = med[bad] + np.clip(e[bad], -bound, bound)
    return out


def prepare(y: np.ndarray, season: int | None = None) -> Prepared:
    """Map a raw series to model space (see the module docstring)."""
    x, trailing, filled = fill_gaps(y)
    nonnegative = bool(np.min(x) >= 0)
    log = bool(np.min(x) > 0)
    if log:
        x = np.log(x)
    x = clip_outliers(x, season)
    center = float(np.median(x))
    spread = float(np.quantile(x, 0.9) - np.quantile(x, 0.1))
    if not spread > 0:
        spread = float(np.max(x) - np.min(x))
    constant = not spread > 0 or not np.isfinite(spread)
    scale = spread if not constant else 1.0
    if not np.isfinite(center):
        raise BadInputError("series values are not finite after transformation")
    z = (x - center) / scale
    return Prepared(z, log, center, scale, trailing, constant, filled, nonnegative)
