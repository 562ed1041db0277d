"""Forecasts and capacity plans over stored metrics, over HTTP.

* ``POST /api/v1/performance/predict/metrics`` — forecast every series matching a selector;
* ``POST /api/v1/performance/capacity/analyze`` — when usage reaches capacity, per scenario
  (``GET`` with query parameters too, e.g. for an ``<img>`` with ``format=png``).

Thin adapters: the bodies are validated by pydantic (unknown fields, bad
selectors and out-of-range values are HTTP 400 naming the field), the work
runs in :mod:`perfintel.performance` on a worker thread, and the results are
rendered here (non-finite numbers as ``null``).

A selector that matches no series with data in the history window is HTTP
404 (``errorType: not_found``) with a message naming the selector and the
window; more than ``MAX_SERIES`` series is HTTP 422.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.concurrency import run_in_threadpool

from perfintel.analysis.capacity import Scenario
from perfintel.analysis.capacity_projection import UsageProjection
from perfintel.api.auth import require
from perfintel.api.params import PositiveDurationMs, TimeValue
from perfintel.api.responses import JSONResponse
from perfintel.errors import BadInputError, NotFoundError
from perfintel.model import format_series
from perfintel.performance import capacity as cap
from perfintel.performance import forecasting
from perfintel.performance.expression import AnalysisQuery, describe, parse_analysis_query
from perfintel.performance.history import (
    DAY_MS,
    MAX_HORIZON_MS,
    MAX_SERIES,
    MIN_HORIZON_MS,
    Window,
    choose_window,
)
from perfintel.query.settings import QuerySettings

router = APIRouter(tags=["performance"])

PREDICT_PATH = "/api/v1/performance/predict/metrics"
CAPACITY_PATH = "/api/v1/performance/capacity/analyze"


# -- request bodies -----------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    history: PositiveDurationMs | None = Field(
        None,
        description="History to fit on (e.g. 14d); default by the horizon: 7d (1m steps) for "
        "horizons up to 6h, 28d (5m) up to 3d, else up to 365d (1h). At most 365d and 20,000 steps.",
        examples=["14d"],
    )
    step: PositiveDurationMs | None = Field(
        None,
        description="Step of the history and the forecast (e.g. 5m); default by the horizon "
        "(1m, 5m or 1h). Steps that are multiples of a rollup tier (5m, 1h) read the tier.",
        examples=["5m"],
    )
    end: TimeValue | None = Field(
        None, description="End of the history: Unix seconds, RFC 3339 or now-…; default now."
    )


class PredictRequest(_Body):
    """Forecast every series matching ``selector`` ``horizon`` ahead."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"selector": 'node_load1{instance="web-1"}', "horizon": "4h", "levels": [80, 95]}
            ]
        },
    )

    selector: str = Field(
        min_length=1,
        description='Series selector, e.g. node_load1{job="node"}, or any PromQL expression, '
        "e.g. rate(http_requests_total[5m]), evaluated over the history at the step; each "
        "result series is forecast.",
    )
    horizon: PositiveDurationMs = Field(
        description="How far ahead: a duration from 1m to 365d (e.g. 4h, 30d).", examples=["4h"]
    )
    levels: list[int] = Field(
        default=[80, 95],
        min_length=1,
        max_length=5,
        description="Central prediction-interval levels in percent, each in (0, 100).",
    )
    write_back: bool = Field(
        False,
        description="Also store the forecast as yhat, yhat_lower and yhat_upper (labels of the "
        'series plus for="<metric>"; the bounds of the widest level, with level="<level>"). '
        "Needs the write scope.",
    )

    @field_validator("horizon")
    @classmethod
    def _horizon(cls, value: int) -> int:
        if not MIN_HORIZON_MS <= value <= MAX_HORIZON_MS:
            raise ValueError("must be between 1m and 365d")
        return value

    @field_validator("levels")
    @classmethod
    def _levels(cls, value: list[int]) -> list[int]:
        for lv in value:
            if not 0 < lv < 100:
                raise ValueError(f"each level must be in (0, 100), got {lv}")
        return sorted(set(value))


