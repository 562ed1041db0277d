"""Forecasting with honest prediction intervals.

Arrays in, :class:`ForecastResult` out (statsforecast's shape: a mean and
``lo``/``hi`` bounds per interval level). :func:`fit_predict` is the automatic
forecaster (a backtest-chosen ensemble, see :mod:`.auto`); the individual
models share the same :class:`Forecaster` contract; :func:`forecast_many` runs
many series with a fallback so one bad series never fails a batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .ar import SeasonalAR
from .auto import AutoForecaster, default_members
from .backtest import BacktestErrors
from .base import DEFAULT_LEVELS, Forecaster, ForecastResult
from .naive import Naive, SeasonalNaive
from .profile import SeasonalProfile
from .runner import forecast_many
from .seasons import detect_season_lengths, season_lengths_for
from .theta import Theta

__all__ = [
    "AutoForecaster",
    "BacktestErrors",
    "ForecastResult",
    "Forecaster",
    "Naive",
    "SeasonalAR",
    "SeasonalNaive",
    "SeasonalProfile",
    "Theta",
    "all_models",
    "default_members",
    "detect_season_lengths",
    "fit_predict",
    "forecast_many",
    "season_lengths_for",
]


def fit_predict(
    y: np.ndarray,
    h: int,
    *,
    season_lengths: Sequence[int] | None = None,
    levels: Sequence[int] = DEFAULT_LEVELS,
) -> ForecastResult:
    """Forecast ``h`` steps after ``y`` with the automatic ensemble (see :mod:`.base`).

    >>> import numpy as np
    >>> y = 100 + 10 * np.sin(np.arange(24 * 14) * 2 * np.pi / 24)
    >>> r = fit_predict(y, 48, season_lengths=[24])
    >>> r.mean.shape, sorted(r.lo)
    ((48,), [80, 95])
    """
    return AutoForecaster().fit_predict(y, h, season_lengths=season_lengths, levels=levels)


def all_models() -> list[Forecaster]:
    """One instance of every model, the ensemble last (the conformance suite runs them all)."""
    return [Naive(), *default_members(), AutoForecaster()]
