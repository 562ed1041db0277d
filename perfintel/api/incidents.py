"""Incidents, acknowledgements, receivers, escalation policies, the notification log, analytics.

Reads need ``read``; acknowledging and resolving need ``write``; receivers and
escalation policies (configuration) need ``admin``. The signed acknowledge link
(``/api/v1/incidents/{id}/ack?expires=&sig=``) needs no token: the HMAC
signature is its credential. Its GET shows a confirmation page (mail scanners
follow links) and its POST acknowledges.
"""

from __future__ import annotations

import html
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from perfintel.alerting.pipeline import Pipeline
from perfintel.alerting.summary import incident_view
from perfintel.api.alertmanager import _read_json, pipeline_of
from perfintel.api.auth import require
from perfintel.api.responses import JSONResponse
from perfintel.errors import BadInputError, NotFoundError

router = APIRouter(tags=["incidents"])
#: The signed acknowledge link carries its own credential (an expiring HMAC), so it needs no token.
PUBLIC_PATHS = ("/api/v1/incidents/{incident_id}/ack",)
_SECRET_KEYS = ("password", "token", "key", "secret", "url", "credentials")


def _ok(data: Any) -> JSONResponse:
    return JSONResponse({"status": "success", "data": data})


@router.get(
    "/api/v1/incidents", dependencies=[Depends(require("read"))], summary="Incidents, newest first"
)
async def list_incidents(
    request: Request, state: str | None = None, limit: int = 100
) -> JSONResponse:
    p = pipeline_of(request)
    if state not in (None, "open", "acknowledged", "resolved"):
        raise BadInputError("state must be open, acknowledged or resolved")
    limit = max(1, min(limit, 1000))
    now = p.clock()
    with p.lock:
        live = {
            i.id: incident_view(p.core, i, now)
            for i in p.core.incidents.values()
            if state in (None, i.state)
        }
    stored = await run_in_threadpool(p.store.incidents, state=state, limit=limit)
    for d in stored:
        if d["id"] not in live:
            live[d["id"]] = {
                "id": d["id"],
                "title": d["title"],
                "state": d["state"],
                "openedAt": d["opened_at"],
                "resolvedAt": d["resolved_at"],
                "acknowledgedAt": d["acked_at"],
                "alerts": len(d["members"]),
            }
    items = sorted(live.values(), key=lambda x: -float(x["openedAt"]))[:limit]
    return _ok(items)


@router.get(
    "/api/v1/incidents/{incident_id}",
    dependencies=[Depends(require("read"))],
    summary="One incident with its timeline",
)
async def get_incident(request: Request, incident_id: str) -> JSONResponse:
    p = pipeline_of(request)
    with p.lock:
        inc = p.core.incidents.get(incident_id)
        if inc is not None:
            return _ok(incident_view(p.core, inc, p.clock()))
    stored = await run_in_threadpool(p.store.incident, incident_id)
    if stored is None:
        raise NotFoundError(f"incident {incident_id!r} not found")
    return _ok(incident_view(p.core, stored, p.clock()))


async def _who(request: Request) -> str:
    body = await _read_json(request) if int(request.headers.get("content-length") or 0) else {}
    by = body.get("by", "") if isinstance(body, dict) else ""
    return str(by or "api")


@router.post(
    "/api/v1/incidents/{incident_id}/acknowledge",
    dependencies=[Depends(require("write"))],
    summary="Acknowledge: stops escalation",
)
async def acknowledge(request: Request, incident_id: str) -> JSONResponse:
    p = pipeline_of(request)
    by = await _who(request)
    inc = await run_in_threadpool(p.acknowledge, incident_id, by)
    return _ok({"id": inc.id, "state": inc.state})


@router.post(
    "/api/v1/incidents/{incident_id}/resolve",
    dependencies=[Depends(require("write"))],
    summary="Resolve by hand: ends escalation",
)
async def resolve(request: Request, incident_id: str) -> JSONResponse:
    p = pipeline_of(request)
    by = await _who(request)
    inc = await run_in_threadpool(p.resolve, incident_id, by)
    return _ok({"id": inc.id, "state": inc.state})


@router.get(
    "/api/v1/incidents/{incident_id}/ack",
    response_class=HTMLResponse,
    summary="Signed acknowledge link: confirmation page",
)
async def ack_page(incident_id: str, expires: int, sig: str) -> HTMLResponse:
    iid = html.escape(incident_id)
    return HTMLResponse(
        f"<html><body><p>Acknowledge incident <b>{iid}</b>?</p>"
        f'<form method="post" action="?expires={expires}&amp;sig={html.escape(sig)}">'
        '<button type="submit">Acknowledge</button></form></body></html>'
    )


@router.post("/api/v1/incidents/{incident_id}/ack", summary="Signed acknowledge link: acknowledge")
async def ack_signed(request: Request, incident_id: str, expires: int, sig: str) -> HTMLResponse:
    p = pipeline_of(request)
    inc = await run_in_threadpool(p.acknowledge_signed, incident_id, expires, sig)
    return HTMLResponse(
        f"<html><body><p>Incident <b>{html.escape(inc.id)}</b> is {inc.state}.</p></body></html>"
    )


# -- alerts ---------------------------------------------------------------------------


def _incident_of(p: Pipeline, fingerprint: str) -> str:
    """The id of the incident an alert belongs to; 404 when it belongs to none."""
    rec = p.core.alerts.get(fingerprint)
    if rec is None or rec.incident is None:
        raise NotFoundError(f"alert {fingerprint} is not part of an incident")
    return rec.incident


