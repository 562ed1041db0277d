"""Ingest endpoints: thin adapters from HTTP to the parsers and the store.

Every endpoint keeps the valid samples of a payload and rejects the invalid
ones line by line. Remote write answers 204 when everything was stored and
400 (with the valid samples still stored, as the spec allows) otherwise; the
other endpoints answer like their protocol's usual server, and all of them
report ``accepted`` and ``rejected`` counts (in the body, and in the
``X-Perfintel-Samples-Accepted`` / ``-Rejected`` headers).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import anyio
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import ClientDisconnect

from perfintel.api.auth import require
from perfintel.api.body import read_body, stream_body
from perfintel.api.errors import status_for
from perfintel.api.params import optional_time_ms, selectors_param
from perfintel.api.responses import JSONResponse
from perfintel.batch import ParseResult
from perfintel.errors import (
    BadInputError,
    OverloadedError,
    SeriesRateLimitError,
    TooManyNewSeriesError,
    UnsupportedMediaError,
)
from perfintel.ingest.influx import parse_influx_line_protocol
from perfintel.ingest.json_ingest import IngestBody, parse_json_ingest
from perfintel.ingest.otlp import encode_otlp_status, parse_otlp_metrics
from perfintel.ingest.prometheus_text import content_type_is_openmetrics, parse_prometheus_text
from perfintel.ingest.remote_write import (
    decode_remote_write,
    decode_remote_write_v2,
    forget_cached_labels,
)
from perfintel.ingest.vm_export import VmJsonlStream, format_vm_jsonl
from perfintel.model import LabelSet, Selector
from perfintel.storage.base import QueryLimits, Store

log = logging.getLogger(__name__)
router = APIRouter(tags=["ingest"])
write = [Depends(require("write"))]
#: Influx's health check answers without credentials in InfluxDB too, and carries no data.
PUBLIC_PATHS = ("/ping",)


@dataclass
class IngestOutcome:
    protocol: str
    accepted: int
    rejected: int
    errors: list[str] = field(default_factory=list)
    omitted: int = 0  # errors not listed (beyond ``limits.max_errors_reported``)

    def headers(self) -> dict[str, str]:
        return {
            "X-Perfintel-Samples-Accepted": str(self.accepted),
            "X-Perfintel-Samples-Rejected": str(self.rejected),
        }

    def body(self) -> dict[str, object]:
        return {
            "status": "success" if not self.rejected else "error",
            "accepted": self.accepted,
            "rejected": self.rejected,
            "errors": [*self.errors, f"... and {self.omitted} more"]
            if self.omitted
            else self.errors,
        }


def _ingest(request: Request, protocol: str, parse: Callable[[], ParseResult]) -> IngestOutcome:
    """Parse, store and count (runs in a worker thread: parsing is CPU work)."""
    return _store(request, protocol, parse())


def _store(request: Request, protocol: str, result: ParseResult) -> IngestOutcome:
    """Store a parsed payload's samples and count them (in a worker thread)."""
    state = request.app.state
    publisher = state.role.publisher  # an ingest process's bus (perfintel.bus.roles)
    if publisher is not None and len(result.batch):
        publisher.check()  # 503 with Retry-After while the workers are too far behind
    try:
        stored = state.store.append(result.batch) if len(result.batch) else None
    except (TooManyNewSeriesError, SeriesRateLimitError):
        forget_cached_labels()  # the refused series must not stay in the parser's cache
        raise
    batch = result.batch if stored is None or stored.kept is None else stored.kept
    if publisher is not None and stored is not None and stored.accepted:
        # acknowledged only once stored and published (a retry re-stores idempotently)
        anyio.from_thread.run(publisher.send, publisher.prepare(batch))
    if stored is not None and stored.accepted:
        state.live.publish_samples(batch)  # live stream subscribers; never blocks
    if stored is not None and state.anomaly is not None and stored.accepted:
        state.anomaly.submit(batch)  # online anomaly detection; never blocks
    if result.metadata:
        state.metadata.update(result.metadata)
    limit = state.settings.limits.max_errors_reported
    # The store's refusals (timestamps out of bounds) first: one message per kind.
    refused = stored.rejected if stored else 0
    all_errors = [*(stored.errors if stored else []), *map(str, result.errors[:limit])]
    errors = all_errors[:limit]
    omitted = len(result.errors) + len(stored.errors if stored else []) - len(errors)
    outcome = IngestOutcome(
        protocol, stored.accepted if stored else 0, len(result.errors) + refused, errors, omitted
    )
    m = state.metrics
    if outcome.accepted:
        m.ingested_samples.labels(protocol=protocol).inc(outcome.accepted)
    if result.errors:
        m.rejected_samples.labels(protocol=protocol, reason="invalid").inc(len(result.errors))
    if refused:
        m.rejected_samples.labels(protocol=protocol, reason="out_of_bounds").inc(refused)
    return outcome


