"""Outliers among peers over stored history, over HTTP.

* ``POST /api/v1/performance/detect/outliers`` — for the series of a selector
  (or a PromQL range query), grouped by the values of the ``by`` labels, flag
  the members that deviate from their peers over the range, with a score per
  member and an explanation.

A thin adapter: the body is validated by pydantic (unknown fields, a bad
selector, time, step, tolerance or pct are HTTP 400 naming the field), data is
read and scored on a worker thread (:mod:`perfintel.performance.outliers`), and
non-finite numbers are rendered as ``null``. Too many series or grid points is
HTTP 422; no series with data in the range is HTTP 404.
"""

from __future__ import annotations

import math
import time
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from perfintel.analysis.outliers import DEFAULT_PCT, DEFAULT_TOLERANCE
from perfintel.api.anomalies import request_range, rfc3339
from perfintel.api.auth import require
from perfintel.api.params import PositiveDurationMs, SelectorText, TimeValue
from perfintel.api.responses import JSONResponse
from perfintel.errors import NotFoundError, QueryLimitError
from perfintel.performance import outliers as po
from perfintel.performance.expression import Expression, evaluate_range, parse_analysis_query
from perfintel.query.settings import QuerySettings
from perfintel.storage.base import QueryLimits

router = APIRouter(tags=["performance"])

OUTLIERS_PATH = "/api/v1/performance/detect/outliers"
DEFAULT_RANGE_MS = 3_600_000


class OutliersRequest(BaseModel):
    """Flag the members of each peer group that deviate from the group."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "selector": 'node_cpu_busy{job="api"}',
                    "by": ["service"],
                    "start": "2026-11-25T00:00:00Z",
                    "end": "2026-11-25T06:00:00Z",
                    "step": "1m",
                }
            ]
        },
    )

    selector: SelectorText | None = Field(
        None, description="Series selector of the members (this or `query`)."
    )
    query: str | None = Field(
        None,
        description="A PromQL expression evaluated as a range query at `step` (this or "
        "`selector`), e.g. `rate(http_requests_total[5m])`.",
    )
    by: list[str] = Field(
        default_factory=list,
        description="Labels whose values define the peer groups (e.g. `[service]`); empty: all "
        "series form one group.",
    )
    start: TimeValue | None = Field(
        None, description="Start: Unix seconds or RFC3339; default end − 1h."
    )
    end: TimeValue | None = Field(None, description="End: Unix seconds or RFC3339; default now.")
    step: PositiveDurationMs | None = Field(
        None,
        description="Members are compared once per step (their mean in it); default 1m, or "
        f"coarser to keep the range within {po.DEFAULT_STEPS} steps.",
        examples=["1m"],
    )
    tolerance: Annotated[float, Field(gt=0, le=1e6)] = Field(
        DEFAULT_TOLERANCE,
        description="A member is outside the peer band beyond this many peer spreads (scaled MAD).",
    )
    pct: Annotated[float, Field(ge=0, lt=1)] = Field(
        DEFAULT_PCT, description="An outlier is outside the peer band for more than this share."
    )

    @model_validator(mode="after")
    def _one_source(self) -> OutliersRequest:
        if (self.selector is None) == (self.query is None):
            raise ValueError("give exactly one of selector and query")
        return self


def _num(v: float) -> float | None:
    return v if math.isfinite(v) else None


def render_outliers(report: po.OutlierReport) -> dict[str, Any]:
    groups = []
    for g in report.groups:
        groups.append(
            {
                "labels": g.labels,
                "size": len(g.members),
                "flagged": g.flagged,
                "timestamps": np.ascontiguousarray(g.timestamps, dtype=np.int64),
                "median": np.ascontiguousarray(g.median, dtype=np.float64),
                "lower": np.ascontiguousarray(g.lower, dtype=np.float64),
                "upper": np.ascontiguousarray(g.upper, dtype=np.float64),
                "members": [
                    {
                        "labels": dict(m.labels),
                        "score": _num(m.score),
                        "flagged": m.flagged,
                        "deviation": _num(m.deviation),
                        "steps": m.steps,
                        "explanation": m.explanation,
                    }
                    for m in g.members
                ],
            }
        )
    return {
        "status": "success",
        "data": {
            "start": report.start_ms,
            "end": report.end_ms,
            "step_seconds": report.step_ms / 1000,
            "tolerance": report.tolerance,
            "pct": report.pct,
            "groups": groups,
        },
    }


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Bad input; the message names the field"},
    404: {"description": "No series with data in the range"},
    422: {"description": f"More than {po.MAX_SERIES} series, or too many grid points"},
}


@router.post(
    OUTLIERS_PATH,
    dependencies=[Depends(require("read"))],
    summary="Flag the members of peer groups that deviate from their peers",
    responses=_ERRORS,
    response_description='{"status": "success", "data": {"step_seconds", "groups": [{"labels", '
    '"size", "flagged", "timestamps", "median", "lower", "upper", "members": [{"labels", '
    '"score", "flagged", "deviation", "steps", "explanation"}]}]}}',
)
async def detect_outliers(request: Request, body: OutliersRequest) -> Response:
    start_ms, end_ms = request_range(body.start, body.end, DEFAULT_RANGE_MS)
    step_ms = body.step if body.step is not None else po.default_step_ms(start_ms, end_ms)
    store = request.app.state.store
    qs = getattr(request.app.state, "query_settings", None)
    settings = qs if isinstance(qs, QuerySettings) else QuerySettings()
    t0 = time.perf_counter()

    def work() -> JSONResponse:  # fetching, scoring and rendering grow with the data: off the loop
        source = body.query if body.query is not None else body.selector or ""
        what = parse_analysis_query(source, settings, name="query" if body.query else "selector")
        if isinstance(what, Expression):
            evaluated = evaluate_range(
                store,
                what,
                start_ms,
                end_ms,
                step_ms,
                settings=settings,
                max_series=po.MAX_SERIES,
                what="query",
            )
            series = [(s.labels, s.timestamps, s.values) for s in evaluated]
        else:
            limits = QueryLimits(max_series=po.MAX_SERIES, max_samples=settings.max_samples)
            try:
                found = store.select(what, start_ms, end_ms, limits=limits)
            except QueryLimitError as exc:
                raise QueryLimitError(
                    f"{exc}; the outliers API compares at most {po.MAX_SERIES} series "
                    "(narrow the selector or use a larger step)"
                ) from exc
            series = [(s.labels, s.timestamps, s.values) for s in found]
        if not series:
            raise NotFoundError(
                f"no series for {source} with data between {rfc3339(start_ms)} and {rfc3339(end_ms)}"
            )
        report = po.detect_outliers(
            series,
            start_ms,
            end_ms,
            by=body.by,
            step_ms=step_ms,
            tolerance=body.tolerance,
            pct=body.pct,
        )
        return JSONResponse(render_outliers(report))

    response = await run_in_threadpool(work)
    request.app.state.metrics.query_duration.labels(endpoint="detect_outliers").observe(
        time.perf_counter() - t0
    )
    return response
