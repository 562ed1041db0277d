"""The perfintel service: one FastAPI application over one store.

``create_app`` wires the pieces: the store (the embedded DuckDB store by
default), the self-metrics registry, the host collector and scrapers (as
background tasks of the event loop), and the routers. Everything the handlers
need hangs off ``app.state``: ``settings``, ``store``, ``metrics``,
``metadata`` (metric families seen at ingest) and ``query_settings``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from fastapi import Depends, FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from perfintel import __version__
from perfintel.alerting.model import AlertSink
from perfintel.alerting.rules.service import start_service as start_rule_service
from perfintel.analysis.anomaly import kernel
from perfintel.api import anomalies, errors, ingest, performance, prometheus, rules, series
from perfintel.api.auth import require
from perfintel.api.responses import JSONResponse
from perfintel.batch import MetricMetadata, SampleBatch
from perfintel.collect.host import HostCollector
from perfintel.collect.schedule import run_every
from perfintel.collect.scrape import Scraper
from perfintel.config import Settings
from perfintel.performance.online import OnlineAnomalyDetection
from perfintel.query.settings import QuerySettings
from perfintel.storage.base import Store
from perfintel.storage.duckdb import DuckDBStore, StoreOptions, Tier
from perfintel.telemetry import Registry, ServiceMetrics

log = logging.getLogger("perfintel")


def store_options(settings: Settings) -> StoreOptions:
    s = settings.storage
    ms = 1000
    return StoreOptions(
        block_ms=int(s.block * ms),
        raw_retention_ms=int(s.raw_retention * ms),
        tiers=tuple(
            Tier(t.name, int(t.resolution * ms), int(t.retention * ms), int(t.window * ms))
            for t in s.tiers
        ),
        head_max_samples=s.head_max_samples,
        head_max_age_s=s.head_max_age,
        seal_grace_ms=int(s.seal_grace * ms),
        maintenance_interval_s=s.maintenance_interval,
        wal_fsync=s.wal_fsync,
        memory_limit=s.memory_limit,
    )


def open_store(settings: Settings) -> DuckDBStore:
    return DuckDBStore(Path(settings.data_dir) / "samples", store_options(settings))


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    collectors: bool = True,
    clock: Callable[[], float] = time.time,
    alert_sink: AlertSink | None = None,
) -> FastAPI:
    """Build the service. ``store`` overrides the configured one (its owner closes it);
    ``collectors=False`` leaves the host collector and scrapers off (for tests)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_store = store is None
        app.state.store = (
            store if store is not None else await run_in_threadpool(open_store, settings)
        )
        _bind_store_metrics(app)
        # The detect API's kernel compiles on first use (cached on disk, so later
        # processes load it in well under a second); compiling at start-up would
        # cost every instance ~100 MiB of LLVM whether it ever detects or not.
        kernel.set_enabled(settings.anomaly.kernel)
        # online anomaly detection (perfintel.performance.online): fed by ingest and the collectors
        if settings.anomaly.enabled:
            anomaly = OnlineAnomalyDetection.from_settings(
                app.state.store, settings, app.state.metrics.registry
            )
            await run_in_threadpool(anomaly.start)
            app.state.anomaly = anomaly
        if settings.alerting.enabled:  # the rule engine (perfintel.alerting.rules)
            app.state.rules = await start_rule_service(
                settings.alerting,
                settings.data_dir,
                app.state.store,
                registry=app.state.metrics.registry,
                query=app.state.query_settings,
                sink=alert_sink,
            )
        tasks: list[asyncio.Task[None]] = []
        scraper: Scraper | None = None
        if collectors:
            sink = _sink(app)
            hc = settings.host_collector
            if hc.enabled:
                collector = HostCollector(proc_root=hc.proc_root, clock=clock)

                async def collect_host() -> None:
                    result = await run_in_threadpool(collector.collect_with_errors)
                    for group, err in result.errors.items():
                        log.debug("host collector group %s failed: %s", group, err)
                    await sink(result.batch)

                await collect_host()  # data from the very first second
                tasks.append(
                    asyncio.create_task(
                        run_every(hc.interval, 0.0, collect_host, clock=clock, name="host")
                    )
                )
            if settings.scrape:
                scraper = Scraper(settings.scrape, sink, clock=clock, metrics=app.state.metrics)
                tasks.append(asyncio.create_task(scraper.run()))
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            if scraper is not None:
                await scraper.aclose()
            if app.state.rules is not None:
                await app.state.rules.stop()
                app.state.rules = None
            if app.state.anomaly is not None:  # drains its queue and saves its state
                await run_in_threadpool(app.state.anomaly.close)
                app.state.anomaly = None
            if own_store:
                await run_in_threadpool(app.state.store.close)

    app = FastAPI(
        title="perfintel",
        version=__version__,
        description="Self-hosted performance intelligence: ingest, store, query, analyse and alert on metrics.",
        lifespan=lifespan,
        default_response_class=JSONResponse,
    )
    app.state.settings = settings
    app.state.ready = False
    app.state.anomaly = None  # an OnlineAnomalyDetection while running, when enabled
    app.state.rules = None  # a RuleService while running, when alerting is enabled
    app.state.metadata: dict[str, MetricMetadata] = {}  # type: ignore[misc]
    app.state.metrics = ServiceMetrics(Registry())
    q = settings.query
    app.state.query_settings = QuerySettings(
        max_series=q.max_series,
        max_samples=q.max_samples,
        timeout_s=q.timeout,
        lookback_ms=int(q.lookback_delta * 1000),
    )
    errors.install(app)
    _install_http_metrics(app)
    app.include_router(ingest.router)
    app.include_router(series.router)
    app.include_router(performance.router)
    app.include_router(anomalies.router)
    app.include_router(prometheus.router)
    app.include_router(rules.router)

    @app.get("/healthz", tags=["status"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["status"], summary="Readiness: the store is open")
    async def readyz(request: Request) -> JSONResponse:
        ready = bool(getattr(request.app.state, "ready", False))
        return JSONResponse(
            {"status": "ready" if ready else "starting"}, status_code=200 if ready else 503
        )

    @app.get(
        "/metrics", tags=["status"], summary="perfintel's own metrics (Prometheus text format)"
    )
    async def metrics(request: Request) -> Response:
        body = request.app.state.metrics.registry.render()
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.post(
        "/api/v1/admin/flush",
        tags=["admin"],
        dependencies=[Depends(require("admin"))],
        summary="Flush the head to disk; with compact=true also compact, build rollups and apply retention",
    )
    async def flush(request: Request, compact: bool = True) -> dict[str, int]:
        st = request.app.state.store
        report = (
            await run_in_threadpool(st.flush, compact=compact) if hasattr(st, "flush") else None
        )
        stats = st.stats()
        return {
            "flushed": report.flushed if report else 0,
            "disk_bytes": stats.disk_bytes,
            "samples": stats.tiers.get("raw", 0) + stats.samples_in_head,
            "series": stats.series,
        }

    @app.get(
        "/api/v1/status/tsdb",
        tags=["status"],
        dependencies=[Depends(require("read"))],
        summary="Store statistics",
    )
    async def tsdb_status(request: Request) -> dict[str, object]:
        stats = await run_in_threadpool(request.app.state.store.stats)
        return {
            "status": "success",
            "data": {
                "series": stats.series,
                "headSamples": stats.samples_in_head,
                "diskBytes": stats.disk_bytes,
                "tiers": stats.tiers,
            },
        }

    return app


def _sink(app: FastAPI) -> Callable[[SampleBatch], Awaitable[None]]:
    async def sink(batch: SampleBatch) -> None:
        if len(batch):
            await run_in_threadpool(app.state.store.append, batch)
            app.state.metrics.ingested_samples.labels(protocol="collector").inc(len(batch))
            if app.state.anomaly is not None:
                app.state.anomaly.submit(batch)

    return sink


def _bind_store_metrics(app: FastAPI) -> None:
    m = app.state.metrics

    def stats_value(attr: str) -> Callable[[], float]:
        def read() -> float:
            st = app.state.store
            if attr == "bytes":
                return float(st.disk_bytes()) if hasattr(st, "disk_bytes") else 0.0
            if attr == "series":
                return float(len(st.index)) if hasattr(st, "index") else float(st.stats().series)
            return float(st.head.samples) if hasattr(st, "head") else 0.0

        return read

    m.store_bytes.set_function(stats_value("bytes"))
    m.series.set_function(stats_value("series"))
    m.write_queue_depth.set_function(stats_value("head"))


def _install_http_metrics(app: FastAPI) -> None:
    app.add_middleware(_HttpMetricsMiddleware)


class _HttpMetricsMiddleware:
    """Counts requests by route, method and status code.

    Plain ASGI rather than ``@app.middleware("http")``: Starlette's
    BaseHTTPMiddleware runs every request through an extra task and memory
    stream, a cost that showed in ingest profiles.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            scope["app"].state.metrics.http_requests.labels(
                route=path, method=scope["method"], code=str(status)
            ).inc()
