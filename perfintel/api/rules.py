"""The rules API: Prometheus's ``/api/v1/rules`` and ``/api/v1/alerts``, reload, and rule-group CRUD.

* ``GET /api/v1/rules`` and ``GET /api/v1/alerts`` answer as Prometheus
  does (Grafana and ``promtool``-style clients read them), with perfintel's
  additions as extra keys: ``kind`` and ``params`` on rules of perfintel's
  kinds, ``explanation`` and ``flapping`` on alerts. Filters:
  ``type=alert|record``, ``rule_name[]``, ``rule_group[]`` (also
  ``group[]``), ``file[]``, ``exclude_alerts=true``.
* ``POST /api/v1/admin/rules/reload`` and Prometheus's ``POST /-/reload``
  reload the rule files; a file with an error is refused with its file, line
  and reason (HTTP 400) and the running rules stay.
* Rule groups managed through the API, in the ruler API of Cortex and Mimir
  (YAML in and out), under ``/api/v1/rules/{namespace}`` and
  ``/config/v1/rules``: ``GET`` all / a namespace / a group, ``POST`` a group
  to a namespace (created or replaced; 202), ``DELETE`` a group or a whole
  namespace (202). Groups are validated exactly as rule files are.

Handlers read ``request.app.state.rules`` (a ``RuleService``, or ``None``
when alerting is off: the lists are then empty and changes are refused).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import yaml
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from perfintel.alerting.rules.group import AlertStatus, GroupStatus, RuleStatus
from perfintel.alerting.rules.service import RuleService
from perfintel.alerting.rules.spec import ALERT, RECORD
from perfintel.api.auth import require
from perfintel.errors import BadInputError, NotFoundError

router = APIRouter()
_read = [Depends(require("read"))]
_admin = [Depends(require("admin"))]
_ZERO_TIME = "0001-01-01T00:00:00Z"
_MAX_BODY = 1024 * 1024


def _service(request: Request) -> RuleService | None:
    svc = getattr(request.app.state, "rules", None)
    return svc if isinstance(svc, RuleService) else None


def _need_service(request: Request) -> RuleService:
    svc = _service(request)
    if svc is None:
        raise BadInputError("alerting is disabled (alerting.enabled: false)")
    return svc


def _envelope(data: object) -> Response:
    body = orjson.dumps({"status": "success", "data": data}, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, media_type="application/json")


def rfc3339(t: float | None) -> str:
    if t is None:
        return _ZERO_TIME
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z")


def go_e(v: float) -> str:
    """Go's ``strconv.FormatFloat(v, 'e', -1, 64)``: how Prometheus renders an alert's value."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    mant, _, exp = f"{v:.16e}".partition("e")
    # the shortest digits that round-trip, as Go's -1 precision
    for digits in range(17):
        text = f"{v:.{digits}e}"
        if float(text) == v:
            mant, _, exp = text.partition("e")
            break
    e = int(exp)
    return f"{mant}e{'-' if e < 0 else '+'}{abs(e):02d}"


def _alert_json(a: AlertStatus) -> dict[str, object]:
    out: dict[str, object] = {
        "labels": dict(a.labels),
        "annotations": dict(a.annotations),
        "state": a.state,
        "activeAt": rfc3339(a.active_at),
        "value": go_e(a.value),
    }
    if a.keep_firing_since is not None:
        out["keepFiringSince"] = rfc3339(a.keep_firing_since)
    if a.flapping:
        out["flapping"] = True
    if a.explanation:
        out["explanation"] = dict(a.explanation)
    return out


def _rule_json(r: RuleStatus, with_alerts: bool) -> dict[str, object]:
    spec = r.spec
    common: dict[str, object] = {
        "name": spec.name,
        "query": spec.query_text,
        "health": r.health,
        "evaluationTime": r.evaluation_time,
        "lastEvaluation": rfc3339(r.last_evaluation),
    }
    if r.last_error:
        common["lastError"] = r.last_error
    if spec.kind == RECORD:
        out = {**common, "type": "recording"}
        if spec.labels:
            out["labels"] = dict(spec.labels)
        return out
    out = {
        "state": r.state,
        **common,
        "duration": spec.for_s,
        "keepFiringFor": spec.keep_firing_for_s,
        "labels": dict(spec.labels),
        "annotations": dict(spec.annotations),
        "type": "alerting",
    }
    if with_alerts:
        out["alerts"] = [_alert_json(a) for a in r.alerts]
    if spec.kind != ALERT:
        out["kind"] = spec.kind
        out["params"] = spec.params.model_dump(mode="json") if spec.params is not None else {}
    if spec.keep_firing_while:
        out["keepFiringWhile"] = spec.keep_firing_while
    return out


def _many(request: Request, *names: str) -> set[str]:
    out: set[str] = set()
    for n in names:
        out.update(request.query_params.getlist(n))
    return out


