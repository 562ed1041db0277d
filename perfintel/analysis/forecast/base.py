"""The forecasting contract: arrays in, a ``ForecastResult`` out.

Every forecaster in this package is a :class:`Forecaster` with one public
method, :meth:`Forecaster.fit_predict`::

    fit_predict(y, h, *, season_lengths=None, levels=(80, 95)) -> ForecastResult

``y`` is a 1-D array of regularly spaced observations (oldest first; NaN marks a
missing step), ``h`` the number of steps to forecast after the last element of
``y``. ``season_lengths`` are seasonal periods in steps (``None``: detected
from the data by autocorrelation, ``()``: no seasonality). ``levels`` are the
central prediction-interval coverages in percent.

A concrete model only implements :meth:`Forecaster.point`, the point forecast
on *prepared* data (finite, gap-free, transformed and normalised by
:mod:`.prep`). The base class does everything else the same way for all models:
preparation, a rolling-origin backtest, conformal prediction intervals from the
backtest errors (:mod:`.intervals`) and the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from perfintel.errors import BadInputError

from .backtest import BacktestErrors, origins_for, score_backtest
from .intervals import conformal_intervals, random_walk_intervals
from .prep import Prepared, prepare
from .seasons import detect_season_lengths, usable_seasons

DEFAULT_LEVELS: tuple[int, ...] = (80, 95)


@dataclass(frozen=True)
class ForecastResult:
    """A forecast with prediction intervals.

    ``mean`` has ``h`` values; ``lo[level]`` and ``hi[level]`` are the bounds of
    the central ``level`` % prediction interval (``lo <= mean <= hi``).
    ``backtest`` is the rolling-origin backtest accuracy of the same procedure
    on the series' own history (``None`` when the history was too short).
    """

    mean: np.ndarray
    lo: dict[int, np.ndarray]
    hi: dict[int, np.ndarray]
    model: str
    backtest: BacktestErrors | None = None
    season_lengths: tuple[int, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, np.ndarray]:
        """statsforecast-style keys: ``mean``, ``lo-80``, ``hi-80``, ..."""
        out = {"mean": self.mean}
        for level in sorted(self.lo):
            out[f"lo-{level}"] = self.lo[level]
            out[f"hi-{level}"] = self.hi[level]
        return out


def check_args(h: int, levels: Sequence[int]) -> tuple[int, ...]:
    if not isinstance(h, int | np.integer) or h < 1:
        raise BadInputError(f"forecast horizon must be a positive integer, got {h!r}")
    out = tuple(int(lv) for lv in levels)
    for lv in out:
        if not 0 < lv < 100:
            raise BadInputError(f"interval level must be in (0, 100), got {lv}")
    return out


def resolve_seasons(prep: Prepared, season_lengths: Sequence[int] | None) -> tuple[int, ...]:
    if season_lengths is None:
        return tuple(detect_season_lengths(prep.z))
    return usable_seasons(prep.z.size, season_lengths)


class Forecaster:
    """Base class of all models: subclasses implement :meth:`point`."""

    #: short model name reported in ``ForecastResult.model``
    name: str = "forecaster"
    #: number of backtest origins used for the interval calibration
    origins: int = 8

    def min_length(self, seasons: Sequence[int]) -> int:
        """Fewest prepared points :meth:`point` needs (else it is not applicable)."""
        return 2

    def point(self, z: np.ndarray, h: int, seasons: Sequence[int]) -> np.ndarray:
        """Point forecast of ``h`` steps on prepared data ``z`` (model space)."""
        raise NotImplementedError

    def fit_predict(
        self,
        y: np.ndarray,
        h: int,
        *,
        season_lengths: Sequence[int] | None = None,
        levels: Sequence[int] = DEFAULT_LEVELS,
    ) -> ForecastResult:
        levels = check_args(h, levels)
        prep = prepare(y, min(season_lengths) if season_lengths else None)
        seasons = resolve_seasons(prep, season_lengths)
        return self._fit_prepared(prep, int(h), seasons, levels)

    # -- shared machinery -------------------------------------------------
    def _fit_prepared(
        self, prep: Prepared, h: int, seasons: tuple[int, ...], levels: tuple[int, ...]
    ) -> ForecastResult:
        z = prep.z
        hh = h + prep.trailing
        if prep.constant or z.size < self.min_length(seasons):
            return constant_or_naive(prep, h, seasons, levels)
        zf = self.point(z, hh, seasons)
        hb, starts = origins_for(z.size, hh, self.origins, self.min_length(seasons))
        resid = []
        fcs = []
        for s in starts:
            f = self.point(z[:s], hb, seasons)
            fcs.append(f)
            resid.append(z[s : s + hb] - f)
        return finish(prep, zf, h, seasons, levels, self.name, starts, hb, fcs, resid)


def finish(
    prep: Prepared,
    zf: np.ndarray,
    h: int,
    seasons: tuple[int, ...],
    levels: tuple[int, ...],
    name: str,
    starts: Sequence[int],
    hb: int,
    fcs: Sequence[np.ndarray],
    resid: Sequence[np.ndarray],
) -> ForecastResult:
    """Intervals from backtest residuals, back-transform, drop the trailing gap."""
    hh = zf.size
    if resid:
        lo_z, hi_z = conformal_intervals(zf, np.vstack(resid), levels)
        bt = score_backtest(prep, starts, hb, fcs, seasons)
    else:
        lo_z, hi_z = random_walk_intervals(prep.z, zf, levels)
        bt = None
    t = prep.trailing
    floor = 0.0 if prep.nonnegative else -np.inf
    mean = np.maximum(prep.to_data(zf)[t:hh], floor)
    lo = {lv: np.minimum(np.maximum(prep.to_data(lo_z[lv])[t:hh], floor), mean) for lv in levels}
    hi = {lv: np.maximum(prep.to_data(hi_z[lv])[t:hh], mean) for lv in levels}
    return ForecastResult(mean, lo, hi, name, bt, seasons)


def constant_or_naive(
    prep: Prepared, h: int, seasons: tuple[int, ...], levels: tuple[int, ...]
) -> ForecastResult:
    """The answer for constant or too-short series: the last value, random-walk bands."""
    zf = np.full(h + prep.trailing, prep.z[-1])
    label = "constant" if prep.constant else "naive"
    return finish(prep, zf, h, seasons, levels, label, [], 0, [], [])
