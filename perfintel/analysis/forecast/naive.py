"""Naive and seasonal naive: the last value, or the last cycle repeated."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .base import Forecaster
from .decompose import tile


class Naive(Forecaster):
    """Repeat the last observation."""

    name = "naive"

    def point(self, z: np.ndarray, h: int, seasons: Sequence[int]) -> np.ndarray:
        return np.full(h, z[-1])


class SeasonalNaive(Forecaster):
    """Repeat the last full cycle of the shortest (default) or longest season.

    Without a usable season it is the naive forecast.
    """

    def __init__(self, longest: bool = False) -> None:
        self.longest = longest
        self.name = "seasonal_naive_long" if longest else "seasonal_naive"

    def _period(self, n: int, seasons: Sequence[int]) -> int:
        ok = [m for m in seasons if m <= n]
        if not ok:
            return 1
        return max(ok) if self.longest else min(ok)

    def min_length(self, seasons: Sequence[int]) -> int:
        return max(2, min(seasons) if seasons else 1)

    def point(self, z: np.ndarray, h: int, seasons: Sequence[int]) -> np.ndarray:
        m = self._period(z.size, seasons)
        return tile(z[-m:], h)
