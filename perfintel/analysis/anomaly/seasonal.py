"""Seasonal baseline: the expected value and band, seasonality found from the series.

Three forecasters run side by side on every series and the one with the
lowest recent absolute error wins (a simpler one is preferred unless a more
complex one is clearly better), so daily and weekly seasonality are detected
from the data itself, through its own timestamps:

* ``level``  — a fast exponentially weighted level (no seasonality);
* ``daily``  — a slow deseasonalised level plus a learned offset per hour of
  the day (24 bins, linearly interpolated between bin centres);
* ``weekly`` — the same with an offset per hour of the week (168 bins).

The levels and offsets are learned Holt-Winters style: the level from the
value minus its offset, the offset from the value minus the level. Offsets
learn at a rate per *hour of samples* (the sampling interval is estimated from
the timestamps), so a bin learns equally fast per day whether the series is
sampled every minute or every hour.

The daily model may win only after two days of data, the weekly one after two
weeks. The residual scale is the winner's exponentially weighted mean absolute
error (×1.2533 ≈ a Gaussian sigma), floored so constant series stay finite.
Updates are Huber-clipped so a spike does not inflate the scale or drag the
profile. Timestamps are bucketed in UTC. The constants are conventional
smoothing rates, not fitted to a benchmark.
"""

from __future__ import annotations

import math

import numpy as np

from perfintel.analysis.anomaly.base import Field, State, VectorModel, register
from perfintel.analysis.anomaly.jit import njit

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
MODEL_NAMES = ("level", "daily", "weekly")
MAD_TO_SIGMA = 1.2533
_HALF_HOUR_MS = HOUR_MS // 2

# state slots (relative to the component's offset)
_N, _T0, _TL, _DT, _FAST, _L0, _L1, _E, _DAY, _WEEK = 0, 1, 2, 3, 4, 5, 6, 7, 10, 34
WIDTH = 34 + 168
# parameters
_P_FAST, _P_SLOW, _P_PROFILE, _P_ERR, _P_BAND, _P_PREFER, _P_CLIP = range(7)


@njit
def seasonal_step(f, r, o, t, x, prm):  # type: ignore[no-untyped-def]
    """Score ``x`` at ``t`` against the baseline of row ``r`` (slots from ``o``), then learn.

    Returns (yhat, half band, anomaly_score, z, model, sigma, season offset).
    """
    hours = (t - _HALF_HOUR_MS) / HOUR_MS
    base = math.floor(hours)
    frac = hours - base
    b = np.int64(base)
    d0 = b % 24
    d1 = (d0 + 1) % 24
    w0 = (b + 72) % 168
    w1 = (w0 + 1) % 168
    n = f[r, o + _N]
    first = n == 0
    tsf = np.float64(t)
    t0 = tsf if first else f[r, o + _T0]
    gap = tsf - f[r, o + _TL]
    dt = f[r, o + _DT]
    if not (first or gap <= 0):
        dt = gap if dt == 0 else dt + 0.1 * (gap - dt)
    fast = x if first else f[r, o + _FAST]
    l0 = x if first else f[r, o + _L0]
    l1 = x if first else f[r, o + _L1]
    d_a = f[r, o + _DAY + d0]
    d_b = f[r, o + _DAY + d1]
    w_a = f[r, o + _WEEK + w0]
    w_b = f[r, o + _WEEK + w1]
    d = (1.0 - frac) * d_a + frac * d_b
    w = (1.0 - frac) * w_a + frac * w_b
    age = tsf - t0
    floor = 1e-9 + 1e-9 * abs(l0)
    prefer = prm[_P_PREFER]
    e0 = f[r, o + _E]
    e1 = f[r, o + _E + 1]
    e2 = f[r, o + _E + 2]
    # the simplest model unless a seasonal one is clearly (``prefer``) better
    k = 0
    yhat = fast
    err_k = e0
    pen = e0
    if age >= 2 * DAY_MS and e1 / prefer < pen:
        k, yhat, err_k, pen = 1, l0 + d, e1, e1 / prefer
    if age >= 14 * DAY_MS and e2 / (prefer * prefer) < pen:
        k, yhat, err_k = 2, l1 + w, e2
    sigma = MAD_TO_SIGMA * err_k + floor
    resid = x - yhat
    z = abs(resid) / sigma
    half = prm[_P_BAND] * sigma
    score_a = abs(resid) / half
    if n < 10:
        score_a = 0.0
        z = 0.0
    # learn (after scoring), Holt-Winters style
    clip = prm[_P_CLIP]
    a_e = max(prm[_P_ERR], 1.0 / (n + 1.0))
    for j in range(3):
        ej = f[r, o + _E + j]
        fj = fast if j == 0 else (l0 + d if j == 1 else l1 + w)
        if first:
            e = 0.0
        else:
            e = abs(x - fj)
            if n >= 30:
                e = min(e, clip * (MAD_TO_SIGMA * ej + floor))
        f[r, o + _E + j] = ej + a_e * (e - ej)
    c = clip * sigma
    xc = x if n < 30 else yhat + min(max(resid, -c), c)  # Huber-clipped value
    a_s = max(prm[_P_SLOW], 1.0 / (n + 1.0))
    e_d = (xc - l0) - d
    e_w = (xc - l1) - w
    f[r, o + _L0] = l0 + a_s * ((xc - d) - l0)
    f[r, o + _L1] = l1 + a_s * ((xc - w) - l1)
    f[r, o + _FAST] = fast + prm[_P_FAST] * (x - fast)
    f[r, o + _N] = n + 1
    f[r, o + _T0] = t0
    f[r, o + _TL] = tsf
    f[r, o + _DT] = dt
    # profile rate = weight of one hour's worth of samples
    per_hour = min(max((dt if dt > 0 else np.float64(HOUR_MS)) / HOUR_MS, 1e-3), 1.0)
    pa = 1.0 - (1.0 - prm[_P_PROFILE]) ** per_hour
    f[r, o + _DAY + d0] = d_a + pa * (1.0 - frac) * e_d
    f[r, o + _DAY + d1] += pa * frac * e_d
    f[r, o + _WEEK + w0] = w_a + pa * (1.0 - frac) * e_w
    f[r, o + _WEEK + w1] += pa * frac * e_w
    season = d if k == 1 else (w if k == 2 else 0.0)
    return yhat, half, score_a, z, k, sigma, season


