"""The overview over HTTP: ``dashboard/realtime`` and ``health/comprehensive``.

Both answer from the ``OverviewState`` the service keeps current in memory
(``perfintel.overview.state``): a handler is a look-up of pre-rendered JSON
(or a filter over the bounded snapshot when a selector is given), never a
query of the store.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response

from perfintel.api.auth import require
from perfintel.api.params import valid_selector
from perfintel.errors import BadInputError
from perfintel.model import parse_selector
from perfintel.overview.state import OverviewState

router = APIRouter(tags=["dashboard"])

REALTIME_PATH = "/api/v1/performance/dashboard/realtime"
HEALTH_PATH = "/api/v1/performance/health/comprehensive"

_JSON: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {"schema": {"type": "object"}}}},
    400: {"description": "Bad selector"},
}


def _state(request: Request) -> OverviewState:
    state: OverviewState = request.app.state.overview
    return state


@router.get(
    REALTIME_PATH,
    dependencies=[Depends(require("read"))],
    summary="What the dashboard overview shows, kept current in memory",
    description="Health summary (overall, per service and host), the top anomalies of the last "
    "hours with their explanation and a sparkline, capacity risks (soonest exhaustion first), "
    "ingest and perfintel's own figures; `alerts`: the active alerts and incidents (counts by "
    "severity and state, the top ten of each; null while alerting is off). `service` keeps what belongs to one service; "
    "`selector` keeps the anomalies and capacity risks of matching series. Refreshed by a "
    "background task (see `refreshed`), never recomputed per request.",
    response_class=Response,
    responses=_JSON,
)
async def realtime(
    request: Request,
    service: str | None = Query(None, max_length=200, description="Only this service."),
    selector: str | None = Query(
        None, max_length=4096, description='Series selector, e.g. {job="api"}.'
    ),
) -> Response:
    sel = None
    if selector:
        try:
            sel = parse_selector(valid_selector(selector))
        except ValueError as exc:
            raise BadInputError(f"invalid parameter 'selector': {exc}") from None
    body = _state(request).realtime(service or None, sel)
    return Response(body, media_type="application/json")


@router.get(
    HEALTH_PATH,
    dependencies=[Depends(require("read"))],
    summary="Health scores 0–100 per service, host and overall, with reasons; perfintel's own health",
    description="Each score is 100 minus a penalty per signal (anomaly rate, CPU/memory/disk/"
    "network saturation, error rate, availability, capacity and forecast risk, active alerts); "
    "every reason "
    "lists its value and penalty. The formula is in docs/health.md. perfintel's own health "
    "covers ingest, queue depths, storage size and growth, evaluation delays and last errors.",
    response_class=Response,
    responses=_JSON,
)
async def health(request: Request) -> Response:
    return Response(_state(request).health(), media_type="application/json")
