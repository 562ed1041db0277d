"""Anomaly detection over stored history, over HTTP.

* ``POST /api/v1/performance/detect/anomalies`` — score every series matching a
  selector over a range and list the anomalies found, with explanations.

A thin adapter: the body is validated by pydantic (unknown fields, a bad
selector, time, duration or sensitivity are HTTP 400 naming the field), the
work runs in :mod:`perfintel.performance.anomalies` on a worker thread, and
non-finite numbers are rendered as ``null``. More than ``MAX_SERIES`` series
(or more points than the limits) is HTTP 422; no series with data in the
range is HTTP 404.

Sensitivity → score threshold: ``low`` 0.8, ``medium`` 0.6 (the detector's own
alarm level), ``high`` 0.4; a number ``s`` in (0, 1] gives ``1 − 0.8 s``.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request, Response
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from perfintel.api.auth import require
from perfintel.api.params import DurationMs, PositiveDurationMs, TimeValue
from perfintel.api.responses import JSONResponse
from perfintel.errors import BadInputError, NotFoundError
from perfintel.performance import anomalies as an
from perfintel.performance.expression import describe, parse_analysis_query
from perfintel.query.settings import QuerySettings

router = APIRouter(tags=["performance"])

DETECT_PATH = "/api/v1/performance/detect/anomalies"
MAX_WARMUP_MS = 30 * 86_400_000


def _warmup(value: int) -> int:
    if value > MAX_WARMUP_MS:
        raise ValueError("must be at most 30d")
    return value


def _sensitivity_in(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("must be low, medium, high or a number in (0, 1]")
    if isinstance(value, str) and value not in an.SENSITIVITIES:
        try:
            return float(value)
        except ValueError:
            pass
    return value


def _sensitivity(value: str | float) -> str | float:
    try:
        an.threshold_of(value)
    except BadInputError:
        raise ValueError("must be low, medium, high or a number in (0, 1]") from None
    return value


WarmupMs = Annotated[DurationMs, AfterValidator(_warmup)]
Sensitivity = Annotated[str | float, BeforeValidator(_sensitivity_in), AfterValidator(_sensitivity)]


class DetectRequest(BaseModel):
    """Find anomalies in the series matching ``selector`` between ``start`` and ``end``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "selector": 'http_request_duration_seconds{job="api"}',
                    "start": "2026-11-25T00:00:00Z",
                    "end": "2026-11-26T00:00:00Z",
                    "sensitivity": "medium",
                }
            ]
        },
    )

    selector: str = Field(
        min_length=1,
        description='Series selector, e.g. node_load1{job="node"}, or any PromQL expression, '
        "e.g. rate(http_requests_total[5m]) or histogram_quantile(0.99, sum by (le) "
        "(rate(http_request_duration_seconds_bucket[5m]))), evaluated over the range "
        "(and the warm-up) at the step; each result series is analysed.",
    )
    start: TimeValue | None = Field(
        None, description="Start of the range: Unix seconds, RFC 3339 or now-1h; default end − 24h."
    )
    end: TimeValue | None = Field(
        None, description="End of the range: Unix seconds, RFC 3339 or now-…; default now."
    )
    step: PositiveDurationMs | None = Field(
        None,
        description="Score the mean per step (e.g. 5m); default the raw samples, or 1m buckets "
        "when the raw data is denser than one sample a minute; an expression is evaluated "
        "at this step (default 1m).",
        examples=["1m"],
    )
    sensitivity: Sensitivity = Field(
        "medium",
        description="low, medium or high (score thresholds 0.8, 0.6 — the detector's own alarm "
        "level — and 0.4), or a number s in (0, 1] for the threshold 1 − 0.8·s.",
        json_schema_extra={"anyOf": [{"enum": ["low", "medium", "high"]}, {"type": "number"}]},
    )
    warmup: WarmupMs | None = Field(
        None,
        description="History before start the detector learns from (not returned); default 7d, "
        f"at most 30d and the latest {an.WARMUP_MAX_POINTS} points; 0 for none.",
        examples=["7d"],
    )


def _floats(a: np.ndarray) -> np.ndarray:
    """As is: the response class (orjson) writes numpy arrays, NaN and ±Inf as ``null``."""
    return np.ascontiguousarray(a, dtype=np.float64)


