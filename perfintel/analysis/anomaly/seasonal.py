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
error (×1.2533 ≈ a Gaussian sigma), never below the spread of the series'
resolution: the rounding to the finest decimal grid its values were seen on
(``steps.series_grid``, kept in the ``grid`` slot), so a series that was constant
has a band of its resolution instead of ~0.
Updates are Huber-clipped so a spike does not inflate the scale or drag the
profile. Nothing is scored before a series' 10th sample nor before its history spans
``warmup_ms`` (``WARMUP_MS``, an hour) since its first sample; the expected value and band
are given from the first. Timestamps are bucketed in UTC. The constants are conventional
smoothing rates, not fitted to a benchmark.
"""

from __future__ import annotations

import numpy as np

from perfintel.analysis.anomaly import steps
from perfintel.analysis.anomaly.base import Field, State, VectorModel, register
from perfintel.analysis.anomaly.steps import DAY_MS, HOUR_MS, MAD_TO_SIGMA

__all__ = ["DAY_MS", "HOUR_MS", "MAD_TO_SIGMA", "MODEL_NAMES", "WARMUP_MS", "SeasonalBaseline"]

MODEL_NAMES = ("level", "daily", "weekly")
#: No anomaly score (``anomaly_score``, z, and the ensemble's NAB score and alarms) until a
#: series' history spans this long since its first sample, besides the sample-count
#: warm-ups: a band needs at least some cycles of the series' short-term behaviour, and ten
#: samples at a 15 s scrape are 2.5 minutes of it. One hour: 240 samples at 15 s, 12 at
#: NAB's 5 minutes (inside NAB's probation, the first 15 % of every file, so the scored part
#: of every NAB file is unaffected). The expected value and band are produced throughout.
WARMUP_MS = HOUR_MS


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
        "grid",
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
        warmup_ms: float = WARMUP_MS,
    ) -> None:
        super().__init__(seed)
        self.fast_alpha = fast_alpha
        self.slow_alpha = slow_alpha
        self.profile_alpha = profile_alpha
        self.error_alpha = error_alpha
        self.band = band
        self.prefer = prefer
        self.clip = clip
        self.warmup_ms = warmup_ms

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
                self.warmup_ms,
            ]
        )

    def fields(self) -> dict[str, Field]:
        # in the order of the slots in ``steps`` (S_*)
        return {
            "n": Field(),
            "t0": Field(),
            "t_last": Field(),
            "dt": Field(),  # typical sampling interval (ms), exponentially weighted
            "fast": Field(),
            "level": Field(2),  # deseasonalised slow levels of the daily and weekly models
            "err": Field(3),
            # the finest grid step the series' values were seen on (0: none seen yet);
            # layout 3, so a state saved before it loads with none seen
            "grid": Field(added=3),
            "day": Field(24, "h"),
            "week": Field(168, "h"),
        }

    def _run(
        self, st: State, rows: np.ndarray, ts: np.ndarray, x: np.ndarray, out: np.ndarray
    ) -> None:
        steps.seasonal_run(st.f, st.h, rows, ts, x, self.params(), out)


register(SeasonalBaseline.name, lambda seed: SeasonalBaseline(seed))