def _count(request: Request, outcome: IngestOutcome, code: int) -> None:
    request.app.state.metrics.ingest_requests.labels(
        protocol=outcome.protocol, code=str(code)
    ).inc()


def _now_ms() -> int:
    return int(time.time() * 1000)


@router.post(
    "/api/v1/write",
    dependencies=write,
    status_code=204,
    summary="Prometheus remote write (1.0 and 2.0)",
)
async def remote_write(request: Request) -> Response:
    body = await read_body(request, default_encoding="snappy")
    ctype = request.headers.get("content-type", "application/x-protobuf").lower()
    if not ctype.startswith("application/x-protobuf"):
        raise UnsupportedMediaError(
            f"remote write needs Content-Type application/x-protobuf, got {ctype!r}"
        )
    v2 = "io.prometheus.write.v2.request" in ctype
    decode = decode_remote_write_v2 if v2 else decode_remote_write
    outcome = await run_in_threadpool(_ingest, request, "remote_write", lambda: decode(body))
    headers = outcome.headers()
    if v2:
        headers.update(
            {
                "X-Prometheus-Remote-Write-Samples-Written": str(outcome.accepted),
                "X-Prometheus-Remote-Write-Histograms-Written": "0",
                "X-Prometheus-Remote-Write-Exemplars-Written": "0",
            }
        )
    code = 400 if outcome.rejected else 204
    _count(request, outcome, code)
    if code == 400:
        return JSONResponse(outcome.body(), status_code=400, headers=headers)
    return Response(status_code=204, headers=headers)


@router.post(
    "/api/v1/import/prometheus",
    dependencies=write,
    summary="Push Prometheus text exposition or OpenMetrics",
)
async def import_prometheus(request: Request, timestamp: str | None = Query(None)) -> JSONResponse:
    body = await read_body(request)
    om = content_type_is_openmetrics(request.headers.get("content-type")) or None
    default_ts = optional_time_ms(timestamp, "timestamp", _now_ms())
    # More distinct series than the store knows plus the new-series limit: some
    # must be new beyond the limit, so stop parsing there (a series flood costs
    # the parse of its first lines only).
    index = getattr(request.app.state.store, "index", None)
    most = (
        None
        if index is None
        else len(index) + request.app.state.settings.limits.max_new_series_per_request
    )
    outcome = await run_in_threadpool(
        _ingest,
        request,
        "prometheus",
        lambda: parse_prometheus_text(
            body, default_timestamp_ms=default_ts, openmetrics=om, max_series=most
        ),
    )
    return _json_outcome(request, outcome)


def _json_outcome(request: Request, outcome: IngestOutcome) -> JSONResponse:
    code = 400 if outcome.rejected else 200
    _count(request, outcome, code)
    return JSONResponse(outcome.body(), status_code=code, headers=outcome.headers())


_PRECISIONS = {"ns", "n", "u", "us", "µ", "µs", "ms", "s", "m", "h"}