@router.get("/api/v1/rules", dependencies=_read, tags=["rules"], summary="Rules and their state")
async def list_rules(request: Request) -> Response:
    kind = request.query_params.get("type", "")
    if kind not in ("", "alert", "record"):
        raise BadInputError(f'invalid parameter "type": not supported value "{kind}"')
    names = _many(request, "rule_name[]")
    groups_f = _many(request, "rule_group[]", "group[]")
    files = _many(request, "file[]")
    exclude = request.query_params.get("exclude_alerts", "false").lower() == "true"
    svc = _service(request)
    filtered = bool(names or kind)
    out = []
    for g in svc.snapshot() if svc is not None else []:
        if (groups_f and g.spec.name not in groups_f) or (files and g.spec.file not in files):
            continue
        rules = [
            _rule_json(r, not exclude)
            for r in g.rules
            if (not names or r.spec.name in names)
            and (not kind or (kind == "record") == (r.spec.kind == RECORD))
        ]
        if filtered and not rules:
            continue
        out.append(_group_json(g, rules))
    return _envelope({"groups": out})


def _group_json(g: GroupStatus, rules: list[dict[str, object]]) -> dict[str, object]:
    return {
        "name": g.spec.name,
        "file": g.spec.file,
        "rules": rules,
        "interval": g.interval_s,
        "limit": g.spec.limit,
        "evaluationTime": g.evaluation_time,
        "lastEvaluation": rfc3339(g.last_evaluation),
    }


@router.get(
    "/api/v1/alerts", dependencies=_read, tags=["rules"], summary="Pending and firing alerts"
)
async def list_alerts(request: Request) -> Response:
    svc = _service(request)
    alerts = [
        _alert_json(a)
        for g in (svc.snapshot() if svc is not None else [])
        for r in g.rules
        for a in r.alerts
    ]
    return _envelope({"alerts": alerts})


async def _reload(request: Request) -> dict[str, object]:
    svc = _need_service(request)
    result = await svc.reload_async()
    if not result.ok:
        raise BadInputError(
            "rule reload refused, the running rules stay: " + "; ".join(result.errors)
        )
    return {"groups": result.groups, "rules": result.rules}


@router.post(
    "/api/v1/admin/rules/reload",
    dependencies=_admin,
    tags=["rules"],
    summary="Reload the rule files (refused with file, line and reason on an error)",
)
async def reload_rules(request: Request) -> Response:
    return _envelope(await _reload(request))


# --- the ruler API (Cortex / Mimir) -----------------------------------------------------


#: The ruler API's reads answer YAML (as Cortex and Mimir do), documented so clients know.
_YAML_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/yaml": {"schema": {"type": "object"}}}}
}


def _yaml(data: object, status: int = 200) -> Response:
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return Response(text.encode(), status_code=status, media_type="application/yaml")


def _groups_by_namespace(rows: Sequence[tuple[str, str, str]]) -> dict[str, list[object]]:
    out: dict[str, list[object]] = {}
    for namespace, _name, source in rows:
        out.setdefault(namespace, []).append(yaml.safe_load(source))
    return out


async def list_api_groups(request: Request) -> Response:
    svc = _service(request)
    rows = await run_in_threadpool(svc.api_groups) if svc is not None else []
    return _yaml(_groups_by_namespace(rows))


async def get_namespace(request: Request, namespace: str) -> Response:
    svc = _need_service(request)
    rows = await run_in_threadpool(svc.api_groups, namespace)
    if not rows:
        raise NotFoundError(f"no rule groups in namespace {namespace!r}")
    return _yaml(_groups_by_namespace(rows))


async def get_group(request: Request, namespace: str, group: str) -> Response:
    svc = _need_service(request)
    rows = await run_in_threadpool(svc.api_groups, namespace)
    for _ns, name, source in rows:
        if name == group:
            return _yaml(yaml.safe_load(source))
    raise NotFoundError("group does not exist")


async def post_group(request: Request, namespace: str) -> Response:
    svc = _need_service(request)
    body = await request.body()
    if len(body) > _MAX_BODY:
        raise BadInputError(f"rule group larger than {_MAX_BODY} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInputError(f"rule group is not UTF-8: {exc}") from None
    spec = await run_in_threadpool(svc.put_api_group, namespace, text)
    return _envelope_status({"namespace": namespace, "group": spec.name}, 202)


async def delete_group(request: Request, namespace: str, group: str) -> Response:
    svc = _need_service(request)
    await run_in_threadpool(svc.delete_api_group, namespace, group)
    return _envelope_status({}, 202)


async def delete_namespace(request: Request, namespace: str) -> Response:
    svc = _need_service(request)
    await run_in_threadpool(svc.delete_api_group, namespace, None)
    return _envelope_status({}, 202)


def _envelope_status(data: Mapping[str, object], status: int) -> Response:
    body = orjson.dumps({"status": "success", "data": data})
    return Response(body, status_code=status, media_type="application/json")


for prefix, tag in (("/api/v1/rules", "cortex"), ("/config/v1/rules", "mimir")):
    for path, endpoint, method, deps in (
        ("/{namespace}", get_namespace, "GET", _read),
        ("/{namespace}/{group}", get_group, "GET", _read),
        ("/{namespace}", post_group, "POST", _admin),
        ("/{namespace}/{group}", delete_group, "DELETE", _admin),
        ("/{namespace}", delete_namespace, "DELETE", _admin),
    ):
        router.add_api_route(
            prefix + path,
            endpoint,
            methods=[method],
            dependencies=deps,
            tags=["rules"],
            operation_id=f"{endpoint.__name__}_{tag}",
            responses=_YAML_RESPONSE if method == "GET" else None,
        )
router.add_api_route(
    "/config/v1/rules",
    list_api_groups,
    methods=["GET"],
    dependencies=_read,
    tags=["rules"],
    responses=_YAML_RESPONSE,
)
