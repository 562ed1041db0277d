"""Level-shift and variance-change detector.

A short and a long exponentially weighted mean of the input are compared in
units of the long-run spread (mean absolute deviation from the long mean):
a persistent change of level drives the short mean away from the long one long
before the long one follows. The ratio of short- to long-run spread catches a
change of variance (a series turning noisy, or going flat). ``raw`` is the
larger of the two, both in sigma-like units.
"""

from __future__ import annotations

import numpy as np

from perfintel.analysis.anomaly.base import Field, State, StepOut, VectorModel, register

_MAD_TO_SIGMA = 1.2533


class LevelShift(VectorModel):
    """Short-vs-long mean and spread comparison (a smoothed two-window change detector)."""

    name = "shift"

    def __init__(
        self,
        seed: int = 0,
        short_alpha: float = 0.1,
        long_alpha: float = 0.005,
        warmup: int = 50,
    ) -> None:
        super().__init__(seed)
        self.short_alpha = short_alpha
        self.long_alpha = long_alpha
        self.warmup = warmup

    def fields(self) -> dict[str, Field]:
        return {"n": Field(()), "ms": Field(()), "ml": Field(()), "sd": Field(()), "vs": Field(())}

    def step(self, st: State, rows: np.ndarray, ts: np.ndarray, x: np.ndarray) -> StepOut:
        n = st["n"][rows]
        first = n == 0
        ms = np.where(first, x, st["ms"][rows])
        ml = np.where(first, x, st["ml"][rows])
        sd = st["sd"][rows]
        vs = st["vs"][rows]
        dev = np.abs(x - ml)
        ms = ms + self.short_alpha * (x - ms)
        vs = vs + self.short_alpha * (dev - vs)
        floor = 1e-9 + 1e-9 * np.abs(ml)
        sigma = _MAD_TO_SIGMA * sd + floor
        z_mean = np.abs(ms - ml) / sigma
        z_var = np.abs(np.log((vs + floor) / (sd + floor)))
        raw = np.where(n < self.warmup, 0.0, np.maximum(z_mean, z_var))
        a_l = np.maximum(self.long_alpha, 1.0 / (n + 1.0))
        ml = ml + a_l * (x - ml)
        sd = sd + a_l * (dev - sd)
        st["n"][rows] = n + 1
        st["ms"][rows] = ms
        st["ml"][rows] = ml
        st["sd"][rows] = sd
        st["vs"][rows] = vs
        score = 1.0 - np.exp(-0.5 * np.maximum(raw - 1.0, 0.0) ** 2)
        return StepOut(score=score, raw=raw, extra={"z_mean": z_mean, "z_var": z_var})


register(LevelShift.name, lambda seed: LevelShift(seed))
