"""Seasonal baseline with robust residual scoring.

Three forecasters run side by side on every series and the one with the
lowest recent absolute error wins (a simpler one is preferred unless a more
complex one is clearly better), so daily and weekly seasonality are detected
from the data itself, through its own timestamps:

* ``level``  — a fast exponentially weighted level (no seasonality);
* ``daily``  — a slow deseasonalised level plus a learned offset per hour of
  the day (24 bins, linearly interpolated between bin centres);
* ``weekly`` — the same with an offset per hour of the week (168 bins).

The levels and offsets are learned Holt-Winters style: the level from the
value minus its offset, the offset from the value minus the level.

The daily model may win only after two days of data, the weekly one after two
weeks. The residual scale is the winner's exponentially weighted mean absolute
error (x1.2533 ~ a Gaussian sigma), floored so constant series stay finite.
Updates are Huber-clipped so a spike does not inflate the scale or drag the
profile. Timestamps are bucketed in UTC.
"""

from __future__ import annotations

import numpy as np

from perfintel.analysis.anomaly.base import Field, State, StepOut, VectorModel, register

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
MODEL_NAMES = ("level", "daily", "weekly")
_MAD_TO_SIGMA = 1.2533


Interp = tuple[np.ndarray, np.ndarray, np.ndarray]


def interp_bins(ts: np.ndarray) -> tuple[Interp, Interp]:
    """Hour-of-day and hour-of-week bins around ``ts`` with linear weights.

    Bin ``b`` is centred on minute 30 of hour ``b`` (UTC; week bins count from
    Monday 00:00); returns, per period, the lower bin, the upper bin (cyclic)
    and the weight of the upper one.
    """
    hours = (ts - HOUR_MS // 2) / HOUR_MS  # float hours since epoch, shifted to centres
    base = np.floor(hours)
    frac = hours - base
    b = base.astype(np.int64)
    day0 = b % 24
    week0 = (b + 72) % 168
    return (day0, (day0 + 1) % 24, frac), (week0, (week0 + 1) % 168, frac)


class SeasonalBaseline(VectorModel):
    """Expected value and band from the best of level/daily/weekly forecasters."""

    name = "seasonal"

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

    def fields(self) -> dict[str, Field]:
        return {
            "n": Field(()),
            "t0": Field(()),
            "t_last": Field(()),
            "dt": Field(()),  # typical sampling interval (ms), exponentially weighted
            "fast": Field(()),
            "level": Field((2,)),  # deseasonalised slow levels of the daily and weekly models
            "err": Field((3,)),
            "day": Field((24,)),
            "week": Field((168,)),
        }

    def step(self, st: State, rows: np.ndarray, ts: np.ndarray, x: np.ndarray) -> StepOut:
        (d0, d1, fd), (w0, w1, fw) = interp_bins(ts)
        n = st["n"][rows]
        first = n == 0
        cols = np.arange(len(rows))
        tsf = ts.astype(np.float64)
        t0 = np.where(first, tsf, st["t0"][rows])
        gap = tsf - st["t_last"][rows]
        dt = st["dt"][rows]
        dt = np.where(first | (gap <= 0), dt, np.where(dt == 0, gap, dt + 0.1 * (gap - dt)))
        fast = np.where(first, x, st["fast"][rows])
        level = np.where(first[:, None], x[:, None], st["level"][rows])
        err = st["err"][rows]
        day, week = st["day"], st["week"]
        d_a, d_b = day[rows, d0], day[rows, d1]
        w_a, w_b = week[rows, w0], week[rows, w1]
        d = (1.0 - fd) * d_a + fd * d_b
        w = (1.0 - fw) * w_a + fw * w_b

        f = np.stack([fast, level[:, 0] + d, level[:, 1] + w])  # (3, m)
        age = ts - t0
        floor = 1e-9 + 1e-9 * np.abs(level[:, 0])
        pen = np.stack(
            [
                err[:, 0],
                np.where(age >= 2 * DAY_MS, err[:, 1] / self.prefer, np.inf),
                np.where(age >= 14 * DAY_MS, err[:, 2] / self.prefer**2, np.inf),
            ]
        )
        k = np.argmin(pen, axis=0)
        yhat = f[k, cols]
        sigma = _MAD_TO_SIGMA * err[cols, k] + floor
        resid = x - yhat
        z = np.abs(resid) / sigma
        half = self.band * sigma
        score_a = np.abs(resid) / half
        warm = n < 10
        score_a = np.where(warm, 0.0, score_a)
        z = np.where(warm, 0.0, z)

        # -- learn (after scoring), Holt-Winters style ---------------------------
        e = np.abs(x[None, :] - f)  # (3, m)
        lim = self.clip * (_MAD_TO_SIGMA * err.T + floor[None, :])
        e = np.where(first[None, :], 0.0, np.minimum(e, np.where(n[None, :] < 30, np.inf, lim)))
        a_e = np.maximum(self.error_alpha, 1.0 / (n + 1.0))
        err = err + (a_e[:, None] * (e.T - err))
        c = self.clip * sigma
        xc = np.where(n < 30, x, yhat + np.clip(resid, -c, c))  # Huber-clipped value
        fast = fast + self.fast_alpha * (x - fast)
        a_s = np.maximum(self.slow_alpha, 1.0 / (n + 1.0))
        e_d = (xc - level[:, 0]) - d
        e_w = (xc - level[:, 1]) - w
        level = level + a_s[:, None] * (np.stack([xc - d, xc - w], axis=1) - level)
        st["n"][rows] = n + 1
        st["t0"][rows] = t0
        st["t_last"][rows] = tsf
        st["dt"][rows] = dt
        st["fast"][rows] = fast
        st["level"][rows] = level
        st["err"][rows] = err
        # profile_alpha is the weight of one hour's worth of samples: a bin
        # learns at the same speed per day whatever the sampling interval
        per_hour = np.clip(np.where(dt > 0, dt, HOUR_MS) / HOUR_MS, 1e-3, 1.0)
        pa = 1.0 - (1.0 - self.profile_alpha) ** per_hour
        day[rows, d0] = d_a + pa * (1.0 - fd) * e_d
        day[rows, d1] = day[rows, d1] + pa * fd * e_d
        week[rows, w0] = w_a + pa * (1.0 - fw) * e_w
        week[rows, w1] = week[rows, w1] + pa * fw * e_w
        return StepOut(
            score=1.0 - np.exp(-0.5 * np.maximum(z - 2.0, 0.0) ** 2 / 4.0),
            raw=z,
            yhat=yhat,
            lower=yhat - half,
            upper=yhat + half,
            anomaly_score=score_a,
            extra={
                "model": k.astype(np.float64),
                "sigma": sigma,
                "season": np.where(k == 1, d, np.where(k == 2, w, 0.0)),
            },
        )


register(SeasonalBaseline.name, lambda seed: SeasonalBaseline(seed))
