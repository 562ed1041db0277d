"""Seasonal profile plus a flat level: two simple, robust seasonal models.

``SeasonalProfile(all_seasons=True, level="window")`` removes every season's
profile (see :mod:`.decompose`) and continues the mean of the last
shortest-season window of the deseasonalised series; ``all_seasons=False,
level="last"`` removes only the shortest season and continues the last
deseasonalised value (an additive-in-logs cousin of M4's Naive2).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from .base import Forecaster
from .decompose import deseasonalise


class SeasonalProfile(Forecaster):
    def __init__(
        self, all_seasons: bool = True, level: Literal["window", "last"] = "window"
    ) -> None:
        self.all_seasons = all_seasons
        self.level = level
        self.name = f"profile_{'all' if all_seasons else 'short'}_{level}"

    def min_length(self, seasons: Sequence[int]) -> int:
        return max(4, 2 * min(seasons)) if seasons else 4

    def point(self, z: np.ndarray, h: int, seasons: Sequence[int]) -> np.ndarray:
        used = list(seasons) if self.all_seasons else list(seasons[:1])
        x, future = deseasonalise(z, h, used)
        if self.level == "last" or not seasons:
            lvl = float(x[-1]) if self.level == "last" else float(np.mean(x[-4:]))
        else:
            lvl = float(np.mean(x[-min(seasons) :]))
        return lvl + future
