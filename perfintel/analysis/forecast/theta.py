"""The Theta method on the seasonally adjusted series.

The shortest season's profile is removed (:mod:`.decompose`); on the last
``HISTORY_CYCLES`` cycles (at most ``MAX_HISTORY`` points) of what remains,
simple exponential smoothing (alpha chosen on a grid by in-sample one-step
squared error) gives the level and half the slope of a linear fit the drift — the classic Theta(2) forecast of
Assimakopoulos & Nikolopoulos (2000) as Hyndman & Billah (2003) write it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .base import Forecaster
from .decompose import deseasonalise

HISTORY_CYCLES = 14
#: ... but at most this many points
MAX_HISTORY = 3_000
_ALPHAS = np.linspace(0.05, 1.0, 20)


def ses(x: np.ndarray) -> tuple[float, float]:
    """``(alpha, final level)`` of simple exponential smoothing fitted on a grid."""
    from scipy.signal import lfilter  # lazy: scipy costs ~60 MiB at service start-up

    best = (np.inf, 1.0, float(x[-1]))
    for a in _ALPHAS:
        lv = lfilter([a], [1.0, a - 1.0], x, zi=[(1.0 - a) * x[0]])[0]
        e = x[1:] - lv[:-1]
        sse = float(np.einsum("i,i->", e, e))
        if sse < best[0]:
            best = (sse, float(a), float(lv[-1]))
    return best[1], best[2]


class Theta(Forecaster):
    name = "theta"

    def min_length(self, seasons: Sequence[int]) -> int:
        return max(8, 2 * min(seasons)) if seasons else 8

    def point(self, z: np.ndarray, h: int, seasons: Sequence[int]) -> np.ndarray:
        x, future = deseasonalise(z, h, list(seasons[:1]))
        span = min(max(HISTORY_CYCLES * (min(seasons) if seasons else 1), 50), MAX_HISTORY)
        x = x[-span:]
        alpha, level = ses(x)
        t = np.arange(x.size, dtype=np.float64)
        slope = float(np.polyfit(t, x, 1)[0])
        steps = np.arange(1, h + 1, dtype=np.float64)
        drift = 0.5 * slope * (steps - 1 + 1 / alpha - (1 - alpha) ** x.size / alpha)
        return level + drift + future