@njit
def _seasonal_run(f, rows, ts, x, prm, out):  # type: ignore[no-untyped-def]
    for i in range(len(x)):
        yhat, half, score_a, z, k, sigma, _ = seasonal_step(f, rows[i], 0, ts[i], x[i], prm)
        out[0, i] = 1.0 - math.exp(-0.5 * max(z - 2.0, 0.0) ** 2 / 4.0)
        out[1, i] = z
        out[2, i] = yhat
        out[3, i] = yhat - half
        out[4, i] = yhat + half
        out[5, i] = score_a
        out[6, i] = k
        out[7, i] = sigma


class SeasonalBaseline(VectorModel):
    """Expected value and band from the best of level/daily/weekly forecasters."""

    name = "seasonal"
    outputs = (
        "score",
        "raw",
        "yhat",
        "yhat_lower",
        "yhat_upper",
        "anomaly_score",
        "model",
        "sigma",
    )
    flags = ("score", "model")

    def __init__(
        self,
        seed: int = 0,
        fast_alpha: float = 0.1,
        slow_alpha: float = 0.03,
        profile_alpha: float = 0.15,
        error_alpha: float = 0.01,
        band: float = 3.0,
        prefer: float = 0.85,
        clip: float = 5.0,
    ) -> None:
        super().__init__(seed)
        self.fast_alpha = fast_alpha
        self.slow_alpha = slow_alpha
        self.profile_alpha = profile_alpha
        self.error_alpha = error_alpha
        self.band = band
        self.prefer = prefer
        self.clip = clip

    def params(self) -> np.ndarray:
        return np.array(
            [
                self.fast_alpha,
                self.slow_alpha,
                self.profile_alpha,
                self.error_alpha,
                self.band,
                self.prefer,
                self.clip,
            ]
        )

    def fields(self) -> dict[str, Field]:
        return {
            "n": Field(),
            "t0": Field(),
            "t_last": Field(),
            "dt": Field(),  # typical sampling interval (ms), exponentially weighted
            "fast": Field(),
            "level": Field(2),  # deseasonalised slow levels of the daily and weekly models
            "err": Field(3),
            "day": Field(24),
            "week": Field(168),
        }

    def _run(
        self, st: State, rows: np.ndarray, ts: np.ndarray, x: np.ndarray, out: np.ndarray
    ) -> None:
        _seasonal_run(st.f, rows, ts, x, self.params(), out)


register(SeasonalBaseline.name, lambda seed: SeasonalBaseline(seed))
