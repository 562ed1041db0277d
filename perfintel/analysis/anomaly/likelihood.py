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

from perfintel.analysis.anomaly import steps
from perfintel.analysis.anomaly.base import Field, State, VectorModel, register


class AnomalyLikelihood(VectorModel):
    name = "likelihood"
    outputs = ("score", "raw")

    def __init__(
        self,
        seed: int = 0,
        short_alpha: float = 0.2,
        decay: float = 1.0 / 8000.0,
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
        # in the order of the slots in ``steps`` (L_*)
        return {"n": Field(), "short": Field(), "hist": Field(self.bins, "h")}

    def _run(
        self, st: State, rows: np.ndarray, ts: np.ndarray, x: np.ndarray, out: np.ndarray
    ) -> None:
        steps.likelihood_run(st.f, st.h, rows, x, self.params(), out)


register(AnomalyLikelihood.name, lambda seed: AnomalyLikelihood(seed))
