"""Alertmanager API v2, so Prometheus, vmalert and amtool talk to perfintel unchanged.

``POST /api/v2/alerts`` feeds the notification pipeline (the same routing,
incidents, escalation and channels as perfintel's own rules); the GET routes,
silences, ``/api/v2/status`` and ``/api/v2/receivers`` answer in Alertmanager's
shapes. A body with bad alerts gets 400 naming each problem (``alerts[3].labels:
...``); the good alerts beside them are still taken, as Alertmanager does.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from perfintel import __version__
from perfintel.alerting.dispatcher import AlertRecord
from perfintel.alerting.matchers import LabelMatcher, matches_all, parse_matchers
from perfintel.alerting.model import Alert
from perfintel.alerting.notification import rfc3339
from perfintel.alerting.pipeline import Pipeline
from perfintel.alerting.silences import Silence, new_silence
from perfintel.api.auth import require
from perfintel.api.responses import JSONResponse
from perfintel.errors import (
    BadInputError,
    NotFoundError,
    PayloadTooLargeError,
    StorageError,
)
from perfintel.model import label_set

router = APIRouter(tags=["alertmanager"])
MAX_ALERTS_PER_POST = 10_000
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def pipeline_of(request: Request) -> Pipeline:
    p = getattr(request.app.state, "notify", None)
    if p is None:
        raise StorageError("the notification pipeline is not running (alerting.enabled is false)")
    return p


def parse_time(value: object, what: str) -> float | None:
    if value in (None, "", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000Z"):
        return None
    if not isinstance(value, str):
        raise BadInputError(f"{what}: expected an RFC 3339 time string")
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadInputError(f"{what}: {value!r} is not an RFC 3339 time") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    if t.year <= 1:
        return None
    return t.timestamp()


def parse_postable_alerts(
    body: object, now: float, resolve_timeout: float
) -> tuple[list[Alert], list[str]]:
    """Alerts from an API v2 body, and the problems of those that could not be used."""
    if not isinstance(body, list):
        raise BadInputError("the body must be a JSON array of alerts")
    if len(body) > MAX_ALERTS_PER_POST:
        raise PayloadTooLargeError(
            f"at most {MAX_ALERTS_PER_POST} alerts per request (got {len(body)})"
        )
    alerts: list[Alert] = []
    errors: list[str] = []
    for i, item in enumerate(body):
        where = f"alerts[{i}]"
        try:
            alerts.append(_postable(item, where, now, resolve_timeout))
        except BadInputError as exc:
            errors.append(str(exc))
    return alerts, errors


def _postable(item: object, where: str, now: float, resolve_timeout: float) -> Alert:
    if not isinstance(item, dict):
        raise BadInputError(f"{where}: expected an object")
    unknown = set(item) - {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
    if unknown:
        raise BadInputError(f"{where}: unknown field(s) {sorted(unknown)}")
    labels = item.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise BadInputError(f"{where}.labels: at least one label pair required")
    clean: dict[str, str] = {}
    for k, v in labels.items():
        if not isinstance(v, str):
            raise BadInputError(f"{where}.labels.{k}: the value must be a string")
        if not _LABEL_NAME.match(k):
            raise BadInputError(f"{where}.labels: invalid label name {k!r}")
        if v:
            clean[k] = v
    if not clean:
        raise BadInputError(f"{where}.labels: at least one non-empty label required")
    annotations = item.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(v, str) for v in annotations.values()
    ):
        raise BadInputError(f"{where}.annotations: must map names to strings")
    for k in annotations:
        if not _LABEL_NAME.match(k):
            raise BadInputError(f"{where}.annotations: invalid annotation name {k!r}")
    starts = parse_time(item.get("startsAt"), f"{where}.startsAt")
    ends = parse_time(item.get("endsAt"), f"{where}.endsAt")
    starts = now if starts is None else starts
    if ends is None:
        ends = max(now, starts) + resolve_timeout
    if ends < starts:
        raise BadInputError(f"{where}: endsAt is before startsAt")
    gen = item.get("generatorURL") or ""
    if not isinstance(gen, str):
        raise BadInputError(f"{where}.generatorURL: must be a string")
    return Alert(label_set(clean), dict(annotations), starts, ends, gen)


async def _read_json(request: Request) -> object:
    limit = request.app.state.settings.limits.max_body_bytes
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"request body over {limit} bytes")
        chunks.append(chunk)
    try:
        return orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise BadInputError(f"the body is not valid JSON: {exc}") from None


@router.post(
    "/api/v2/alerts",
    dependencies=[Depends(require("write"))],
    summary="Receive alerts (Alertmanager API v2)",
)
async def post_alerts(request: Request) -> JSONResponse:
    p = pipeline_of(request)
    body = await _read_json(request)
    now = p.clock()
    alerts, errors = parse_postable_alerts(body, now, p.config.resolve_timeout)
    if alerts:
        await run_in_threadpool(p.send, alerts)
    if errors:
        shown = errors[: request.app.state.settings.limits.max_errors_reported]
        raise BadInputError(
            f"{len(errors)} invalid alert(s) ({len(alerts)} accepted): " + "; ".join(shown)
        )
    return JSONResponse(None)


def _filters(filter: list[str]) -> list[LabelMatcher]:
    out: list[LabelMatcher] = []
    for text in filter:
        out.extend(parse_matchers(text))
    return out


def gettable_alert(p: Pipeline, rec: AlertRecord, now: float) -> dict[str, Any]:
    a = rec.alert
    state = "suppressed" if rec.muted() else "active"
    return {
        "labels": dict(a.labels),
        "annotations": dict(a.annotations),
        "startsAt": rfc3339(a.starts_at),
        "endsAt": rfc3339(a.ends_at),
        "generatorURL": a.generator_url,
        "fingerprint": rec.fingerprint,
        "updatedAt": rfc3339(rec.updated_at),
        "receivers": [{"name": r} for r in dict.fromkeys(rec.receivers)],
        "status": {
            "state": state,
            "silencedBy": rec.silenced_by,
            "inhibitedBy": rec.inhibited_by,
            "mutedBy": [],
        },
        "incident": rec.incident,
    }


def _select_alerts(
    p: Pipeline,
    active: bool,
    silenced: bool,
    inhibited: bool,
    unprocessed: bool,
    matchers: list[LabelMatcher],
    receiver: str | None,
) -> list[AlertRecord]:
    now = p.clock()
    rx = re.compile(f"(?:{receiver})\\Z") if receiver else None
    out = []
    with p.lock:
        for rec in p.core.alerts.values():
            if rec.alert.resolved(now):
                continue
            if not matches_all(matchers, dict(rec.alert.labels)):
                continue
            if rx is not None and not any(rx.match(r) for r in rec.receivers):
                continue
            if rec.silenced_by and not silenced:
                continue
            if rec.inhibited_by and not inhibited:
                continue
            if not rec.muted() and not active:
                continue
            out.append(rec)
    return sorted(out, key=lambda r: (r.alert.starts_at, r.fingerprint))


@router.get(
    "/api/v2/alerts",
    dependencies=[Depends(require("read"))],
    summary="List alerts (Alertmanager API v2)",
)
async def get_alerts(
    request: Request,
    active: bool = True,
    silenced: bool = True,
    inhibited: bool = True,
    unprocessed: bool = True,
    filter: list[str] = Query(default=[]),
    receiver: str | None = None,
) -> JSONResponse:
    p = pipeline_of(request)
    matchers = _filters(filter)
    recs = await run_in_threadpool(
        _select_alerts, p, active, silenced, inhibited, unprocessed, matchers, receiver
    )
    now = p.clock()
    return JSONResponse([gettable_alert(p, r, now) for r in recs])


@router.get(
    "/api/v2/alerts/groups",
    dependencies=[Depends(require("read"))],
    summary="Alert groups (Alertmanager API v2)",
)
async def get_groups(
    request: Request,
    active: bool = True,
    silenced: bool = True,
    inhibited: bool = True,
    filter: list[str] = Query(default=[]),
    receiver: str | None = None,
) -> JSONResponse:
    p = pipeline_of(request)
    recs = await run_in_threadpool(
        _select_alerts, p, active, silenced, inhibited, True, _filters(filter), receiver
    )
    now = p.clock()
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    with p.lock:
        for rec in recs:
            for route in p.core.routes_of(rec.alert):
                labels = route.group_labels(dict(rec.alert.labels))
                key = (
                    route.id + route.receiver,
                    orjson.dumps(labels, option=orjson.OPT_SORT_KEYS).decode(),
                )
                g = groups.setdefault(
                    key, {"labels": labels, "receiver": {"name": route.receiver}, "alerts": []}
                )
                g["alerts"].append(gettable_alert(p, rec, now))
    return JSONResponse(list(groups.values()))


def gettable_silence(s: Silence, now: float) -> dict[str, Any]:
    return {
        "id": s.id,
        "status": {"state": s.state(now)},
        "updatedAt": rfc3339(s.updated_at),
        "comment": s.comment,
        "createdBy": s.created_by,
        "startsAt": rfc3339(s.starts_at),
        "endsAt": rfc3339(s.ends_at),
        "matchers": [m.to_api() for m in s.matchers],
    }


@router.get(
    "/api/v2/silences",
    dependencies=[Depends(require("read"))],
    summary="List silences (Alertmanager API v2)",
)
async def get_silences(request: Request, filter: list[str] = Query(default=[])) -> JSONResponse:
    p = pipeline_of(request)
    matchers = _filters(filter)
    now = p.clock()
    with p.lock:
        items = list(p.core.silences.values())
    out = []
    for s in items:
        own = {m.name: m.value for m in s.matchers if m.op == "="}
        if matchers and not matches_all(matchers, own):
            continue
        out.append(s)
    order = {"active": 0, "pending": 1, "expired": 2}
    out.sort(
        key=lambda s: (order[s.state(now)], s.ends_at if s.state(now) != "expired" else -s.ends_at)
    )
    return JSONResponse([gettable_silence(s, now) for s in out])


@router.post(
    "/api/v2/silences",
    dependencies=[Depends(require("write"))],
    summary="Create or update a silence (Alertmanager API v2)",
)
async def post_silence(request: Request) -> JSONResponse:
    p = pipeline_of(request)
    body = await _read_json(request)
    if not isinstance(body, dict):
        raise BadInputError("the body must be a JSON object (a postable silence)")
    raw = body.get("matchers")
    if not isinstance(raw, list) or not raw:
        raise BadInputError("matchers: at least one matcher required")
    matchers = [
        LabelMatcher.from_api(m)
        if isinstance(m, Mapping)
        else _bad("matchers: each must be an object")
        for m in raw
    ]
    now = p.clock()
    starts = parse_time(body.get("startsAt"), "startsAt") or now
    ends = parse_time(body.get("endsAt"), "endsAt")
    if ends is None:
        raise BadInputError("endsAt: required")
    sid = body.get("id") or None
    if sid is not None and sid not in p.core.silences:
        raise NotFoundError(f"silence {sid} not found")
    silence = new_silence(
        matchers,
        starts,
        ends,
        now=now,
        created_by=str(body.get("createdBy") or ""),
        comment=str(body.get("comment") or ""),
        silence_id=sid,
    )
    await run_in_threadpool(p.put_silence, silence)
    return JSONResponse({"silenceID": silence.id})


def _bad(message: str) -> LabelMatcher:
    raise BadInputError(message)


@router.get(
    "/api/v2/silence/{silence_id}",
    dependencies=[Depends(require("read"))],
    summary="One silence (Alertmanager API v2)",
)
async def get_silence(request: Request, silence_id: str) -> JSONResponse:
    p = pipeline_of(request)
    s = p.core.silences.get(silence_id)
    if s is None:
        raise NotFoundError(f"silence {silence_id} not found")
    return JSONResponse(gettable_silence(s, p.clock()))


@router.delete(
    "/api/v2/silence/{silence_id}",
    dependencies=[Depends(require("write"))],
    summary="Expire a silence (Alertmanager API v2)",
)
async def delete_silence(request: Request, silence_id: str) -> JSONResponse:
    p = pipeline_of(request)
    await run_in_threadpool(p.expire_silence, silence_id)
    return JSONResponse(None)


@router.get(
    "/api/v2/status",
    dependencies=[Depends(require("read"))],
    summary="Status (Alertmanager API v2)",
)
async def get_status(request: Request) -> JSONResponse:
    p = pipeline_of(request)
    return JSONResponse(
        {
            "cluster": {"name": "perfintel", "status": "ready", "peers": []},
            "versionInfo": {
                "version": f"perfintel-{__version__}",
                "revision": "",
                "branch": "",
                "buildUser": "",
                "buildDate": "",
                "goVersion": "none",
            },
            "config": {"original": p.config.source},
            "uptime": rfc3339(p.started_at),
        }
    )


@router.get(
    "/api/v2/receivers",
    dependencies=[Depends(require("read"))],
    summary="Receivers (Alertmanager API v2)",
)
async def get_receivers(request: Request) -> JSONResponse:
    p = pipeline_of(request)
    return JSONResponse([{"name": n} for n in sorted(p.core.receivers)])
