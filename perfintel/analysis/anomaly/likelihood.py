"""Anomaly likelihood: how improbable is the recent level of a raw score.

The input is a raw surprise stream (>= 0). Its short exponentially weighted
average ``s`` is compared with the series' own history of that average, kept
as an exponentially decayed histogram (``bins`` bins of ``width``; memory
~``1/decay`` samples). The tail probability ``p`` = share of the history at
or above ``s``'s bin (a never-seen level has ``p`` ~ 1/memory) gives the score
``-log10(p) / log10(memory)`` in [0, 1]. This is the "anomaly likelihood" idea
of Ahmad et al. (2017) with an empirical instead of a Gaussian tail: a single
large raw score in a noisy stream is ordinary, an unusual run of them is not,
and every series is judged against its own history, so one threshold serves
all series. Scores before ``warmup`` samples are 0.
"""

from __future__ import annotations

import numpy as np

from perfintel.analysis.anomaly.base import Field, State, StepOut, VectorModel, register


class AnomalyLikelihood(VectorModel):
    name = "likelihood"

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
        self._norm = float(np.log10(1.0 / decay))
        self._bin_ids = np.arange(bins)

    def fields(self) -> dict[str, Field]:
        return {
            "n": Field(()),
            "short": Field(()),
            "total": Field(()),
            "hist": Field((self.bins,), np.float32),
        }

    def step(self, st: State, rows: np.ndarray, ts: np.ndarray, x: np.ndarray) -> StepOut:
        n = st["n"][rows]
        short = st["short"][rows]
        short = short + np.where(n == 0, 1.0, self.short_alpha) * (x - short)
        pos = np.clip(short / self.width, 0.0, self.bins - 1e-9)
        b = pos.astype(np.int64)
        frac = np.where(b >= self.bins - 1, 0.0, pos - b)
        hist = st["hist"][rows]  # float32, decayed counts
        idx = np.arange(len(rows))
        total = st["total"][rows]
        at_or_above = np.where(self._bin_ids[None, :] >= b[:, None], hist, np.float32(0.0))
        # mass above s, spreading each bin's mass uniformly over the bin
        above = at_or_above.sum(axis=1).astype(np.float64) - frac * hist[idx, b]
        p = (np.maximum(above, 0.0) + 1.0) / (total + 1.0)
        score = np.clip(-np.log10(p) / self._norm, 0.0, 1.0)
        # break ties among never-seen levels by how far the level is
        score = 0.97 * score + 0.03 * (1.0 - np.exp(-np.maximum(short, 0.0)))
        score = np.where(n < self.warmup, 0.0, score)
        hist *= np.float32(1.0 - self.decay)
        hist[idx, b] += np.float32(1.0)
        st["n"][rows] = n + 1
        st["short"][rows] = short
        st["total"][rows] = total * (1.0 - self.decay) + 1.0
        st["hist"][rows] = hist
        return StepOut(score=score, raw=p)


register(AnomalyLikelihood.name, lambda seed: AnomalyLikelihood(seed))
