"""Ingest endpoints: thin adapters from HTTP to the parsers and the store.

Every endpoint keeps the valid samples of a payload and rejects the invalid
ones line by line. Remote write answers 204 when everything was stored and
400 (with the valid samples still stored, as the spec allows) otherwise; the
other endpoints answer like their protocol's usual server, and all of them
report ``accepted`` and ``rejected`` counts (in the body, and in the
``X-Perfintel-Samples-Accepted`` / ``-Rejected`` headers).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from perfintel.api.auth import require
from perfintel.api.body import read_body
from perfintel.api.params import parse_time, selectors_param
from perfintel.api.responses import JSONResponse
from perfintel.batch import ParseResult
from perfintel.errors import BadInputError, UnsupportedMediaError
from perfintel.ingest.influx import parse_influx_line_protocol
from perfintel.ingest.json_ingest import IngestBody, parse_json_ingest
from perfintel.ingest.prometheus_text import content_type_is_openmetrics, parse_prometheus_text
from perfintel.ingest.remote_write import decode_remote_write, decode_remote_write_v2
from perfintel.ingest.vm_export import format_vm_jsonl, parse_vm_jsonl
from perfintel.storage.base import QueryLimits

router = APIRouter(tags=["ingest"])
write = [Depends(require("write"))]


@dataclass
class IngestOutcome:
    protocol: str
    accepted: int
    rejected: int
    errors: list[str] = field(default_factory=list)

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
            "errors": self.errors,
        }


def _ingest(request: Request, protocol: str, parse: Callable[[], ParseResult]) -> IngestOutcome:
    """Parse, store and count (runs in a worker thread: parsing is CPU work)."""
    state = request.app.state
    result = parse()
    stored = state.store.append(result.batch) if len(result.batch) else None
    if stored is not None and stored.accepted:
        state.live.publish_samples(result.batch)  # live stream subscribers; never blocks
    if stored is not None and state.anomaly is not None:
        state.anomaly.submit(result.batch)  # online anomaly detection; never blocks
    if result.metadata:
        state.metadata.update(result.metadata)
    limit = state.settings.limits.max_errors_reported
    errors = [str(err) for err in result.errors[:limit]]
    if len(result.errors) > limit:
        errors.append(f"... and {len(result.errors) - limit} more")
    outcome = IngestOutcome(protocol, stored.accepted if stored else 0, len(result.errors), errors)
    m = state.metrics
    if outcome.accepted:
        m.ingested_samples.labels(protocol=protocol).inc(outcome.accepted)
    if outcome.rejected:
        m.rejected_samples.labels(protocol=protocol, reason="invalid").inc(outcome.rejected)
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
    default_ts = int(parse_time(timestamp, "timestamp") * 1000) if timestamp else _now_ms()
    outcome = await run_in_threadpool(
        _ingest,
        request,
        "prometheus",
        lambda: parse_prometheus_text(body, default_timestamp_ms=default_ts, openmetrics=om),
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


@router.get("/query", include_in_schema=False)
@router.post("/query", include_in_schema=False)
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
    "/api/v1/import", dependencies=write, summary="Import VictoriaMetrics JSON-lines export format"
)
async def import_jsonl(request: Request) -> JSONResponse:
    body = await read_body(request)
    outcome = await run_in_threadpool(_ingest, request, "vm_import", lambda: parse_vm_jsonl(body))
    return _json_outcome(request, outcome)


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
    start_ms = int(parse_time(start, "start") * 1000) if start else 0
    end_ms = int(parse_time(end, "end") * 1000) if end else _now_ms()
    if end_ms < start_ms:
        raise BadInputError("invalid parameter 'end': end is before start")
    store = request.app.state.store
    q = request.app.state.settings.query
    limits = QueryLimits(max_series=q.max_series, max_samples=q.max_samples)

    def lines() -> Iterator[bytes]:
        seen = set()
        for sel in selectors:
            for s in store.select(sel, start_ms, end_ms, limits=limits):
                if s.labels in seen:
                    continue
                seen.add(s.labels)
                yield from format_vm_jsonl([s])

    # Run the first selection before answering so a bad request still gets a 4xx.
    it = lines()
    first = await run_in_threadpool(next, it, b"")

    async def stream() -> Iterator[bytes]:  # type: ignore[misc]
        if first:
            yield first
        async for chunk in iterate_in_threadpool(it):
            yield chunk

    return StreamingResponse(stream(), media_type="application/stream+json")
