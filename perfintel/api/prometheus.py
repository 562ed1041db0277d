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
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from perfintel.api.params import parse_duration_ms as parse_duration
from perfintel.api.params import parse_time_ms as parse_time
from perfintel.errors import BadInputError
from perfintel.model import LABEL_NAME_RE, METRIC_NAME, LabelSet, Selector, parse_selector
from perfintel.query.promql.engine import Engine, QueryResult
from perfintel.query.promql.format import format_points, format_timestamp, format_value
from perfintel.query.settings import QuerySettings
from perfintel.storage.base import SampleReader

router = APIRouter(prefix="/api/v1")
log = logging.getLogger(__name__)

#: The Prometheus release whose query API this module mirrors (Grafana reads it).
PROMETHEUS_API_VERSION = "2.42.0"
MIN_TIME_MS = -9223372036854775808 // 1000 // 1000 * 1000  # far past, in ms
MAX_TIME_MS = 9223372036854775807 // 1000 // 1000 * 1000
_STARTED = time.time()


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


def _optional_time(params: Mapping[str, list[str]], name: str, default: int) -> int:
    v = _one(params, name)
    return parse_time(v, name) if v else default


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


async def _run(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Evaluation off the event loop; errors map to HTTP in ``perfintel.api.errors``."""
    return await run_in_threadpool(fn, *args, **kwargs)


class _QueryCosts:
    """How long each query shape (text, range length, step) last took to evaluate.

    A shape that took under ``inline_s`` runs on the event loop: the hop to a
    worker thread and back costs 0.1-0.2 ms here, as much as such a query
    itself, and dashboards repeat the same shapes. Anything new or slower goes
    to a worker thread, and every run updates the figure, so a shape that
    grows slow moves back off the loop after one run."""

    def __init__(self, size: int = 2048, inline_s: float = 0.002) -> None:
        self._last: OrderedDict[tuple[object, ...], float] = OrderedDict()
        self.size, self.inline_s = size, inline_s

    async def run(self, shape: tuple[object, ...], fn: Any, *args: Any, **kwargs: Any) -> Any:
        last = self._last.get(shape)
        t0 = time.perf_counter()
        try:
            if last is not None and last < self.inline_s:
                return fn(*args, **kwargs)
            return await run_in_threadpool(fn, *args, **kwargs)
        finally:
            self._last[shape] = time.perf_counter() - t0  # from the event loop only
            self._last.move_to_end(shape)
            if len(self._last) > self.size:
                self._last.popitem(last=False)


_COSTS = _QueryCosts()


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
    params = await _params(request)
    at = _optional_time(params, "time", int(time.time() * 1000))
    engine = Engine(_store(request), _settings(request))
    text, options = _one(params, "query"), _query_options(params)
    res = await _COSTS.run(("i", text), engine.instant, text, at, **options)
    return _envelope(render_result(res))


@router.get("/query_range", operation_id="prometheus_query_range_get")
@router.post("/query_range", operation_id="prometheus_query_range_post")
async def query_range(request: Request) -> Response:
    params = await _params(request)
    start = parse_time(_one(params, "start"), "start")
    end = parse_time(_one(params, "end"), "end")
    if end < start:
        raise BadInputError("end timestamp must not be before start time")
    step = parse_duration(_one(params, "step"), "step")
    if step <= 0:
        raise BadInputError(
            "zero or negative query resolution step widths are not accepted. Try a positive integer"
        )
    if (end - start) // step > 11000:
        raise BadInputError(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
        )
    engine = Engine(_store(request), _settings(request))
    text, options = _one(params, "query"), _query_options(params)
    shape = ("r", text, end - start, step)
    res = await _COSTS.run(shape, engine.range, text, start, end, step, **options)
    return _envelope(render_result(res))


@router.get("/series", operation_id="prometheus_series_get")
@router.post("/series", operation_id="prometheus_series_post")
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
    found = await _run(store.series, sels, start, end, limit=fetch)
    warnings = []
    if limit and len(found) > limit:
        found = found[:limit]
        warnings.append("results truncated due to limit")
    body = orjson.dumps([dict(ls) for ls in found])
    return _envelope(body, warnings)


@router.get("/labels", operation_id="prometheus_labels_get")
@router.post("/labels", operation_id="prometheus_labels_post")
async def labels(request: Request) -> Response:
    params = await _params(request)
    sels = _selectors(params)
    start = _optional_time(params, "start", MIN_TIME_MS)
    end = _optional_time(params, "end", MAX_TIME_MS)
    limit = _limit(params)
    names = await _run(_store(request).label_names, sels, start, end)
    return _limited(sorted(names), limit)


@router.get("/label/{name}/values")
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
    values = await _run(_store(request).label_values, name, sels, start, end)
    return _limited(sorted(values), limit)


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
