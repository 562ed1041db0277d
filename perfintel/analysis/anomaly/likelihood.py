"""Anomaly likelihood: how improbable is the recent level of a raw score.

The input is a raw surprise stream (>= 0). Its short exponentially weighted
average ``s`` is compared with the series' own history of that average, kept
as an exponentially decayed histogram (``bins`` bins of ``width``; memory
~``1/decay`` samples). The tail probability ``p`` = share of the history at
or above ``s`` (a never-seen level has ``p`` ~ 1/memory) gives the score
``-log10(p) / log10(memory)`` in [0, 1]. This is the "anomaly likelihood" idea
of Ahmad et al. (2017) with an empirical instead of a Gaussian tail: a single
large raw score in a noisy stream is ordinary, an unusual run of them is not,
and every series is judged against its own history, so one threshold serves
all series. Scores before ``warmup`` samples are 0.
"""

from __future__ import annotations

import math

import numpy as np

from perfintel.analysis.anomaly.base import Field, State, VectorModel, register
from perfintel.analysis.anomaly.jit import njit

_N, _SHORT, _TOTAL, _HIST = 0, 1, 2, 3
_P_ALPHA, _P_WIDTH, _P_BINS, _P_DECAY, _P_WARMUP, _P_NORM = range(6)


@njit
def likelihood_step(f, r, o, x, prm):  # type: ignore[no-untyped-def]
    """Advance row ``r`` (slots from ``o``) by the raw score ``x``; returns (score, p)."""
    nb = np.int64(prm[_P_BINS])
    keep = 1.0 - prm[_P_DECAY]
    n = f[r, o + _N]
    short = f[r, o + _SHORT]
    short = short + (1.0 if n == 0 else prm[_P_ALPHA]) * (x - short)
    pos = min(max(short / prm[_P_WIDTH], 0.0), nb - 1e-9)
    b = np.int64(pos)
    frac = 0.0 if b >= nb - 1 else pos - b
    h = o + _HIST
    above = 0.0
    for j in range(b, nb):
        above += f[r, h + j]
    above -= frac * f[r, h + b]  # the bin's mass spread uniformly over the bin
    total = f[r, o + _TOTAL]
    p = (max(above, 0.0) + 1.0) / (total + 1.0)
    score = min(max(-math.log10(p) / prm[_P_NORM], 0.0), 1.0)
    # break ties among never-seen levels by how far the level is
    score = 0.97 * score + 0.03 * (1.0 - math.exp(-max(short, 0.0)))
    if n < prm[_P_WARMUP]:
        score = 0.0
    for j in range(nb):
        f[r, h + j] *= keep
    f[r, h + b] += 1.0
    f[r, o + _N] = n + 1
    f[r, o + _SHORT] = short
    f[r, o + _TOTAL] = total * keep + 1.0
    return score, p


@njit
def _likelihood_run(f, rows, x, prm, out):  # type: ignore[no-untyped-def]
    for i in range(len(x)):
        score, p = likelihood_step(f, rows[i], 0, max(x[i], 0.0), prm)
        out[0, i] = score
        out[1, i] = p


class AnomalyLikelihood(VectorModel):
    name = "likelihood"
    outputs = ("score", "raw")

    def __init__(
        self,
        seed: int = 0,
        short_alpha: float = 0.3,
        decay: float = 1.0 / 3000.0,
        width: float = 0.1,
        bins: int = 48,
        warmup: int = 200,
    ) -> None:
        super().__init__(seed)
        self.short_alpha = short_alpha
        self.decay = decay
        self.width = width
        self.bins = bins
        self.warmup = warmup

    def params(self) -> np.ndarray:
        return np.array(
            [
                self.short_alpha,
                self.width,
                float(self.bins),
                self.decay,
                float(self.warmup),
                math.log10(1.0 / self.decay),
            ]
        )

    def fields(self) -> dict[str, Field]:
        return {"n": Field(), "short": Field(), "total": Field(), "hist": Field(self.bins)}

    def _run(
        self, st: State, rows: np.ndarray, ts: np.ndarray, x: np.ndarray, out: np.ndarray
    ) -> None:
        _likelihood_run(st.f, rows, x, self.params(), out)


register(AnomalyLikelihood.name, lambda seed: AnomalyLikelihood(seed))
