"""The automatic forecaster: the best few of several models, chosen by backtest.

Every member forecasts the last windows of the history (rolling origin, see
:func:`.backtest.origins_for`): as many as cover ``BACKTEST_POINTS`` steps,
between ``MIN_ORIGINS`` and ``origins`` (8) windows; members are ranked by their mean
absolute error over those windows in model space (for a positive series: logs,
so roughly a relative error), and the forecast is the mean of the ``top_k``
best (in model space: a geometric mean for positive series). The ensemble's
own errors on the same windows calibrate its prediction intervals
(:mod:`.intervals`). A member that raises or returns non-finite values is left
out for that series; with no member left the result is the naive forecast.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .ar import SeasonalAR
from .backtest import origins_for
from .base import Forecaster, ForecastResult, constant_or_naive, finish
from .naive import SeasonalNaive
from .prep import Prepared
from .profile import SeasonalProfile
from .theta import Theta

#: backtest windows: enough to cover this many steps, at least MIN_ORIGINS of them
BACKTEST_POINTS = 384
MIN_ORIGINS = 4


def default_members() -> list[Forecaster]:
    return [
        SeasonalAR("short"),
        SeasonalAR("multi"),
        SeasonalAR("long"),
        SeasonalNaive(),
        SeasonalNaive(longest=True),
        Theta(),
        SeasonalProfile(all_seasons=True, level="window"),
        SeasonalProfile(all_seasons=False, level="last"),
    ]


def _safe_point(m: Forecaster, z: np.ndarray, h: int, seasons: Sequence[int]) -> np.ndarray | None:
    if z.size < m.min_length(seasons):
        return None
    try:
        f = np.asarray(m.point(z, h, seasons), dtype=np.float64)
    except (ValueError, ArithmeticError, np.linalg.LinAlgError):
        return None
    if f.shape != (h,) or not np.all(np.isfinite(f)):
        return None
    return f


class AutoForecaster(Forecaster):
    """Mean of the ``top_k`` members with the lowest rolling-origin backtest error."""

    name = "auto"

    def __init__(
        self, members: Sequence[Forecaster] | None = None, top_k: int = 3, origins: int = 8
    ) -> None:
        self.members = list(members) if members is not None else default_members()
        self.top_k = top_k
        self.origins = origins

    def min_length(self, seasons: Sequence[int]) -> int:
        return min(m.min_length(seasons) for m in self.members)

    def point(self, z: np.ndarray, h: int, seasons: Sequence[int]) -> np.ndarray:
        chosen, _, _, _ = self._choose(z, h, seasons)
        if not chosen:
            return np.full(h, z[-1])
        return self._combine(z, h, seasons, chosen)

    def _choose(
        self, z: np.ndarray, h: int, seasons: Sequence[int]
    ) -> tuple[list[int], int, list[int], dict[int, list[np.ndarray]]]:
        """Indices of the chosen members, the window, its starts and the members' window forecasts."""
        hb, _ = origins_for(z.size, h, 1, 1)
        count = min(self.origins, max(MIN_ORIGINS, -(-BACKTEST_POINTS // hb)))
        hb, starts = origins_for(z.size, h, count, self.min_length(seasons))
        err: dict[int, float] = {}
        fcs: dict[int, list[np.ndarray]] = {}
        for i, m in enumerate(self.members):
            total = 0.0
            got: list[np.ndarray] = []
            for s in starts:
                f = _safe_point(m, z[:s], hb, seasons)
                if f is None:
                    break
                total += float(np.mean(np.abs(z[s : s + hb] - f)))
                got.append(f)
            else:
                if starts:
                    err[i] = total
                    fcs[i] = got
        ranked = sorted(err, key=lambda i: (err[i], i))
        return ranked, hb, starts, fcs

    def _combine(
        self, z: np.ndarray, h: int, seasons: Sequence[int], ranked: list[int]
    ) -> np.ndarray:
        out: list[np.ndarray] = []
        for i in ranked:
            f = _safe_point(self.members[i], z, h, seasons)
            if f is not None:
                out.append(f)
            if len(out) == self.top_k:
                break
        return np.mean(out, axis=0) if out else np.full(h, z[-1])

    def _fit_prepared(
        self, prep: Prepared, h: int, seasons: tuple[int, ...], levels: tuple[int, ...]
    ) -> ForecastResult:
        z = prep.z
        hh = h + prep.trailing
        if prep.constant or z.size < self.min_length(seasons):
            return constant_or_naive(prep, h, seasons, levels)
        ranked, hb, starts, fcs = self._choose(z, hh, seasons)
        if not ranked:
            return constant_or_naive(prep, h, seasons, levels)
        used: list[int] = []
        finals: list[np.ndarray] = []
        for i in ranked:
            f = _safe_point(self.members[i], z, hh, seasons)
            if f is not None:
                used.append(i)
                finals.append(f)
            if len(used) == self.top_k:
                break
        if not used:
            return constant_or_naive(prep, h, seasons, levels)
        zf = np.mean(finals, axis=0)
        window_fc = [np.mean([fcs[i][k] for i in used], axis=0) for k in range(len(starts))]
        resid = [z[s : s + hb] - f for s, f in zip(starts, window_fc, strict=True)]
        name = "auto(" + "+".join(self.members[i].name for i in used) + ")"
        return finish(prep, zf, h, seasons, levels, name, starts, hb, window_fc, resid)
