"""Forecasts of stored series: history → ``forecast_many`` → results, optional write-back.

:func:`predict` loads the regular history of every series matching a
selector (:mod:`.history`), forecasts each with the automatic forecaster and
its fallback chain (``forecast_many``, daily/weekly seasons from the step)
and returns one :class:`SeriesForecast` per series, timestamped on the
continuation of the history's grid.

Write-back
----------
:func:`forecast_batch` turns forecasts into samples named as vmanomaly
names them, so dashboards can overlay them on the original series:

* ``yhat``        — the mean forecast;
* ``yhat_lower``  — the lower bound of the widest requested interval;
* ``yhat_upper``  — its upper bound;

each with the original series' labels plus ``for="<original metric name>"`` (for a
series without a name, the result of an expression such as ``rate(x[5m])``: the
expression's text) and
``model_alias="forecast"`` (vmanomaly's label for which model wrote a series; it
keeps forecasts apart from the online detector's ``yhat`` of the same series);
the bounds also carry ``level="<that interval's level>"`` (e.g. ``"95"``).
An original label named ``for``, ``model_alias`` or ``level`` is overwritten. Non-finite
values (a series whose every model failed) are not written.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from perfintel.analysis.forecast import ForecastResult, forecast_many
from perfintel.batch import SampleBatch
from perfintel.model import METRIC_NAME, LabelSet, label_set, metric_name
from perfintel.performance.expression import AnalysisQuery
from perfintel.performance.history import MAX_SERIES, HistorySet, Window, load_history
from perfintel.query.settings import QuerySettings
from perfintel.storage.base import SampleReader, SampleWriter

YHAT = "yhat"
YHAT_LOWER = "yhat_lower"
YHAT_UPPER = "yhat_upper"


@dataclass
class SeriesForecast:
    """The forecast of one series: ``timestamps`` (int64 ms) of the ``h`` future steps."""

    labels: LabelSet
    timestamps: np.ndarray
    result: ForecastResult
    history_points: int


@dataclass
class ForecastReport:
    window: Window
    source: str
    levels: tuple[int, ...]
    history_start_ms: int
    history_last_ms: int
    series: list[SeriesForecast]
    #: what was forecast (a selector or expression); the ``for`` label of a series without a name
    query: str = ""


def predict(
    reader: SampleReader,
    selector: AnalysisQuery,
    window: Window,
    *,
    levels: Sequence[int] = (80, 95),
    end_ms: int | None = None,
    max_series: int = MAX_SERIES,
    max_samples: int | None = None,
    settings: QuerySettings | None = None,
) -> ForecastReport:
    """Forecast every series of ``selector`` (a selector or any PromQL expression) over
    ``window`` (history ending at ``end_ms``, default now). An empty selection gives a
    report with no series."""
    end = int(time.time() * 1000) if end_ms is None else int(end_ms)
    hist = load_history(
        reader,
        selector,
        end,
        window,
        max_series=max_series,
        max_samples=max_samples,
        settings=settings,
    )
    report = forecast_history(hist, window, levels)
    report.query = str(selector)
    return report


def forecast_history(
    hist: HistorySet, window: Window, levels: Sequence[int] = (80, 95)
) -> ForecastReport:
    """The pure half of :func:`predict`: forecasts of already loaded histories."""
    lv = tuple(sorted({int(x) for x in levels}))
    h = window.horizon_steps
    step = hist.step_ms
    results = forecast_many([s.values for s in hist.series], h, step_seconds=step / 1000, levels=lv)
    future = hist.last_ms + step * np.arange(1, h + 1, dtype=np.int64)
    out = [
        SeriesForecast(s.labels, future, r, int(np.isfinite(s.values).sum()))
        for s, r in zip(hist.series, results, strict=True)
    ]
    return ForecastReport(window, hist.source, lv, hist.start_ms, hist.last_ms, out)


def forecast_labels(
    labels: LabelSet, name: str, level: int | None = None, query: str = ""
) -> LabelSet:
    """The write-back label set: ``labels`` renamed to ``name`` with ``for`` (and ``level``);
    ``for`` is the metric name, or ``query`` for a series without one (``rate(...)``)."""
    d = dict(labels)
    d["for"] = metric_name(labels) or query
    d["model_alias"] = "forecast"
    d[METRIC_NAME] = name
    if level is not None:
        d["level"] = str(level)
    return label_set(d)


def forecast_batch(report: ForecastReport) -> SampleBatch:
    """The ``yhat``/``yhat_lower``/``yhat_upper`` samples of a report (pure)."""
    widest = max(report.levels)
    series: list[LabelSet] = []
    idx: list[np.ndarray] = []
    ts: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    for f in report.series:
        for name, values, level in (
            (YHAT, f.result.mean, None),
            (YHAT_LOWER, f.result.lo[widest], widest),
            (YHAT_UPPER, f.result.hi[widest], widest),
        ):
            ok = np.isfinite(values)
            if not ok.any():
                continue
            idx.append(np.full(int(ok.sum()), len(series), dtype=np.int32))
            series.append(forecast_labels(f.labels, name, level, report.query))
            ts.append(f.timestamps[ok])
            vals.append(np.asarray(values, dtype=np.float64)[ok])
    if not series:
        return SampleBatch.empty()
    return SampleBatch(series, np.concatenate(idx), np.concatenate(ts), np.concatenate(vals))


def write_back(writer: SampleWriter, report: ForecastReport) -> int:
    """Append the forecasts of ``report`` to the store; the number of samples written."""
    batch = forecast_batch(report)
    if not len(batch):
        return 0
    return writer.append(batch).accepted