async def _influx(request: Request, precision: str) -> Response:
    if precision not in _PRECISIONS:
        raise BadInputError(
            f"invalid parameter 'precision': {precision!r} (use ns, us, ms, s, m or h)"
        )
    body = await read_body(request)
    now = _now_ms()
    outcome = await run_in_threadpool(
        _ingest,
        request,
        "influx",
        lambda: parse_influx_line_protocol(body, precision=precision, default_timestamp_ms=now),
    )
    if outcome.rejected:
        _count(request, outcome, 400)
        first = outcome.errors[0] if outcome.errors else "invalid line"
        return JSONResponse(
            {"code": "invalid", "message": f"partial write: {first}", **outcome.body()},
            status_code=400,
            headers=outcome.headers(),
        )
    _count(request, outcome, 204)
    return Response(status_code=204, headers=outcome.headers())


@router.post("/write", dependencies=write, status_code=204, summary="Influx line protocol (v1 API)")
@router.post("/influx/write", dependencies=write, status_code=204, include_in_schema=False)
async def influx_v1(
    request: Request, precision: str = "ns", db: str | None = None, rp: str | None = None
) -> Response:
    return await _influx(request, precision)


@router.post(
    "/api/v2/write", dependencies=write, status_code=204, summary="Influx line protocol (v2 API)"
)
@router.post("/influx/api/v2/write", dependencies=write, status_code=204, include_in_schema=False)
async def influx_v2(
    request: Request, precision: str = "ns", org: str | None = None, bucket: str | None = None
) -> Response:
    return await _influx(request, precision)


@router.get("/query", dependencies=write, include_in_schema=False)
@router.post("/query", dependencies=write, include_in_schema=False)
async def influx_query(q: str = "") -> JSONResponse:
    """Telegraf's influx output asks ``SHOW DATABASES`` / ``CREATE DATABASE``: answer politely."""
    return JSONResponse(
        {
            "results": [
                {
                    "statement_id": 0,
                    "series": [
                        {"name": "databases", "columns": ["name"], "values": [["perfintel"]]}
                    ],
                }
            ]
        }
    )


@router.get("/ping", include_in_schema=False)
@router.head("/ping", include_in_schema=False)
async def influx_ping() -> Response:
    return Response(status_code=204, headers={"X-Influxdb-Version": "perfintel"})


@router.post(
    "/api/v1/ingest",
    dependencies=write,
    summary="Ingest samples as JSON",
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "schema": IngestBody.model_json_schema(
                        ref_template="#/components/schemas/{model}"
                    )
                }
            },
            "required": True,
        }
    },
)
async def ingest_json(request: Request) -> JSONResponse:
    """Body: ``{"series": [{"metric": "name", "labels": {...}, "samples": [[ts_ms, value], ...]}]}``;
    values are numbers or the strings ``NaN``, ``+Inf``, ``-Inf``."""
    body = await read_body(request)
    outcome = await run_in_threadpool(_ingest, request, "json", lambda: parse_json_ingest(body))
    return _json_outcome(request, outcome)


@router.post(
    "/api/v1/import",
    dependencies=write,
    summary="Import VictoriaMetrics JSON lines (a backup) of any size, streamed",
)
async def import_jsonl(request: Request) -> Response:
    """The body is read, decompressed (gzip, deflate, zstd) and parsed as it
    arrives and stored in batches: memory stays bounded whatever its size, and
    ``limits.max_body_bytes`` does not apply (a line longer than
    ``limits.max_import_line_bytes`` is rejected with its number)."""
    job = _ImportJob(request)
    try:
        async for pieces in stream_body(request):
            await run_in_threadpool(job.consume, pieces)
    except ClientDisconnect:
        log.info(
            "import cut short by the client after %d samples (those are stored)",
            job.outcome.accepted,
        )
        _count(request, job.outcome, 499)
        return Response(status_code=499)  # nobody is listening; for the access log
    await run_in_threadpool(job.finish)
    return _json_outcome(request, job.outcome)


