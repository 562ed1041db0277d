"""Forecasting many series: a fallback chain per series, optional worker processes.

Models are pure; this module is the orchestration around them. For each series
the forecaster is tried first, then the seasonal naive and the naive forecast;
a series that defeats all of them (no finite value at all) gets an all-NaN
result with ``model="failed"`` and the reason in ``notes`` — the batch always
returns one result per input, in order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np

from perfintel.errors import PerfintelError

from .base import DEFAULT_LEVELS, Forecaster, ForecastResult, check_args
from .naive import Naive, SeasonalNaive
from .seasons import season_lengths_for


def _failed(h: int, levels: Sequence[int], reason: str) -> ForecastResult:
    nan = np.full(h, np.nan)
    return ForecastResult(
        nan,
        {lv: nan.copy() for lv in levels},
        {lv: nan.copy() for lv in levels},
        "failed",
        notes=(reason,),
    )


def forecast_one(
    y: np.ndarray,
    h: int,
    season_lengths: Sequence[int] | None,
    levels: Sequence[int],
    forecaster: Forecaster | None,
) -> ForecastResult:
    """Forecast one series with the fallback chain (never raises for bad data)."""
    from .auto import AutoForecaster

    chain: list[Forecaster] = [forecaster or AutoForecaster(), SeasonalNaive(), Naive()]
    reasons: list[str] = []
    for model in chain:
        try:
            res = model.fit_predict(y, h, season_lengths=season_lengths, levels=levels)
        except (PerfintelError, ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            reasons.append(f"{model.name}: {exc}")
            continue
        if np.all(np.isfinite(res.mean)):
            if reasons:
                return ForecastResult(
                    res.mean,
                    res.lo,
                    res.hi,
                    res.model,
                    res.backtest,
                    res.season_lengths,
                    (*res.notes, *reasons),
                )
            return res
        reasons.append(f"{model.name}: non-finite forecast")
    return _failed(h, levels, "; ".join(reasons))


Job = tuple[
    list[np.ndarray], int, Sequence[int] | None, float | None, tuple[int, ...], Forecaster | None
]


def _run_chunk(job: Job) -> list[ForecastResult]:
    series, h, seasons, step, levels, forecaster = job
    out = []
    for y in series:
        s = season_lengths_for(step, y.size) if seasons is None and step else seasons
        out.append(forecast_one(y, h, s, levels, forecaster))
    return out


def forecast_many(
    series: Sequence[np.ndarray],
    h: int,
    *,
    season_lengths: Sequence[int] | None = None,
    step_seconds: float | None = None,
    levels: Sequence[int] = DEFAULT_LEVELS,
    forecaster: Forecaster | None = None,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> list[ForecastResult]:
    """One :class:`ForecastResult` per input series, in order.

    ``season_lengths`` applies to every series; when it is ``None`` the periods
    come from ``step_seconds`` (daily and weekly, :func:`.season_lengths_for`,
    per series length) or, without a step, are detected per series from the
    data. ``workers > 1`` spreads the series over that many processes.
    ``progress(done, total)`` is called as series complete.
    """
    lv = check_args(h, levels)
    data = [np.asarray(y, dtype=np.float64) for y in series]
    total = len(data)
    size = max(1, min(16, total // (4 * max(workers, 1)) or 1))
    jobs: list[Job] = [
        (data[i : i + size], int(h), season_lengths, step_seconds, lv, forecaster)
        for i in range(0, total, size)
    ]
    results: list[list[ForecastResult]] = [[] for _ in jobs]
    done = 0
    if workers <= 1 or len(jobs) < 2:
        for k, job in enumerate(jobs):
            results[k] = _run_chunk(job)
            done += len(job[0])
            if progress:
                progress(done, total)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(_run_chunk, job): k for k, job in enumerate(jobs)}
            for fut in as_completed(futures):
                k = futures[fut]
                results[k] = fut.result()
                done += len(jobs[k][0])
                if progress:
                    progress(done, total)
    return [r for part in results for r in part]