class ScenarioIn(BaseModel):
    """``usage = level × (now + growth × trend + seasonal shape + noise)``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, examples=["+30% traffic"])
    growth: float = Field(
        1.0, ge=0, le=100, description="Multiplies the growth (1.3: grows 30 % faster)."
    )
    level: float = Field(
        1.0, gt=0, le=100, description="Multiplies all projected usage (1.3: 30 % more of it)."
    )


class CapacityRequest(_Body):
    """When does usage reach capacity, and how much capacity keeps it under the target?"""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "usage": 'node_filesystem_avail_bytes{mountpoint="/"}',
                    "usage_kind": "available",
                    "capacity": "node_filesystem_size_bytes",
                    "horizon_days": 30,
                },
                {"usage": "tenant_storage_used_bytes", "capacity": 5e11, "horizon_days": 90},
            ]
        },
    )

    usage: str = Field(
        min_length=1,
        description="Selector of the usage series, or any PromQL expression (evaluated over the "
        "history at the step); one plan per series.",
    )
    capacity: float | str = Field(
        description="A positive number, or a selector (or PromQL expression) of capacity series "
        "matched to each usage series by their labels other than the metric name (see match_on)."
    )
    usage_kind: Literal["used", "available"] = Field(
        "used",
        description='"used": the usage series is what is used. "available": it is what is free, '
        "and usage = capacity − available (e.g. node_filesystem_avail_bytes with "
        "node_filesystem_size_bytes as capacity).",
    )
    match_on: list[str] | None = Field(
        None,
        description="Labels that pair a capacity series with a usage series (PromQL on(...)); "
        "default: all labels but the metric name; [] pairs every usage series with the one "
        "capacity series.",
    )
    horizon_days: float = Field(30.0, ge=1, le=365, description="How far ahead, 1 to 365 days.")
    scenarios: list[ScenarioIn] = Field(
        default_factory=lambda: [
            ScenarioIn(name=s.name, growth=s.growth, level=s.level) for s in cap.TRAFFIC_SCENARIOS
        ],
        min_length=1,
        max_length=10,
        description='What-ifs, the first one summarised; default "baseline" and '
        '"+30% traffic" (growth × 1.3: fills 30 % faster; for rate-like resources such as '
        "CPU send level: 1.3 instead).",
    )
    target_utilisation: float = Field(
        0.8, gt=0, le=1, description="Capacity needed keeps the P90 peak under this fraction."
    )
    resource: str | None = Field(
        None, max_length=200, description='Name in the sentences (e.g. "disk"); default the metric.'
    )
    format: Literal["json", "png"] = Field(
        "json", description="png: a chart of the first resource instead of JSON."
    )
    projection: bool = Field(
        False,
        description="true: each resource's answer carries the baseline's projected usage "
        "(projection: {timestamps, p10, p50, p90}, up to 300 future steps, ~20 KB per resource) "
        "for a chart; false (default): projection is null. A PNG always draws it.",
    )

    @field_validator("capacity")
    @classmethod
    def _capacity(cls, value: float | str) -> float | str:
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                return value  # a selector or expression: checked with the query limits
        else:
            number = value
        if not (math.isfinite(number) and number > 0):
            raise ValueError("a capacity number must be positive and finite")
        return number


# -- rendering ----------------------------------------------------------------


def _floats(values: np.ndarray) -> list[float | None]:
    out: list[float | None] = values.tolist()
    if not np.all(np.isfinite(values)):
        out = [v if v is not None and math.isfinite(v) else None for v in out]
    return out


def _num(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _window(body: _Body, horizon_ms: int) -> Window:
    return choose_window(horizon_ms, step_ms=body.step, history_ms=body.history)


def _end_ms(body: _Body) -> int:
    if body.end is None:
        return int(time.time() * 1000)
    return round(float(body.end) * 1000)


def _no_series(what: str, selector: AnalysisQuery, window: Window) -> NotFoundError:
    days = window.history_ms / DAY_MS
    return NotFoundError(
        f"no series {describe(selector, what)} with data in the history window "
        f"(the last {days:g} days)"
    )


def render_forecast(report: forecasting.ForecastReport, written: int) -> dict[str, Any]:
    series = []
    for f in report.series:
        r = f.result
        bt = r.backtest
        series.append(
            {
                "labels": dict(f.labels),
                "timestamps": f.timestamps.tolist(),
                "mean": _floats(r.mean),
                "bands": {
                    str(lv): {"lower": _floats(r.lo[lv]), "upper": _floats(r.hi[lv])}
                    for lv in report.levels
                },
                "model": r.model,
                "backtest": (
                    {"smape": _num(bt.smape), "mase": _num(bt.mase)} if bt is not None else None
                ),
                "history_points": f.history_points,
                "notes": list(r.notes),
            }
        )
    return {
        "status": "success",
        "data": {
            "step_seconds": report.window.step_ms / 1000,
            "horizon_steps": report.window.horizon_steps,
            "source": report.source,
            "history": {"start": report.history_start_ms, "end": report.history_last_ms},
            "levels": list(report.levels),
            "written": written,
            "series": series,
        },
    }


def _exhaustion(when: float | np.datetime64 | None, days: float | None) -> dict[str, Any] | None:
    if when is None or days is None:
        return None
    if isinstance(when, np.datetime64):
        t = float(when.astype("datetime64[ms]").astype(np.int64)) / 1000
    else:
        t = float(when)
    return {"time": _rfc3339(t), "unix": t, "days": days}


def _projection(proj: UsageProjection | None) -> dict[str, Any] | None:
    """The baseline's P10/P50/P90 usage at the report's kept future steps (Unix seconds);
    ``None`` (``projection: null``) when the request did not ask for it."""
    if proj is None:
        return None
    when = proj.timestamps
    if np.issubdtype(when.dtype, np.datetime64):
        when = when.astype("datetime64[ns]").astype(np.int64) / 1e9

    def col(values: np.ndarray) -> list[float | None]:
        return [v if math.isfinite(v) else None for v in values.tolist()]

    return {
        "timestamps": when.tolist(),
        "p10": col(proj.p10),
        "p50": col(proj.p50),
        "p90": col(proj.p90),
    }


def render_capacity(analysis: cap.CapacityAnalysis, target: float) -> dict[str, Any]:
    resources = []
    for p in analysis.resources:
        rep = p.report
        finite = p.capacity[np.isfinite(p.capacity)]
        scenarios = []
        for s in rep.scenarios:
            scenarios.append(
                {
                    "name": s.scenario.name,
                    "growth": s.scenario.growth,
                    "level": s.scenario.level,
                    "exhaustion": {
                        "p10": _exhaustion(s.p10, s.days_p10),
                        "p50": _exhaustion(s.p50, s.days_p50),
                        "p90": _exhaustion(s.p90, s.days_p90),
                    },
                    "within_horizon": s.p50 is not None,
                    "probability": s.probability,
                    "capacity_needed": _num(s.capacity_needed),
                    "sentence": s.sentence,
                }
            )
        bt = rep.backtest
        resources.append(
            {
                "labels": dict(p.labels),
                "capacity_labels": dict(p.capacity_labels) if p.capacity_labels else None,
                "resource": p.resource,
                "capacity": _num(float(finite[-1])) if finite.size else None,
                "utilisation_now": _num(rep.utilisation_now),
                "summary": rep.summary,
                "history_days": rep.history_days,
                "short_history": rep.short_history,
                "beyond_history": rep.beyond_history,
                "model": rep.model,
                "backtest": (
                    {"days": bt.days, "smape": _num(bt.smape), "coverage80": bt.coverage}
                    if bt is not None
                    else None
                ),
                "scenarios": scenarios,
                "projection": _projection(rep.projection),
            }
        )
    return {
        "status": "success",
        "data": {
            "step_seconds": analysis.window.step_ms / 1000,
            "source": analysis.source,
            "horizon_days": analysis.window.horizon_ms / DAY_MS,
            "target_utilisation": target,
            "resources": resources,
            "skipped": [
                {"labels": dict(s.labels), "series": format_series(s.labels), "reason": s.reason}
                for s in analysis.skipped
            ],
        },
    }


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Bad input; the message names the field"},
    404: {"description": "No series match the selector with data in the history window"},
    422: {"description": f"More than {MAX_SERIES} series, or the query limits were crossed"},
}
_PNG: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}, "description": "JSON, or a PNG with format=png"},
    **_ERRORS,
}

# -- handlers -----------------------------------------------------------------


@router.post(
    PREDICT_PATH,
    dependencies=[Depends(require("read"))],
    summary="Forecast the series matching a selector, with prediction intervals",
    responses=_ERRORS,
    response_description='{"status": "success", "data": {"step_seconds", "source", "series": '
    '[{"labels", "timestamps", "mean", "bands": {"80": {"lower", "upper"}}, "model", '
    '"backtest": {"smape", "mase"}}]}}',
)
async def predict_metrics(request: Request, body: PredictRequest) -> Response:
    if body.write_back:
        await require("write")(request)
    settings: QuerySettings = request.app.state.query_settings
    selector = parse_analysis_query(body.selector, settings, name="selector")
    window = _window(body, body.horizon)
    end_ms = _end_ms(body)
    store = request.app.state.store
    t0 = time.perf_counter()

    def work() -> JSONResponse:  # forecasting and rendering grow with the data: off the loop
        report = forecasting.predict(
            store,
            selector,
            window,
            levels=body.levels,
            end_ms=end_ms,
            max_series=MAX_SERIES,
            max_samples=settings.max_samples,
            settings=settings,
        )
        if not report.series:
            raise _no_series("selector", selector, window)
        written = forecasting.write_back(store, report) if body.write_back else 0
        return JSONResponse(render_forecast(report, written))

    response = await run_in_threadpool(work)
    request.app.state.metrics.query_duration.labels(endpoint="predict_metrics").observe(
        time.perf_counter() - t0
    )
    return response


async def _capacity(request: Request, body: CapacityRequest, fmt: str | None) -> Response:
    settings: QuerySettings = request.app.state.query_settings
    usage = parse_analysis_query(body.usage, settings, name="usage")
    capacity: float | AnalysisQuery = (
        parse_analysis_query(body.capacity, settings, name="capacity")
        if isinstance(body.capacity, str)
        else body.capacity
    )
    window = _window(body, round(body.horizon_days * DAY_MS))
    end_ms = _end_ms(body)
    scenarios = [Scenario(s.name, s.growth, s.level) for s in body.scenarios]
    if len({s.name for s in scenarios}) != len(scenarios):
        raise BadInputError("invalid parameter 'scenarios': names must be distinct")
    store = request.app.state.store
    png = (fmt or body.format) == "png"
    t0 = time.perf_counter()

    def work() -> Response:  # planning, charting and rendering: off the loop
        analysis = cap.analyze(
            store,
            usage,
            capacity,
            window,
            scenarios=scenarios,
            target_utilisation=body.target_utilisation,
            usage_kind=body.usage_kind,
            match_on=body.match_on,
            resource=body.resource,
            end_ms=end_ms,
            max_series=MAX_SERIES,
            max_samples=settings.max_samples,
            settings=settings,
            projection=body.projection or png,  # the chart draws it
        )
        if not analysis.resources and not analysis.skipped:
            raise _no_series("usage", usage, window)
        if not png:
            return JSONResponse(render_capacity(analysis, body.target_utilisation))
        if not analysis.resources:
            reasons = "; ".join(
                f"{format_series(s.labels)}: {s.reason}" for s in analysis.skipped[:3]
            )
            raise NotFoundError(f"no resource could be planned ({reasons})")
        from perfintel.performance.plot import capacity_png

        image = capacity_png(analysis.resources[0], body.target_utilisation)
        return Response(image, media_type="image/png")

    response = await run_in_threadpool(work)
    request.app.state.metrics.query_duration.labels(endpoint="capacity_analyze").observe(
        time.perf_counter() - t0
    )
    return response


_FormatQuery = Query(None, description="png: a chart of the first resource (overrides the body)")


@router.post(
    CAPACITY_PATH,
    dependencies=[Depends(require("read"))],
    summary="Capacity plan: exhaustion times (P10/P50/P90) per resource and scenario",
    responses=_PNG,
)
async def capacity_analyze(
    request: Request,
    body: CapacityRequest,
    format: Literal["json", "png"] | None = _FormatQuery,
) -> Response:
    return await _capacity(request, body, format)


_QUERY_FIELDS = (
    "usage",
    "capacity",
    "usage_kind",
    "match_on",
    "horizon_days",
    "target_utilisation",
    "history",
    "step",
    "end",
    "resource",
    "format",
    "projection",
)


@router.get(
    CAPACITY_PATH,
    dependencies=[Depends(require("read"))],
    summary="Capacity plan from query parameters (default scenarios); format=png for a chart",
    description="Query parameters as the POST body's fields (match_on comma-separated; "
    "scenarios are the defaults).",
    openapi_extra={
        "parameters": [
            {
                "name": name,
                "in": "query",
                "required": name in ("usage", "capacity"),
                "schema": {"type": "boolean" if name == "projection" else "string"},
                "description": CapacityRequest.model_fields[name].description or "",
            }
            for name in _QUERY_FIELDS
        ]
    },
    responses=_PNG,
)
async def capacity_analyze_get(request: Request) -> Response:
    params: dict[str, Any] = {}
    for key, value in request.query_params.multi_items():
        if key in params:
            raise BadInputError(f"invalid parameter {key!r}: given more than once")
        params[key] = value
    if "match_on" in params:
        params["match_on"] = _split(params["match_on"])
    try:
        body = CapacityRequest.model_validate(params)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    return await _capacity(request, body, None)


def _split(text: str) -> Sequence[str]:
    return [p.strip() for p in text.split(",") if p.strip()]