@router.post(
    "/api/v1/alerting/alerts/{fingerprint}/acknowledge",
    dependencies=[Depends(require("write"))],
    summary="Acknowledge the incident of an alert",
)
async def ack_alert(request: Request, fingerprint: str) -> JSONResponse:
    p = pipeline_of(request)
    inc = await run_in_threadpool(p.acknowledge, _incident_of(p, fingerprint), await _who(request))
    return _ok({"id": inc.id, "state": inc.state})


@router.post(
    "/api/v1/alerting/alerts/{fingerprint}/resolve",
    dependencies=[Depends(require("write"))],
    summary="Resolve the incident of an alert",
)
async def resolve_alert(request: Request, fingerprint: str) -> JSONResponse:
    p = pipeline_of(request)
    inc = await run_in_threadpool(p.resolve, _incident_of(p, fingerprint), await _who(request))
    return _ok({"id": inc.id, "state": inc.state})


# -- the notification log and analytics ------------------------------------------------------


@router.get(
    "/api/v1/alerting/notifications",
    dependencies=[Depends(require("read"))],
    summary="The notification log",
)
async def notifications(
    request: Request,
    receiver: str | None = None,
    incident: str | None = None,
    status: str | None = None,
    since: float | None = None,
    limit: int = 100,
) -> JSONResponse:
    p = pipeline_of(request)
    rows = await run_in_threadpool(
        lambda: p.store.log(
            receiver=receiver,
            incident=incident,
            status=status,
            since=since,
            limit=max(1, min(limit, 1000)),
        )
    )
    return _ok([r.to_api() for r in rows])


@router.get(
    "/api/v1/alerting/analytics",
    dependencies=[Depends(require("read"))],
    summary="Noisiest rules, flaps, time to acknowledge, notifications per incident",
)
async def analytics(
    request: Request, since: float | None = None, until: float | None = None
) -> JSONResponse:
    p = pipeline_of(request)
    now = p.clock()
    start = now - 7 * 86400 if since is None else since
    return _ok(await run_in_threadpool(p.store.analytics, start, until or now))


# -- receivers and escalation policies ----------------------------------------------------


def _redact(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _redact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, key) for v in value]
    if isinstance(value, str) and any(s in key.lower() for s in _SECRET_KEYS) and value:
        return "<secret>"
    return value


@router.get(
    "/api/v1/alerting/receivers",
    dependencies=[Depends(require("read"))],
    summary="Receivers (secrets hidden)",
)
async def receivers(request: Request) -> JSONResponse:
    p = pipeline_of(request)
    api = set(await run_in_threadpool(p.store.objects, "receiver"))
    out = []
    for name, rec in sorted(p.core.receivers.items()):
        out.append(
            {
                "name": name,
                "source": "api" if name in api else "file",
                "integrations": [
                    {
                        "kind": i.kind,
                        "name": i.name,
                        "sendResolved": i.send_resolved,
                        "settings": _redact(dict(i.settings)),
                    }
                    for i in rec.integrations
                ],
            }
        )
    return _ok(out)


@router.put(
    "/api/v1/alerting/receivers/{name}",
    dependencies=[Depends(require("admin"))],
    summary="Create or replace a receiver (alertmanager.yml shape)",
)
async def put_receiver(request: Request, name: str) -> JSONResponse:
    p = pipeline_of(request)
    body = await _read_json(request)
    if not isinstance(body, dict):
        raise BadInputError("the body must be a receiver object")
    body = {**body, "name": name}
    rec = await run_in_threadpool(p.put_receiver, body)
    return _ok({"name": rec.name, "integrations": [i.name for i in rec.integrations]})


@router.delete(
    "/api/v1/alerting/receivers/{name}",
    dependencies=[Depends(require("admin"))],
    summary="Delete a receiver created through the API",
)
async def delete_receiver(request: Request, name: str) -> JSONResponse:
    await run_in_threadpool(pipeline_of(request).delete_receiver, name)
    return _ok(None)


@router.get(
    "/api/v1/alerting/escalation-policies",
    dependencies=[Depends(require("read"))],
    summary="Escalation policies",
)
async def policies(request: Request) -> JSONResponse:
    p = pipeline_of(request)
    api = set(await run_in_threadpool(p.store.objects, "policy"))
    return _ok(
        [
            {
                "name": pol.name,
                "source": "api" if pol.name in api else "file",
                "matchers": [str(m) for m in pol.matchers],
                "levels": [
                    {"delay": lv.delay, "receivers": list(lv.receivers)} for lv in pol.levels
                ],
                "repeat": pol.repeat,
            }
            for pol in p.core.policies
        ]
    )


@router.put(
    "/api/v1/alerting/escalation-policies/{name}",
    dependencies=[Depends(require("admin"))],
    summary="Create or replace an escalation policy (1 to 5 levels)",
)
async def put_policy(request: Request, name: str) -> JSONResponse:
    p = pipeline_of(request)
    body = await _read_json(request)
    if not isinstance(body, dict):
        raise BadInputError("the body must be a policy object")
    pol = await run_in_threadpool(p.put_policy, {**body, "name": name})
    return _ok({"name": pol.name, "levels": len(pol.levels)})


@router.delete(
    "/api/v1/alerting/escalation-policies/{name}",
    dependencies=[Depends(require("admin"))],
    summary="Delete an escalation policy created through the API",
)
async def delete_policy(request: Request, name: str) -> JSONResponse:
    await run_in_threadpool(pipeline_of(request).delete_policy, name)
    return _ok(None)
