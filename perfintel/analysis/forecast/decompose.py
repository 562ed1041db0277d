"""Seasonal profiles by averaging recent cycles (a light, robust decomposition).

A profile of period ``m`` is estimated from the last ``k`` full cycles: each
cycle minus its own mean, then the median over cycles (mean for fewer than
three), re-centred to zero mean. Several periods are removed one after the
other, longest first, so the weekly shape is taken out before the daily one is
measured on what remains. Phases are counted from the end of the series: the
first forecast step has phase 0 of every profile.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: cycles averaged for the longest period and for the shorter ones
CYCLES_LONGEST = 4
CYCLES_OTHER = 7


def tile(pattern: np.ndarray, h: int) -> np.ndarray:
    """Repeat ``pattern`` (phase 0 first) to ``h`` steps."""
    m = pattern.size
    return np.tile(pattern, h // m + 1)[:h]


def align_back(pattern: np.ndarray, n: int) -> np.ndarray:
    """The profile laid over the last ``n`` points of history."""
    m = pattern.size
    full = np.tile(pattern, n // m + 1)
    return full[full.size - n :]


def profile(x: np.ndarray, m: int, cycles: int) -> np.ndarray:
    """Seasonal profile of period ``m`` from the last ``cycles`` full cycles of ``x``."""
    k = max(1, min(cycles, x.size // m))
    w = x[x.size - k * m :].reshape(k, m)
    dev = w - w.mean(axis=1, keepdims=True)
    p = np.median(dev, axis=0) if k >= 3 else dev.mean(axis=0)
    return p - p.mean()


def deseasonalise(z: np.ndarray, h: int, seasons: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(z minus its seasonal profiles, the profiles' sum over the next h steps)``."""
    x = z.copy()
    future = np.zeros(h)
    ordered = sorted((m for m in seasons if z.size >= 2 * m), reverse=True)
    for i, m in enumerate(ordered):
        p = profile(x, m, CYCLES_LONGEST if i == 0 else CYCLES_OTHER)
        x = x - align_back(p, z.size)
        future += tile(p, h)
    return x, future
