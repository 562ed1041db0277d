"""Seasonal baseline with robust residual scoring.

Three forecasters run side by side on every series and the one with the
lowest recent absolute error wins (a simpler one is preferred unless a more
complex one is clearly better), so daily and weekly seasonality are detected
from the data itself, through its own timestamps:

* ``level``  — a fast exponentially weighted level (no seasonality);
* ``daily``  — a slow level plus a learned offset per hour of the day (24 bins);
* ``weekly`` — a slow level plus an offset per hour of the week (168 bins).

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


def hour_bins(ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hour of day 0..23, hour of week 0..167 with Monday 00:00 = 0), UTC."""
    h = ts // HOUR_MS
    return h % 24, (h + 72) % 168


class SeasonalBaseline(VectorModel):
    """Expected value and band from the best of level/daily/weekly forecasters."""

    name = "seasonal"

    def __init__(
        self,
        seed: int = 0,
        fast_alpha: float = 0.1,
        slow_alpha: float = 0.01,
        profile_alpha: float = 0.1,
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
            "fast": Field(()),
            "slow": Field(()),
            "err": Field((3,)),
            "day": Field((24,)),
            "week": Field((168,)),
        }

    def step(self, st: State, rows: np.ndarray, ts: np.ndarray, x: np.ndarray) -> StepOut:
        hb, wb = hour_bins(ts)
        n = st["n"][rows]
        first = n == 0
        t0 = np.where(first, ts.astype(np.float64), st["t0"][rows])
        fast = np.where(first, x, st["fast"][rows])
        slow = np.where(first, x, st["slow"][rows])
        err = st["err"][rows]
        d = st["day"][rows, hb]
        w = st["week"][rows, wb]

        f = np.stack([fast, slow + d, slow + w])  # (3, m)
        age = ts - t0
        floor = 1e-9 + 1e-9 * np.abs(slow)
        pen = np.stack(
            [
                err[:, 0],
                np.where(age >= 2 * DAY_MS, err[:, 1] / self.prefer, np.inf),
                np.where(age >= 14 * DAY_MS, err[:, 2] / self.prefer**2, np.inf),
            ]
        )
        k = np.argmin(pen, axis=0)
        cols = np.arange(len(rows))
        yhat = f[k, cols]
        sigma = _MAD_TO_SIGMA * err[cols, k] + floor
        resid = x - yhat
        z = np.abs(resid) / sigma
        half = self.band * sigma
        score_a = np.abs(resid) / half
        warm = n < 10
        score_a = np.where(warm, 0.0, score_a)
        z = np.where(warm, 0.0, z)

        # -- learn (after scoring) --------------------------------------------
        e = np.abs(x[None, :] - f)  # (3, m)
        lim = self.clip * (_MAD_TO_SIGMA * err.T + floor[None, :])
        e = np.where(first[None, :], 0.0, np.minimum(e, np.where(n[None, :] < 30, np.inf, lim)))
        a_e = np.maximum(self.error_alpha, 1.0 / (n + 1.0))
        err = err + (a_e[:, None] * (e.T - err))
        c = self.clip * sigma
        xc = np.where(n < 30, x, yhat + np.clip(resid, -c, c))
        fast = fast + self.fast_alpha * (x - fast)
        a_s = np.maximum(self.slow_alpha, 1.0 / (n + 1.0))
        base = xc - slow
        slow = slow + a_s * (xc - slow)
        st["n"][rows] = n + 1
        st["t0"][rows] = t0
        st["fast"][rows] = fast
        st["slow"][rows] = slow
        st["err"][rows] = err
        st["day"][rows, hb] = d + self.profile_alpha * (base - d)
        st["week"][rows, wb] = w + self.profile_alpha * (base - w)
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
