"""The Prometheus HTTP query API (``/api/v1/...``), enough for Grafana and promtool.

Handlers are thin: they parse parameters as Prometheus does (RFC 3339 or Unix
seconds; durations as ``5m`` or float seconds), run the PromQL engine in a
worker thread and render the Prometheus JSON envelope. Values are strings
formatted as Prometheus 2.x does (Go's ``strconv.FormatFloat(v, 'f', -1, 64)``,
switching to ``'e'`` below 1e-6 and from 1e21 on) and timestamps float
seconds with millisecond precision.

The router reads ``request.app.state.store`` (a ``SampleReader``), and if
present ``request.app.state.query_settings`` (``QuerySettings``),
``request.app.state.metadata`` (``dict[str, MetricMetadata]``) and, over a
remote store, ``promql_passthrough`` (``RemotePromQL``) with ``promql_mode``:
a query is passed through to the TSDB's engine when its ``promql`` parameter
(or else ``promql_mode``) says ``passthrough``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from perfintel.api.params import optional_time_ms
from perfintel.api.workers import run_query
from perfintel.errors import BadInputError, PayloadTooLargeError
from perfintel.model import LABEL_NAME_RE, METRIC_NAME, LabelSet, Selector, parse_selector
from perfintel.query.passthrough import RemotePromQL
from perfintel.query.promql.engine import Engine, QueryResult
from perfintel.query.promql.format import format_points, format_timestamp, format_value
from perfintel.query.settings import QuerySettings
from perfintel.storage.base import SampleReader
from perfintel.timeparse import format_duration_ms, parse_duration_ms, parse_time_ms

router = APIRouter(prefix="/api/v1")
_T = TypeVar("_T")
log = logging.getLogger(__name__)

#: The Prometheus release whose query API this module mirrors (Grafana reads it).
PROMETHEUS_API_VERSION = "2.42.0"
MIN_TIME_MS = -9223372036854775808 // 1000 // 1000 * 1000  # far past, in ms
MAX_TIME_MS = 9223372036854775807 // 1000 // 1000 * 1000
_STARTED = time.time()


# --- parameters -------------------------------------------------------------------------


#: Largest form body the API reads (a query is at most ``query.max_length`` characters;
#: Grafana's longest requests are match[] lists): HTTP 413 beyond.
MAX_FORM_BYTES = 4 * 1024 * 1024
#: Form bodies up to this size are parsed on the event loop (well under a millisecond);
#: larger ones in a worker thread.
_INLINE_FORM_BYTES = 64 * 1024


async def _params(request: Request) -> dict[str, list[str]]:
    """Query-string and form values together (form first, as Go's ``r.Form``)."""
    out: dict[str, list[str]] = {}
    if request.method == "POST":
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("application/x-www-form-urlencoded"):
            body = await _form_body(request)
            pairs = (
                _parse_form(body)
                if len(body) <= _INLINE_FORM_BYTES
                else await run_in_threadpool(_parse_form, body)
            )
            for k, v in pairs:
                out.setdefault(k, []).append(v)
        elif ctype.startswith("multipart/form-data"):
            declared = request.headers.get("content-length", "")
            if not declared.isdigit() or int(declared) > MAX_FORM_BYTES:
                raise PayloadTooLargeError(
                    f"multipart form bodies need a Content-Length of at most {MAX_FORM_BYTES} bytes"
                )
            form = await request.form(max_files=0, max_part_size=MAX_FORM_BYTES)
            for k, field_value in form.multi_items():
                out.setdefault(k, []).append(str(field_value))
    for k, v in request.query_params.multi_items():
        out.setdefault(k, []).append(v)
    return out


async def _form_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise PayloadTooLargeError(f"form body of {declared} bytes exceeds {MAX_FORM_BYTES} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            raise PayloadTooLargeError(f"form body exceeds {MAX_FORM_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_form(body: bytes) -> list[tuple[str, str]]:
    return parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)


def _one(params: Mapping[str, list[str]], name: str) -> str:
    vals = params.get(name)
    return vals[0] if vals else ""


def _optional_time(params: Mapping[str, list[str]], name: str, default: int) -> int:
    return optional_time_ms(_one(params, name), name, default)


def _selectors(params: Mapping[str, list[str]]) -> list[Selector]:
    out = []
    for text in params.get("match[]", []):
        out.append(parse_selector(text))
    return out


def _limit(params: Mapping[str, list[str]]) -> int | None:
    v = _one(params, "limit")
    if not v:
        return None
    try:
        n = int(v)
    except ValueError as exc:
        raise BadInputError(
            f'invalid parameter "limit": cannot parse "{v}" to a valid limit'
        ) from exc
    if n < 0:
        raise BadInputError('invalid parameter "limit": limit must be non-negative')
    return n or None


# --- rendering ---------------------------------------------------------------------------


def _envelope(data_json: bytes, warnings: Sequence[str] = ()) -> Response:
    body = b'{"status":"success","data":' + data_json
    if warnings:
        body += b',"warnings":' + orjson.dumps(list(warnings))
    return Response(body + b"}", media_type="application/json")


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
        for s in res.series:
            pts = format_points(s.timestamps, s.values).encode()
            parts.append(b'{"metric":' + _metric(s.labels) + b',"values":[' + pts + b"]}")
    return (
        b'{"resultType":"' + res.result_type.encode() + b'","result":[' + b",".join(parts) + b"]}"
    )


# --- helpers -----------------------------------------------------------------------------


def _store(request: Request) -> SampleReader:
    store: SampleReader = request.app.state.store
    return store


def _settings(request: Request) -> QuerySettings:
    s = getattr(request.app.state, "query_settings", None)
    return s if isinstance(s, QuerySettings) else QuerySettings()


async def _run(request: Request, fn: Callable[[], _T]) -> _T:
    """Always off the event loop, reading and rendering in one hop
    (``perfintel.api.workers``): what a query costs depends on the data it meets, so no
    query is cheap enough to run on the loop, however fast it ran last time. Errors map
    to HTTP in ``perfintel.api.errors``."""
    return await run_query(request, fn)


def _passthrough(request: Request, params: Mapping[str, list[str]]) -> RemotePromQL | None:
    """The remote TSDB's engine when this query is to be passed through (the request's
    ``promql`` parameter, else ``storage.remote.promql``), ``None`` for perfintel's engine."""
    mode = _one(params, "promql") or getattr(request.app.state, "promql_mode", "engine")
    if mode not in ("engine", "passthrough"):
        raise BadInputError('invalid parameter "promql": engine or passthrough')
    if mode == "engine":
        return None
    remote: RemotePromQL | None = getattr(request.app.state, "promql_passthrough", None)
    if remote is None:
        raise BadInputError("promql=passthrough needs a remote store (storage.backend)")
    return remote


def _query_options(params: Mapping[str, list[str]]) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if _one(params, "timeout"):
        opts["timeout_s"] = parse_duration_ms(_one(params, "timeout"), "timeout") / 1000
    if _one(params, "lookback_delta"):
        opts["lookback_ms"] = parse_duration_ms(_one(params, "lookback_delta"), "lookback_delta")
    return opts


# --- endpoints ---------------------------------------------------------------------------


@router.get(
    "/query",
    operation_id="prometheus_query_get",
    summary="PromQL instant query (Prometheus HTTP API)",
)
@router.post(
    "/query",
    operation_id="prometheus_query_post",
    summary="PromQL instant query (Prometheus HTTP API)",
)
async def query(request: Request) -> Response:
    params = await _params(request)
    at = _optional_time(params, "time", int(time.time() * 1000))
    remote = _passthrough(request, params)
    if remote is not None:
        return _envelope(await _run(request, lambda: remote.instant(_one(params, "query"), at)))
    engine = Engine(_store(request), _settings(request))
    text, options = _one(params, "query"), _query_options(params)
    body = await _run(request, lambda: render_result(engine.instant(text, at, **options)))
    return _envelope(body)


@router.get(
    "/query_range",
    operation_id="prometheus_query_range_get",
    summary="PromQL range query (Prometheus HTTP API)",
)
@router.post(
    "/query_range",
    operation_id="prometheus_query_range_post",
    summary="PromQL range query (Prometheus HTTP API)",
)
async def query_range(request: Request) -> Response:
    params = await _params(request)
    start = parse_time_ms(_one(params, "start"), "start")
    end = parse_time_ms(_one(params, "end"), "end")
    if end < start:
        raise BadInputError("end timestamp must not be before start time")
    step = parse_duration_ms(_one(params, "step"), "step")
    if step <= 0:
        raise BadInputError(
            "zero or negative query resolution step widths are not accepted. Try a positive integer"
        )
    if (end - start) // step > 11000:
        raise BadInputError(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
        )
    remote = _passthrough(request, params)
    if remote is not None:
        text = _one(params, "query")
        return _envelope(await _run(request, lambda: remote.range(text, start, end, step)))
    engine = Engine(_store(request), _settings(request))
    text, options = _one(params, "query"), _query_options(params)
    body = await _run(
        request, lambda: render_result(engine.range(text, start, end, step, **options))
    )
    return _envelope(body)


@router.get(
    "/series",
    operation_id="prometheus_series_get",
    summary="Series matching selectors (Prometheus HTTP API)",
)
@router.post(
    "/series",
    operation_id="prometheus_series_post",
    summary="Series matching selectors (Prometheus HTTP API)",
)
async def series(request: Request) -> Response:
    params = await _params(request)
    if not params.get("match[]"):
        raise BadInputError("no match[] parameter provided")
    sels = _selectors(params)
    start = _optional_time(params, "start", MIN_TIME_MS)
    end = _optional_time(params, "end", MAX_TIME_MS)
    limit = _limit(params)
    store = _store(request)
    fetch = limit + 1 if limit else None

    def work() -> tuple[bytes, list[str]]:
        found = store.series(sels, start, end, limit=fetch)
        warnings = []
        if limit and len(found) > limit:
            found = found[:limit]
            warnings.append("results truncated due to limit")
        return orjson.dumps([dict(ls) for ls in found]), warnings

    body, warnings = await _run(request, work)
    return _envelope(body, warnings)


@router.get(
    "/labels", operation_id="prometheus_labels_get", summary="Label names (Prometheus HTTP API)"
)
@router.post(
    "/labels", operation_id="prometheus_labels_post", summary="Label names (Prometheus HTTP API)"
)
async def labels(request: Request) -> Response:
    params = await _params(request)
    sels = _selectors(params)
    start = _optional_time(params, "start", MIN_TIME_MS)
    end = _optional_time(params, "end", MAX_TIME_MS)
    limit = _limit(params)
    store = _store(request)
    return await _run(request, lambda: _limited(sorted(store.label_names(sels, start, end)), limit))


@router.get("/label/{name}/values", summary="Values of one label (Prometheus HTTP API)")
async def label_values(request: Request, name: str) -> Response:
    if name.startswith("U__"):
        name = _unescape_label(name)
    if name != METRIC_NAME and not LABEL_NAME_RE.match(name):
        raise BadInputError(f'invalid label name: "{name}"')
    params = await _params(request)
    sels = _selectors(params)
    start = _optional_time(params, "start", MIN_TIME_MS)
    end = _optional_time(params, "end", MAX_TIME_MS)
    limit = _limit(params)
    store = _store(request)
    return await _run(
        request, lambda: _limited(sorted(store.label_values(name, sels, start, end)), limit)
    )


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


@router.get("/metadata", summary="Metric metadata seen at ingest (Prometheus HTTP API)")
async def metadata(request: Request) -> Response:
    params = await _params(request)
    meta = getattr(request.app.state, "metadata", None) or {}
    only = _one(params, "metric")
    limit = _limit(params)

    def work() -> bytes:  # up to MetadataStore.max_families families: off the loop
        out: dict[str, list[dict[str, str]]] = {}
        for fam in [only] if only else sorted(meta):
            if limit and len(out) >= limit:
                break
            m = meta.get(fam)
            if m is not None:
                out[fam] = [{"type": m.type, "help": m.help, "unit": m.unit}]
        return orjson.dumps(out)

    return _envelope(await _run(request, work))


@router.get("/status/buildinfo", summary="Build information (Prometheus HTTP API)")
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


@router.get("/status/runtimeinfo", summary="Runtime information (Prometheus HTTP API)")
async def runtimeinfo(request: Request) -> Response:
    """Prometheus's runtime information, with perfintel's own values where it has them:
    the process's working directory, the data directory and the raw retention."""
    started = datetime.fromtimestamp(_STARTED).astimezone().isoformat()
    settings = getattr(request.app.state, "settings", None)
    data_dir = str(Path(settings.data_dir).resolve()) if settings is not None else ""
    retention = (
        format_duration_ms(round(settings.storage.raw_retention * 1000))
        if settings is not None
        else ""
    )
    return _envelope(
        orjson.dumps(
            {
                "startTime": started,
                "CWD": os.getcwd(),
                "dataDir": data_dir,
                "reloadConfigSuccess": True,
                "lastConfigTime": started,
                "corruptionCount": 0,
                "goroutineCount": threading.active_count(),
                "GOMAXPROCS": os.cpu_count() or 0,
                "GOGC": "",
                "GODEBUG": "",
                "storageRetention": retention,
            }
        )
    )


@router.get(
    "/query_exemplars",
    operation_id="prometheus_query_exemplars_get",
    summary="Exemplars (none are stored: always empty)",
)
@router.post(
    "/query_exemplars",
    operation_id="prometheus_query_exemplars_post",
    summary="Exemplars (none are stored: always empty)",
)
async def query_exemplars() -> Response:
    return _envelope(b"[]")
