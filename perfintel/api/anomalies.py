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
from perfintel.api.params import SelectorText, TimeValue
from perfintel.api.responses import JSONResponse
from perfintel.config import parse_duration
from perfintel.errors import BadInputError, NotFoundError
from perfintel.model import parse_selector
from perfintel.performance import anomalies as an

router = APIRouter(tags=["performance"])

DETECT_PATH = "/api/v1/performance/detect/anomalies"
MAX_WARMUP_S = 30 * 86400.0


def _step(value: str) -> str:
    if parse_duration(value) <= 0:
        raise ValueError("must be a positive duration")
    return value


def _warmup(value: str) -> str:
    if parse_duration(value) > MAX_WARMUP_S:
        raise ValueError("must be at most 30d")
    return value


def _duration(value: str | float) -> str:
    try:
        parse_duration(value)
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    return str(value)


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


StepText = Annotated[str | float, AfterValidator(_duration), AfterValidator(_step)]
WarmupText = Annotated[str | float, AfterValidator(_duration), AfterValidator(_warmup)]
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

    selector: SelectorText = Field(description='Series selector, e.g. node_load1{job="node"}.')
    start: TimeValue | None = Field(
        None, description="Start of the range: Unix seconds or RFC3339; default end − 24h."
    )
    end: TimeValue | None = Field(
        None, description="End of the range: Unix seconds or RFC3339; default now."
    )
    step: StepText | None = Field(
        None,
        description="Score the mean per step (e.g. 5m); default the raw samples, or 1m buckets "
        "when the raw data is denser than one sample a minute.",
        examples=["1m"],
    )
    sensitivity: Sensitivity = Field(
        "medium",
        description="low, medium or high (score thresholds 0.8, 0.6 — the detector's own alarm "
        "level — and 0.4), or a number s in (0, 1] for the threshold 1 − 0.8·s.",
        json_schema_extra={"anyOf": [{"enum": ["low", "medium", "high"]}, {"type": "number"}]},
    )
    warmup: WarmupText | None = Field(
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
    selector = parse_selector(body.selector)
    start_ms, end_ms = request_range(body.start, body.end, an.DEFAULT_RANGE_MS)
    options = an.DetectOptions(
        threshold=an.threshold_of(body.sensitivity),
        step_ms=round(parse_duration(body.step) * 1000) if body.step is not None else None,
        warmup_ms=(
            round(parse_duration(body.warmup) * 1000)
            if body.warmup is not None
            else an.DEFAULT_WARMUP_MS
        ),
        max_samples=request.app.state.query_settings.max_samples,
    )
    store = request.app.state.store
    t0 = time.perf_counter()

    def work() -> an.DetectReport:
        report = an.detect(store, selector, start_ms, end_ms, options)
        if not report.series:
            raise NotFoundError(
                f"no series match selector {selector} with data between "
                f"{rfc3339(start_ms)} and {rfc3339(end_ms)}"
            )
        return report

    report = await run_in_threadpool(work)
    out = render_detect(report, body.sensitivity)
    request.app.state.metrics.query_duration.labels(endpoint="detect_anomalies").observe(
        time.perf_counter() - t0
    )
    return JSONResponse(out)
