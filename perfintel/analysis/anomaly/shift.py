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

from perfintel.analysis.anomaly import steps
from perfintel.analysis.anomaly.base import Field, State, VectorModel, register


class LevelShift(VectorModel):
    """Short-vs-long mean and spread comparison (a smoothed two-window change detector)."""

    name = "shift"
    outputs = ("score", "raw", "z_mean", "z_var")

    def __init__(
        self, seed: int = 0, short_alpha: float = 0.1, long_alpha: float = 0.005, warmup: int = 50
    ) -> None:
        super().__init__(seed)
        self.short_alpha = short_alpha
        self.long_alpha = long_alpha
        self.warmup = warmup

    def params(self) -> np.ndarray:
        return np.array([self.short_alpha, self.long_alpha, float(self.warmup)])

    def fields(self) -> dict[str, Field]:
        # in the order of the slots in ``steps`` (C_*)
        return {"n": Field(), "ms": Field(), "ml": Field(), "sd": Field(), "vs": Field()}

    def _run(
        self, st: State, rows: np.ndarray, ts: np.ndarray, x: np.ndarray, out: np.ndarray
    ) -> None:
        steps.shift_run(st.f, rows, x, self.params(), out)


register(LevelShift.name, lambda seed: LevelShift(seed))
