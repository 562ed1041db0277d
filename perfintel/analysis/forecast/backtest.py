"""Rolling-origin backtests: where the origins go and how the errors are scored."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .prep import Prepared

#: longest backtest window, as a fraction of the history
MAX_WINDOW_FRACTION = 0.25


@dataclass(frozen=True)
class BacktestErrors:
    """Accuracy of a forecaster on its own history.

    The last ``origins`` windows of ``horizon`` steps each were forecast from
    the data before them (non-overlapping, most recent first). ``smape`` is in
    percent (0–200, the M4 definition); ``mase`` divides the mean absolute error
    by the in-sample mean absolute error of the seasonal naive forecast (lag:
    the shortest season, else 1).
    """

    smape: float
    mase: float
    origins: int
    horizon: int


def origins_for(n: int, h: int, max_origins: int, min_train: int) -> tuple[int, list[int]]:
    """Backtest window length and the start index of each window.

    The window is ``h`` steps, shortened to a quarter of the history when ``h``
    is longer; windows are laid back to back from the end, each leaving at least
    ``min_train`` points to fit on.
    """
    hb = max(1, min(h, int(n * MAX_WINDOW_FRACTION)))
    starts: list[int] = []
    s = n - hb
    while len(starts) < max_origins and s >= max(min_train, 1):
        starts.append(s)
        s -= hb
    return hb, starts


def score_backtest(
    prep: Prepared,
    starts: Sequence[int],
    hb: int,
    forecasts: Sequence[np.ndarray],
    seasons: Sequence[int],
) -> BacktestErrors | None:
    """sMAPE and MASE of backtest forecasts (model space) in data units."""
    if not starts:
        return None
    y = prep.to_data(prep.z)
    m = min(seasons) if seasons else 1
    if y.size <= m:
        m = 1
    scale = float(np.mean(np.abs(y[m:] - y[:-m]))) if y.size > m else 0.0
    sm: list[float] = []
    ae: list[float] = []
    for s, f in zip(starts, forecasts, strict=True):
        act = y[s : s + hb]
        fc = prep.to_data(f[: act.size])
        den = np.abs(act) + np.abs(fc)
        with np.errstate(invalid="ignore", divide="ignore"):
            term = np.where(den > 0, 200.0 * np.abs(act - fc) / den, 0.0)
        sm.append(float(np.mean(term)))
        ae.append(float(np.mean(np.abs(act - fc))))
    mae = float(np.mean(ae))
    mase = mae / scale if scale > 0 else (0.0 if mae == 0 else float("inf"))
    return BacktestErrors(float(np.mean(sm)), mase, len(starts), hb)
