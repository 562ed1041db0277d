"""The Prometheus HTTP query API (``/api/v1/...``), enough for Grafana and promtool.

Handlers are thin: they parse parameters as Prometheus does (RFC 3339 or Unix
seconds; durations as ``5m`` or float seconds), run the PromQL engine in a
worker thread and render the Prometheus JSON envelope. Values are strings
formatted as Prometheus 2.x does (Go's ``strconv.FormatFloat(v, 'f', -1, 64)``,
switching to ``'e'`` below 1e-6 and from 1e21 on) and timestamps float
seconds with millisecond precision.

The router reads ``request.app.state.store`` (a ``SampleReader``), and if
present ``request.app.state.query_settings`` (``QuerySettings``) and
``request.app.state.metadata`` (``dict[str, MetricMetadata]``).
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from perfintel.api.errors import status_for
from perfintel.errors import BadInputError, PerfintelError
from perfintel.model import LABEL_NAME_RE, METRIC_NAME, LabelSet, Selector, parse_selector
from perfintel.query.promql.engine import Engine, QueryResult
from perfintel.query.promql.format import format_timestamp, format_value, format_values
from perfintel.query.settings import QuerySettings
from perfintel.storage.base import SampleReader

router = APIRouter(prefix="/api/v1")
log = logging.getLogger(__name__)

#: The Prometheus release whose query API this module mirrors (Grafana reads it).
PROMETHEUS_API_VERSION = "2.42.0"
MIN_TIME_MS = -9223372036854775808 // 1000 // 1000 * 1000  # far past, in ms
MAX_TIME_MS = 9223372036854775807 // 1000 // 1000 * 1000
_STARTED = time.time()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RFC3339_RE = re.compile(
    r"^(\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:\d\d)$"
)
_DURATION_RE = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_DURATION_MS = (365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1000, 1)


class ApiError(Exception):
    def __init__(self, error_type: str, message: str, status: int) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.status = status


def _bad(message: str) -> ApiError:
    return ApiError("bad_data", message, 400)


# --- parameters -------------------------------------------------------------------------


async def _params(request: Request) -> dict[str, list[str]]:
    """Query-string and form values together (form first, as Go's ``r.Form``)."""
    out: dict[str, list[str]] = {}
    if request.method == "POST":
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("application/x-www-form-urlencoded") or ctype.startswith(
            "multipart/form-data"
        ):
            form = await request.form()
            for k, v in form.multi_items():
                out.setdefault(k, []).append(str(v))
    for k, v in request.query_params.multi_items():
        out.setdefault(k, []).append(v)
    return out


def _one(params: Mapping[str, list[str]], name: str) -> str:
    vals = params.get(name)
    return vals[0] if vals else ""


def parse_time(value: str, name: str) -> int:
    """Unix seconds (fractional, rounded to ms) or RFC 3339, to milliseconds."""
    try:
        f = float(value)
    except ValueError:
        f = math.nan
    else:
        if math.isfinite(f):
            secs = math.trunc(f)
            frac = round((f - secs) * 1000) / 1000
            return int(secs) * 1000 + round(frac * 1000)
    m = _RFC3339_RE.match(value)
    if m:
        try:
            dt = datetime.fromisoformat(
                m.group(1) + (m.group(3) or "+00:00").replace("Z", "+00:00").replace("z", "+00:00")
            )
        except ValueError:
            dt = None
        if dt is not None:
            frac_ms = int((m.group(2) or "0").ljust(3, "0")[:3])
            return (dt - _EPOCH) // timedelta(seconds=1) * 1000 + frac_ms
    raise _bad(f'invalid parameter "{name}": cannot parse "{value}" to a valid timestamp')


def parse_duration(value: str, name: str) -> int:
    """Float seconds or a Prometheus duration (``1h30m``), to milliseconds."""
    try:
        f = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(f) or abs(f) > 9.2e9:
            raise _bad(
                f'invalid parameter "{name}": cannot parse "{value}" to a valid duration. It overflows int64'
            )
        return int(f * 1000)
    m = _DURATION_RE.match(value)
    if value and m and any(m.groups()):
        return sum(int(g) * unit for g, unit in zip(m.groups(), _DURATION_MS, strict=True) if g)
    raise _bad(f'invalid parameter "{name}": cannot parse "{value}" to a valid duration')


def _optional_time(params: Mapping[str, list[str]], name: str, default: int) -> int:
    v = _one(params, name)
    return parse_time(v, name) if v else default


def _selectors(params: Mapping[str, list[str]]) -> list[Selector]:
    out = []
    for text in params.get("match[]", []):
        try:
            out.append(parse_selector(text))
        except BadInputError as exc:
            raise _bad(str(exc)) from exc
    return out


def _limit(params: Mapping[str, list[str]]) -> int | None:
    v = _one(params, "limit")
    if not v:
        return None
    try:
        n = int(v)
    except ValueError as exc:
        raise _bad(f'invalid parameter "limit": cannot parse "{v}" to a valid limit') from exc
    if n < 0:
        raise _bad('invalid parameter "limit": limit must be non-negative')
    return n or None


# --- rendering ---------------------------------------------------------------------------


def _envelope(data_json: bytes, warnings: Sequence[str] = ()) -> Response:
    body = b'{"status":"success","data":' + data_json
    if warnings:
        body += b',"warnings":' + orjson.dumps(list(warnings))
    return Response(body + b"}", media_type="application/json")


def _error(exc: ApiError) -> Response:
    body = orjson.dumps({"status": "error", "errorType": exc.error_type, "error": str(exc)})
    return Response(body, status_code=exc.status, media_type="application/json")


def _metric(labels: LabelSet) -> bytes:
    return orjson.dumps(dict(labels))


def render_result(res: QueryResult) -> bytes:
    if res.result_type == "scalar" and res.scalar is not None:
        t, v = res.scalar
        return f'{{"resultType":"scalar","result":[{format_timestamp(t)},"{format_value(v)}"]}}'.encode()
    if res.result_type == "string" and res.string is not None:
        t, text = res.string
        return (
            b'{"resultType":"string","result":['
            + format_timestamp(t).encode()
            + b","
            + orjson.dumps(text)
            + b"]}"
        )
    parts: list[bytes] = []
    if res.result_type == "vector":
        for s in res.series:
            point = (
                f'[{format_timestamp(int(s.timestamps[0]))},"{format_value(float(s.values[0]))}"]'
            )
            parts.append(b'{"metric":' + _metric(s.labels) + b',"value":' + point.encode() + b"}")
    else:
        stamps: dict[int, str] = {}
        for s in res.series:
            ts_list = s.timestamps.tolist()
            for t in ts_list:
                if t not in stamps:
                    stamps[t] = format_timestamp(t)
            texts = format_values(s.values)
            pts = ",".join([f'[{stamps[t]},"{v}"]' for t, v in zip(ts_list, texts, strict=True)])
            parts.append(b'{"metric":' + _metric(s.labels) + b',"values":[' + pts.encode() + b"]}")
    return (
        b'{"resultType":"' + res.result_type.encode() + b'","result":[' + b",".join(parts) + b"]}"
    )


# --- helpers -----------------------------------------------------------------------------


def _store(request: Request) -> SampleReader:
    store = getattr(request.app.state, "store", None)
    if store is None:
        raise ApiError("internal", "no store configured", 500)
    return store


def _settings(request: Request) -> QuerySettings:
    s = getattr(request.app.state, "query_settings", None)
    return s if isinstance(s, QuerySettings) else QuerySettings()


def _translate(exc: PerfintelError) -> ApiError:
    """Status and errorType from the one shared table in ``perfintel.api.errors``."""
    code, kind = status_for(exc)
    return ApiError(kind, str(exc), code)


async def _run(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return await run_in_threadpool(fn, *args, **kwargs)
    except PerfintelError as exc:
        raise _translate(exc) from exc
    except Exception as exc:  # a bug: still answer in the Prometheus envelope
        log.exception("query failed")
        raise ApiError("internal", f"internal error: {exc}", 500) from exc


def _query_options(params: Mapping[str, list[str]]) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if _one(params, "timeout"):
        opts["timeout_s"] = parse_duration(_one(params, "timeout"), "timeout") / 1000
    if _one(params, "lookback_delta"):
        opts["lookback_ms"] = parse_duration(_one(params, "lookback_delta"), "lookback_delta")
    return opts


# --- endpoints ---------------------------------------------------------------------------


@router.get("/query", operation_id="prometheus_query_get")
@router.post("/query", operation_id="prometheus_query_post")
async def query(request: Request) -> Response:
    try:
        params = await _params(request)
        at = _optional_time(params, "time", int(time.time() * 1000))
        engine = Engine(_store(request), _settings(request))
        res = await _run(engine.instant, _one(params, "query"), at, **_query_options(params))
        return _envelope(render_result(res))
    except ApiError as exc:
        return _error(exc)


@router.get("/query_range", operation_id="prometheus_query_range_get")
@router.post("/query_range", operation_id="prometheus_query_range_post")
async def query_range(request: Request) -> Response:
    try:
        params = await _params(request)
        start = parse_time(_one(params, "start"), "start")
        end = parse_time(_one(params, "end"), "end")
        if end < start:
            raise _bad("end timestamp must not be before start time")
        step = parse_duration(_one(params, "step"), "step")
        if step <= 0:
            raise _bad(
                "zero or negative query resolution step widths are not accepted. Try a positive integer"
            )
        if (end - start) // step > 11000:
            raise _bad(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
            )
        engine = Engine(_store(request), _settings(request))
        res = await _run(
            engine.range, _one(params, "query"), start, end, step, **_query_options(params)
        )
        return _envelope(render_result(res))
    except ApiError as exc:
        return _error(exc)


@router.get("/series", operation_id="prometheus_series_get")
@router.post("/series", operation_id="prometheus_series_post")
async def series(request: Request) -> Response:
    try:
        params = await _params(request)
        if not params.get("match[]"):
            raise _bad("no match[] parameter provided")
        sels = _selectors(params)
        start = _optional_time(params, "start", MIN_TIME_MS)
        end = _optional_time(params, "end", MAX_TIME_MS)
        limit = _limit(params)
        store = _store(request)
        fetch = limit + 1 if limit else None
        found = await _run(store.series, sels, start, end, limit=fetch)
        warnings = []
        if limit and len(found) > limit:
            found = found[:limit]
            warnings.append("results truncated due to limit")
        body = orjson.dumps([dict(ls) for ls in found])
        return _envelope(body, warnings)
    except ApiError as exc:
        return _error(exc)


@router.get("/labels", operation_id="prometheus_labels_get")
@router.post("/labels", operation_id="prometheus_labels_post")
async def labels(request: Request) -> Response:
    try:
        params = await _params(request)
        sels = _selectors(params)
        start = _optional_time(params, "start", MIN_TIME_MS)
        end = _optional_time(params, "end", MAX_TIME_MS)
        limit = _limit(params)
        names = await _run(_store(request).label_names, sels, start, end)
        return _limited(sorted(names), limit)
    except ApiError as exc:
        return _error(exc)


@router.get("/label/{name}/values")
async def label_values(request: Request, name: str) -> Response:
    try:
        if name.startswith("U__"):
            name = _unescape_label(name)
        if name != METRIC_NAME and not LABEL_NAME_RE.match(name):
            raise _bad(f'invalid label name: "{name}"')
        params = await _params(request)
        sels = _selectors(params)
        start = _optional_time(params, "start", MIN_TIME_MS)
        end = _optional_time(params, "end", MAX_TIME_MS)
        limit = _limit(params)
        values = await _run(_store(request).label_values, name, sels, start, end)
        return _limited(sorted(values), limit)
    except ApiError as exc:
        return _error(exc)


def _limited(items: list[str], limit: int | None) -> Response:
    warnings = []
    if limit and len(items) > limit:
        items = items[:limit]
        warnings.append("results truncated due to limit")
    return _envelope(orjson.dumps(items), warnings)


def _unescape_label(name: str) -> str:
    """Prometheus's ``U__`` label-name escaping: ``_`` is ``__``, ``_1F4A9_`` a code point."""
    body, out, i = name[3:], [], 0
    while i < len(body):
        if body.startswith("__", i):
            out.append("_")
            i += 2
        elif body[i] == "_":
            end = body.find("_", i + 1)
            try:
                out.append(chr(int(body[i + 1 : end], 16)))
            except ValueError:
                return name
            i = end + 1
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


@router.get("/metadata")
async def metadata(request: Request) -> Response:
    try:
        params = await _params(request)
        meta = getattr(request.app.state, "metadata", None) or {}
        only = _one(params, "metric")
        limit = _limit(params)
        out: dict[str, list[dict[str, str]]] = {}
        for fam in sorted(meta):
            if only and fam != only:
                continue
            if limit and len(out) >= limit:
                break
            m = meta[fam]
            out[fam] = [{"type": m.type, "help": m.help, "unit": m.unit}]
        return _envelope(orjson.dumps(out))
    except ApiError as exc:
        return _error(exc)


@router.get("/status/buildinfo")
async def buildinfo() -> Response:
    from perfintel import __version__

    return _envelope(
        orjson.dumps(
            {
                "version": PROMETHEUS_API_VERSION,
                "revision": f"perfintel-{__version__}",
                "branch": "HEAD",
                "buildUser": "perfintel",
                "buildDate": "20261126-00:00:00",
                "goVersion": "go1.20",
            }
        )
    )


@router.get("/status/runtimeinfo")
async def runtimeinfo() -> Response:
    started = datetime.fromtimestamp(_STARTED).astimezone().isoformat()
    return _envelope(
        orjson.dumps(
            {
                "startTime": started,
                "CWD": "/",
                "reloadConfigSuccess": True,
                "lastConfigTime": started,
                "corruptionCount": 0,
                "goroutineCount": 0,
                "GOMAXPROCS": 0,
                "GOGC": "",
                "GODEBUG": "",
                "storageRetention": "",
            }
        )
    )


@router.get("/query_exemplars", operation_id="prometheus_query_exemplars_get")
@router.post("/query_exemplars", operation_id="prometheus_query_exemplars_post")
async def query_exemplars() -> Response:
    return _envelope(b"[]")


@router.get("/rules")
async def rules() -> Response:
    return _envelope(b'{"groups":[]}')


@router.get("/alerts")
async def alerts() -> Response:
    return _envelope(b'{"alerts":[]}')