class _ImportJob:
    """A streaming import: pieces of the decoded body in, batches stored, counts kept."""

    #: How long one batch waits for room in the store (the head flushing) before the import fails.
    OVERLOAD_WAIT_S = 120.0

    def __init__(self, request: Request) -> None:
        self.request = request
        limits = request.app.state.settings.limits
        self.max_errors = limits.max_errors_reported
        self.parser = VmJsonlStream(max_line_bytes=limits.max_import_line_bytes)
        self.outcome = IngestOutcome("vm_import", 0, 0)

    def consume(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            for result in self.parser.feed(piece):
                self._store(result)

    def finish(self) -> None:
        for result in self.parser.finish():
            self._store(result)

    def _store(self, result: ParseResult) -> None:
        deadline = time.monotonic() + self.OVERLOAD_WAIT_S
        pause = 0.05
        while True:
            try:
                part = _store(self.request, self.outcome.protocol, result)
                break
            except OverloadedError:  # the head is full: wait for the flush, as a client would
                if time.monotonic() > deadline:
                    raise
                time.sleep(pause)
                pause = min(1.0, pause * 2)
        self.outcome.accepted += part.accepted
        self.outcome.rejected += part.rejected
        room = max(0, self.max_errors - len(self.outcome.errors))
        self.outcome.errors.extend(part.errors[:room])
        self.outcome.omitted += part.omitted + max(0, len(part.errors) - room)


@router.get(
    "/api/v1/export",
    dependencies=[Depends(require("read"))],
    summary="Export samples as JSON lines",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/stream+json": {"schema": {"type": "string"}}}}},
)
async def export_jsonl(
    request: Request,
    start: str | None = Query(None, description="Unix seconds or RFC3339; default: 0"),
    end: str | None = Query(None, description="Unix seconds or RFC3339; default: now"),
) -> StreamingResponse:
    selectors = selectors_param(request, required=True)
    start_ms = optional_time_ms(start, "start", 0)
    end_ms = optional_time_ms(end, "end", _now_ms())
    if end_ms < start_ms:
        raise BadInputError("invalid parameter 'end': end is before start")
    store = request.app.state.store
    q = request.app.state.settings.query
    limits = QueryLimits(max_series=q.max_series, max_samples=q.max_samples)
    it = _export_lines(store, selectors, start_ms, end_ms, limits)
    # Run the first selection before answering so a bad request still gets a 4xx.
    first = await run_in_threadpool(next, it, b"")

    async def stream() -> AsyncIterator[bytes]:
        if first:
            yield first
        async for chunk in iterate_in_threadpool(it):
            yield chunk

    return StreamingResponse(stream(), media_type="application/stream+json")


def _first_data_ms(store: Store, sel: Selector, start_ms: int, end_ms: int) -> int | None:
    """Where the oldest series matching ``sel`` starts (to the hour), by bisection of the index."""
    if not store.series([sel], start_ms, end_ms):
        return None
    lo, hi = start_ms, end_ms
    while hi - lo > _EXPORT_FIRST_WINDOW_MS:
        mid = (lo + hi) // 2
        if store.series([sel], lo, mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


#: Samples one export read aims at: the window of time read at once adapts to it.
EXPORT_STEP_SAMPLES = 1_000_000
_EXPORT_FIRST_WINDOW_MS = 3_600_000
_EXPORT_BLOCK_BYTES = 1 << 20


def _export_lines(
    store: Store,
    selectors: list[Selector],
    start_ms: int,
    end_ms: int,
    limits: QueryLimits,
    *,
    step_samples: int = EXPORT_STEP_SAMPLES,
) -> Iterator[bytes]:
    """Export lines of every series matching any selector, read a window of time at a time.

    Reading starts where the selector's oldest series starts (found by
    bisection over the series index, not at ``start_ms``), with an hour's
    window that halves or doubles after each read to hold about
    ``step_samples`` samples, so memory stays bounded whatever the export's
    size. Across a gap the window grows by at most 16 times the last window
    that held samples, so data after a gap never arrives in one huge read. A
    series longer than a window comes out as several lines, as
    VictoriaMetrics' own export does. A series matched by several selectors
    is exported once.
    """
    done: set[LabelSet] = set()
    for sel in selectors:
        matched = set(store.series([sel], start_ms, end_ms))
        todo = matched - done
        lo = _first_data_ms(store, sel, start_ms, end_ms) if todo else None
        window = useful = _EXPORT_FIRST_WINDOW_MS
        while lo is not None and lo <= end_ms:
            hi = min(end_ms, lo + window - 1)
            got = [s for s in store.select(sel, lo, hi, limits=limits) if s.labels in todo]
            n = sum(len(s.timestamps) for s in got)
            # Lines in blocks of about a megabyte: one worker-thread hop each, not one a line.
            block: list[bytes] = []
            size = 0
            for line in format_vm_jsonl(got):
                block.append(line)
                size += len(line)
                if size >= _EXPORT_BLOCK_BYTES:
                    yield b"".join(block)
                    block, size = [], 0
            if block:
                yield b"".join(block)
            del got, block
            lo = hi + 1
            if n:
                useful = window
            if n > step_samples:
                window = max(1000, window // 2)
            elif n < step_samples // 4:
                window = min(window * 2, 16 * useful)
        done |= matched


# -- OTLP/HTTP metrics ------------------------------------------------------------------

_OTLP_PROTOBUF = "application/x-protobuf"
_GRPC_CODES = {400: 3, 413: 8, 415: 3, 429: 8, 503: 14}  # google.rpc.Code of our answers


@router.post(
    "/v1/metrics",
    dependencies=write,
    summary="OpenTelemetry OTLP/HTTP metrics (protobuf or JSON, gzip)",
    response_class=Response,
)
@router.post(
    "/api/v1/otlp/v1/metrics", dependencies=write, include_in_schema=False, response_class=Response
)
async def otlp_metrics(request: Request) -> Response:
    """OTLP ``ExportMetricsServiceRequest``, mapped to Prometheus series as Prometheus's
    OTLP receiver does (``perfintel.ingest.otlp``). 200 with an empty
    ``ExportMetricsServiceResponse`` when everything was stored; 400 with a
    ``google.rpc.Status`` naming each refused metric (delta temporality,
    exponential histograms) otherwise, the other metrics stored. Answers are
    protobuf or JSON as the request was."""
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    as_json = ctype == "application/json"
    try:
        if ctype not in ("", "application/json", _OTLP_PROTOBUF, "application/protobuf"):
            raise UnsupportedMediaError(
                f"OTLP/HTTP takes Content-Type {_OTLP_PROTOBUF} or application/json, got {ctype!r}"
            )
        body = await read_body(request)
        as_json = as_json or (not ctype and body.lstrip()[:1] == b"{")
        outcome = await run_in_threadpool(
            _ingest, request, "otlp", lambda: parse_otlp_metrics(body, json=as_json)
        )
    except BadInputError as exc:
        code, _ = status_for(exc)
        _count(request, IngestOutcome("otlp", 0, 0), code)
        return _otlp_answer(code, str(exc), as_json, {})
    if outcome.rejected:
        _count(request, outcome, 400)
        message = f"{outcome.accepted} samples stored; refused: " + "; ".join(outcome.errors)
        return _otlp_answer(400, message, as_json, outcome.headers())
    _count(request, outcome, 200)
    return _otlp_answer(200, "", as_json, outcome.headers())


def _otlp_answer(code: int, message: str, as_json: bool, headers: dict[str, str]) -> Response:
    """An empty ``ExportMetricsServiceResponse`` (200) or a ``google.rpc.Status``."""
    if code == 200:
        body = b"{}" if as_json else b""
    else:
        body = encode_otlp_status(_GRPC_CODES.get(code, 2), message, json=as_json)
    media = "application/json" if as_json else _OTLP_PROTOBUF
    return Response(body, status_code=code, media_type=media, headers=headers)
