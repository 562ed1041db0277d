"""Prediction intervals from backtest errors (split-conformal style).

The backtest gives ``k`` windows of ``hb`` errors (actual minus forecast, model
space). Errors grow with the lead time, so they are first normalised by a
horizon profile ``s(j) = a + b * sqrt(j)`` (``a, b >= 0``) fitted by
non-negative least squares to the mean absolute error at each lead ``j``; the
``level`` % quantile ``q`` of the pooled ``|error| / s(j)`` then gives the bounds
``forecast ± q * s(j)`` for every lead, including leads beyond ``hb`` (the
profile extrapolates). The bands are symmetric in model space, so a positive
series (modelled in logs) gets multiplicative, positive bounds, and they widen
monotonically with the lead time.

Too little history for a backtest: random-walk bands ``± z_q * sigma * sqrt(j)``
with ``sigma`` the robust spread of one-step differences.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def horizon_profile(abs_err: np.ndarray, h: int) -> np.ndarray:
    """``s(j)`` for ``j = 1..h`` fitted to the mean absolute error per lead (rows: windows)."""
    ma = np.nanmean(abs_err, axis=0)
    j = np.arange(1, ma.size + 1, dtype=np.float64)
    ok = np.isfinite(ma)
    floor = max(float(np.nanmean(ma)) * 1e-3, 1e-12) if ok.any() else 1e-12
    if ok.sum() >= 2:
        from scipy.optimize import nnls  # lazy: scipy costs ~60 MiB at service start-up

        a = np.column_stack([np.ones(int(ok.sum())), np.sqrt(j[ok])])
        coef, _ = nnls(a, ma[ok])
    else:
        coef = np.array([float(ma[ok][0]) if ok.any() else 0.0, 0.0])
    jj = np.sqrt(np.arange(1, h + 1, dtype=np.float64))
    return np.maximum(coef[0] + coef[1] * jj, floor)


def conformal_intervals(
    zf: np.ndarray, residuals: np.ndarray, levels: Sequence[int]
) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Bounds (model space) around ``zf`` from backtest ``residuals`` (windows × leads)."""
    res = np.atleast_2d(np.asarray(residuals, dtype=np.float64))
    s = horizon_profile(np.abs(res), zf.size)
    u = np.abs(res) / s[: res.shape[1]]
    u = u[np.isfinite(u)]
    lo: dict[int, np.ndarray] = {}
    hi: dict[int, np.ndarray] = {}
    for lv in levels:
        q = float(np.quantile(u, lv / 100.0)) if u.size else 0.0
        lo[lv] = zf - q * s
        hi[lv] = zf + q * s
    return lo, hi


def random_walk_intervals(
    z: np.ndarray, zf: np.ndarray, levels: Sequence[int]
) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Random-walk bands for series too short to backtest."""
    from scipy.stats import norm  # lazy: scipy costs ~60 MiB at service start-up

    d = np.diff(z)
    if d.size >= 2:
        sigma = 1.4826 * float(np.median(np.abs(d - np.median(d))))
        if not sigma > 0:
            sigma = float(np.std(d))
    else:
        sigma = 0.0
    w = sigma * np.sqrt(np.arange(1, zf.size + 1, dtype=np.float64))
    lo: dict[int, np.ndarray] = {}
    hi: dict[int, np.ndarray] = {}
    for lv in levels:
        q = float(norm.ppf(0.5 + lv / 200.0))
        lo[lv] = zf - q * w
        hi[lv] = zf + q * w
    return lo, hi
