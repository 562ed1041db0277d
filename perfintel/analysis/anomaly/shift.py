"""Level-shift and variance-change detector.

A short and a long exponentially weighted mean of the input are compared in
units of the long-run spread (mean absolute deviation from the long mean):
a persistent change of level drives the short mean away from the long one long
before the long one follows. The ratio of short- to long-run spread catches a
change of variance (a series turning noisy, or going flat). ``raw`` is the
larger of the two, both in sigma-like units.
"""

from __future__ import annotations

import math

import numpy as np

from perfintel.analysis.anomaly.base import Field, State, VectorModel, register
from perfintel.analysis.anomaly.jit import njit
from perfintel.analysis.anomaly.seasonal import MAD_TO_SIGMA

_N, _MS, _ML, _SD, _VS = range(5)
_P_SHORT, _P_LONG, _P_WARMUP = range(3)


@njit
def shift_step(f, r, o, x, prm):  # type: ignore[no-untyped-def]
    """Advance row ``r`` (slots from ``o``) by ``x``; returns (raw, z_mean, z_var)."""
    n = f[r, o + _N]
    first = n == 0
    ms = x if first else f[r, o + _MS]
    ml = x if first else f[r, o + _ML]
    sd = f[r, o + _SD]
    vs = f[r, o + _VS]
    dev = abs(x - ml)
    ms = ms + prm[_P_SHORT] * (x - ms)
    vs = vs + prm[_P_SHORT] * (dev - vs)
    floor = 1e-9 + 1e-9 * abs(ml)
    sigma = MAD_TO_SIGMA * sd + floor
    z_mean = abs(ms - ml) / sigma
    z_var = abs(math.log((vs + floor) / (sd + floor)))
    raw = 0.0 if n < prm[_P_WARMUP] else max(z_mean, z_var)
    a_l = max(prm[_P_LONG], 1.0 / (n + 1.0))
    f[r, o + _N] = n + 1
    f[r, o + _MS] = ms
    f[r, o + _ML] = ml + a_l * (x - ml)
    f[r, o + _SD] = sd + a_l * (dev - sd)
    f[r, o + _VS] = vs
    return raw, z_mean, z_var


@njit
def _shift_run(f, rows, x, prm, out):  # type: ignore[no-untyped-def]
    for i in range(len(x)):
        raw, z_mean, z_var = shift_step(f, rows[i], 0, x[i], prm)
        out[0, i] = 1.0 - math.exp(-0.5 * max(raw - 1.0, 0.0) ** 2)
        out[1, i] = raw
        out[2, i] = z_mean
        out[3, i] = z_var


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
        return {"n": Field(), "ms": Field(), "ml": Field(), "sd": Field(), "vs": Field()}

    def _run(
        self, st: State, rows: np.ndarray, ts: np.ndarray, x: np.ndarray, out: np.ndarray
    ) -> None:
        _shift_run(st.f, rows, x, self.params(), out)


register(LevelShift.name, lambda seed: LevelShift(seed))
