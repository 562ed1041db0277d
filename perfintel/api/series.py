"""``GET /api/v1/series/query``: the simple series query over HTTP."""

from __future__ import annotations

import time

import numpy as np
import orjson
from fastapi import APIRouter, Depends, Query, Request, Response

from perfintel.api.auth import require
from perfintel.api.params import optional_time_ms, positive_duration_ms
from perfintel.api.workers import run_query
from perfintel.errors import BadInputError, ParseError
from perfintel.model import parse_selector
from perfintel.query.series_query import QueryResult, run_series_query
from perfintel.storage.base import QueryLimits
from perfintel.timeparse import TIME_HELP

router = APIRouter(tags=["query"])


def _values_json(values: np.ndarray) -> list[float | str]:
    if np.all(np.isfinite(values)):
        return list(values.tolist())
    return [
        v if np.isfinite(v) else ("NaN" if np.isnan(v) else ("+Inf" if v > 0 else "-Inf"))
        for v in values.tolist()
    ]


def render(result: QueryResult) -> bytes:
    return orjson.dumps(
        {
            "status": "success",
            "data": {
                "source": result.source,
                "series": [
                    {
                        "labels": dict(s.labels),
                        "timestamps": s.timestamps.tolist(),
                        "values": _values_json(s.values),
                    }
                    for s in result.series
                ],
            },
        }
    )


@router.get(
    "/api/v1/series/query",
    dependencies=[Depends(require("read"))],
    summary="Query series by selector",
)
async def series_query(
    request: Request,
    match: str = Query(..., description='Series selector, e.g. node_load1{instance=~"web-.*"}'),
    start: str | None = Query(None, description=f"{TIME_HELP}; default: end - 1h"),
    end: str | None = Query(None, description=f"{TIME_HELP}; default: now"),
    step: str | None = Query(None, description="Bucket width (e.g. 5m); omitted: raw samples"),
    fn: str = Query("avg", description="Per-bucket function: avg, min, max, sum, count, last"),
    agg: str | None = Query(
        None, description="Cross-series aggregation: sum, avg, min, max, count"
    ),
    by: str | None = Query(None, description="Comma-separated labels to group the aggregation by"),
) -> Response:
    try:
        selector = parse_selector(match)
    except ParseError as exc:
        raise BadInputError(f"invalid parameter 'match': {exc}") from exc
    end_ms = optional_time_ms(end, "end", int(time.time() * 1000))
    start_ms = optional_time_ms(start, "start", end_ms - 3_600_000)
    step_ms = positive_duration_ms(step, "step") if step else None
    q = request.app.state.settings.query
    limits = QueryLimits(max_series=q.max_series, max_samples=q.max_samples)
    t0 = time.perf_counter()
    store = request.app.state.store
    group = [b.strip() for b in by.split(",") if b.strip()] if by else ()
    body = await run_query(  # reading and rendering grow with the data: off the loop
        request,
        lambda: render(
            run_series_query(
                store,
                selector,
                start_ms,
                end_ms,
                step_ms=step_ms,
                fn=fn,
                agg=agg,
                by=group,
                limits=limits,
            )
        ),
    )
    request.app.state.metrics.query_duration.labels(endpoint="series_query").observe(
        time.perf_counter() - t0
    )
    return Response(body, media_type="application/json")