def _num(v: float) -> float | None:
    return v if math.isfinite(v) else None


def rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def render_detect(report: an.DetectReport, sensitivity: str | float) -> dict[str, Any]:
    series = []
    for s in report.series:
        series.append(
            {
                "labels": dict(s.labels),
                "step_seconds": s.step_ms / 1000 if s.step_ms else None,
                "warmup_points": s.warmup_points,
                "timestamps": np.ascontiguousarray(s.timestamps, dtype=np.int64),
                "values": _floats(s.values),
                "score": _floats(s.score),
                "anomaly_score": _floats(s.anomaly_score),
                "yhat": _floats(s.yhat),
                "yhat_lower": _floats(s.yhat_lower),
                "yhat_upper": _floats(s.yhat_upper),
                "anomalies": [
                    {
                        "start": e.start_ms,
                        "end": e.end_ms,
                        "start_time": rfc3339(e.start_ms),
                        "end_time": rfc3339(e.end_ms),
                        "points": e.points,
                        "peak_score": e.peak_score,
                        "peak_time": e.peak_ms,
                        "peak_value": _num(e.peak_value),
                        "expected": _num(e.expected),
                        "expected_lower": _num(e.expected_lower),
                        "expected_upper": _num(e.expected_upper),
                        "detector": e.detector,
                        "severity": e.severity,
                        "explanation": e.explanation,
                    }
                    for e in s.events
                ],
            }
        )
    return {
        "status": "success",
        "data": {
            "start": report.start_ms,
            "end": report.end_ms,
            "sensitivity": sensitivity,
            "threshold": report.threshold,
            "path": report.path,
            "series": series,
        },
    }


def request_range(
    start: float | str | None, end: float | str | None, default_ms: int
) -> tuple[int, int]:
    """``(start_ms, end_ms)`` of a request: end defaults to now, start to end − ``default_ms``."""
    end_s = float(end) if end is not None else time.time()
    start_s = float(start) if start is not None else end_s - default_ms / 1000
    if start_s > end_s:
        raise BadInputError("invalid parameter 'start': start is after end")
    return int(start_s * 1000), int(end_s * 1000)


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Bad input; the message names the field"},
    404: {"description": "No series match the selector with data in the range"},
    422: {"description": f"More than {an.MAX_SERIES} series, or too many points"},
}


@router.post(
    DETECT_PATH,
    dependencies=[Depends(require("read"))],
    summary="Find anomalies in the series matching a selector, with explanations",
    responses=_ERRORS,
    response_description='{"status": "success", "data": {"threshold", "series": [{"labels", '
    '"timestamps", "values", "score", "anomaly_score", "yhat", "yhat_lower", "yhat_upper", '
    '"anomalies": [{"start", "end", "peak_score", "peak_value", "expected", "expected_lower", '
    '"expected_upper", "detector", "severity", "explanation"}]}]}}',
)
async def detect_anomalies(request: Request, body: DetectRequest) -> Response:
    settings: QuerySettings = request.app.state.query_settings
    selector = parse_analysis_query(body.selector, settings, name="selector")
    start_ms, end_ms = request_range(body.start, body.end, an.DEFAULT_RANGE_MS)
    options = an.DetectOptions(
        threshold=an.threshold_of(body.sensitivity),
        step_ms=body.step,
        warmup_ms=body.warmup if body.warmup is not None else an.DEFAULT_WARMUP_MS,
        max_samples=settings.max_samples,
    )
    store = request.app.state.store
    t0 = time.perf_counter()

    def work() -> JSONResponse:  # detecting and rendering grow with the data: off the loop
        report = an.detect(store, selector, start_ms, end_ms, options, settings)
        if not report.series:
            raise NotFoundError(
                f"no series {describe(selector)} with data between "
                f"{rfc3339(start_ms)} and {rfc3339(end_ms)}"
            )
        return JSONResponse(render_detect(report, body.sensitivity))

    response = await run_in_threadpool(work)
    request.app.state.metrics.query_duration.labels(endpoint="detect_anomalies").observe(
        time.perf_counter() - t0
    )
    return response
