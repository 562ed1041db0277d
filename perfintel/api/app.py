"""The perfintel service: one FastAPI application over one store.

``create_app`` wires the pieces: the store (the embedded DuckDB store by
default), the self-metrics registry, the host collector and scrapers (as
background tasks of the event loop), and the routers. Everything the handlers
need hangs off ``app.state``: ``settings``, ``store``, ``metrics``,
``metadata`` (metric families seen at ingest, a ``MetadataStore`` kept in
``data_dir/metadata.json``) and ``query_settings``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path

from fastapi import Depends, FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from perfintel import __version__
from perfintel.alerting.model import AlertSink
from perfintel.alerting.rules.service import start_service as start_rule_service
from perfintel.analysis.anomaly import kernel
from perfintel.api import (
    alertmanager,
    analyze,
    anomalies,
    backup,
    dashboard,
    errors,
    incidents,
    ingest,
    optimize,
    outliers,
    performance,
    prometheus,
    reload,
    rules,
    series,
    status,
    stream,
)
from perfintel.api.auth import AuthMiddleware, AuthPolicy, declare_public, require
from perfintel.api.reload import install_sighup, remove_sighup
from perfintel.api.responses import JSONResponse
from perfintel.api.workers import QueryThreads
from perfintel.background import stop_tasks
from perfintel.batch import SampleBatch
from perfintel.bus.roles import INGEST, QUERY, SERVES, RoleRuntime, process_id, start_role
from perfintel.collect.host import CollectResult, HostCollector
from perfintel.collect.schedule import run_every
from perfintel.collect.scrape import Scraper
from perfintel.config import Settings
from perfintel.live.hub import LiveHub, publish_detector_outputs
from perfintel.overview.state import OverviewState, Probes
from perfintel.performance.online import OnlineAnomalyDetection
from perfintel.query.passthrough import RemotePromQL
from perfintel.query.settings import QuerySettings
from perfintel.storage.base import Store
from perfintel.storage.duckdb import DuckDBStore, StoreOptions, Tier
from perfintel.storage.metadata import MetadataStore
from perfintel.storage.victoriametrics import RemoteStore, RemoteStoreOptions
from perfintel.telemetry import Registry, ServiceMetrics
from perfintel.web import PUBLIC_PATHS as WEB_PUBLIC_PATHS
from perfintel.web import install as install_web

log = logging.getLogger("perfintel")


def store_options(settings: Settings) -> StoreOptions:
    s = settings.storage
    ms = 1000
    return StoreOptions(
        block_ms=int(s.block * ms),
        raw_retention_ms=int(s.raw_retention * ms),
        max_future_ms=int(s.max_future * ms),
        max_new_series_per_append=settings.limits.max_new_series_per_request,
        max_new_series_per_minute=settings.limits.max_new_series_per_minute,
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


def remote_options(settings: Settings) -> RemoteStoreOptions:
    r = settings.storage.remote
    ns = tuple(r.namespace.split("=", 1)) if r.namespace else None
    return RemoteStoreOptions(
        write_url=r.write_url,
        read_url=r.read_url.rstrip("/"),
        flush_url=r.flush_url or None,
        timeout_s=r.timeout,
        max_samples_per_request=r.max_samples_per_request,
        namespace=ns,  # type: ignore[arg-type]  # two parts, by the setting's validator
    )


def open_store(settings: Settings) -> Store:
    """The configured store (``storage.backend``)."""
    if settings.storage.backend == "victoriametrics":
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)  # alerting state lives there
        return RemoteStore(remote_options(settings))
    return DuckDBStore(Path(settings.data_dir) / "samples", store_options(settings))


def open_passthrough(settings: Settings, store: Store) -> RemotePromQL | None:
    """The remote TSDB's PromQL engine, when samples live there (``storage.remote.promql``)."""
    if settings.storage.backend != "victoriametrics":
        return None
    opts = remote_options(settings)
    return RemotePromQL(
        opts.read_url,
        timeout_s=opts.timeout_s,
        namespace=opts.namespace,
        before_read=store.visible if isinstance(store, RemoteStore) else None,
    )


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
        app.state.promql_passthrough = open_passthrough(settings, app.state.store)
        app.state.promql_mode = settings.storage.remote.promql
        # metric metadata (/api/v1/metadata) outlives restarts: data_dir/metadata.json
        app.state.metadata = await run_in_threadpool(
            MetadataStore, Path(settings.data_dir) / "metadata.json"
        )
        kernel.set_enabled(settings.anomaly.kernel)
        # The detect API's kernel compiles on first use (about 3 s; cached on disk, so
        # later processes load it in well under a second): warm it in the background
        # so the first detect request does not pay for it. Readiness never waits. An ingest
        # process scores nothing itself: its kernel compiles only if a detect request comes.
        if settings.role == "ingest":
            app.state.kernel_state = "lazy" if kernel.enabled() else "off"
        else:
            _start_kernel_warm_up(app)
        # process roles (perfintel.bus.roles): ingest publishes to the bus, workers consume it
        # (an api process follows the bus for its live stream: perfintel.bus.tail)
        app.state.role = await start_role(settings, app.state.store, app.state.live)
        run_collectors = collectors and settings.role == "all"
        # online anomaly detection (perfintel.performance.online): fed by ingest and the collectors
        if settings.anomaly.enabled and settings.role == "all":
            anomaly = OnlineAnomalyDetection.from_settings(
                app.state.store, settings, app.state.metrics.registry
            )
            await run_in_threadpool(anomaly.start)
            app.state.anomaly = anomaly
        if settings.alerting.enabled and settings.role in ("all", "api"):
            # the notification pipeline (perfintel.alerting.pipeline); one notifier by lease
            from perfintel.alerting.pipeline import start_pipeline
            from perfintel.alerting.state.leases import LeaseManager
            from perfintel.performance.incident_rca import IncidentAnalyzer, pipeline_hooks

            leases = (
                LeaseManager(app.state.role.engine, process_id(settings), settings.bus.lease_ttl)
                if app.state.role.engine is not None
                else None
            )
            # incidents get their likely causes when they open (perfintel.performance.incident_rca)
            analyzer = IncidentAnalyzer(
                app.state.store, max_samples=app.state.query_settings.max_samples
            )
            app.state.notify = await run_in_threadpool(
                partial(start_pipeline, settings, clock, leases=leases, **pipeline_hooks(analyzer))
            )
            analyzer.dependencies = dict(app.state.notify.config.extensions.incidents.dependencies)
            # the rule engine (perfintel.alerting.rules) sends to the pipeline, on its database
            app.state.rules = await start_rule_service(
                settings.alerting,
                settings.data_dir,
                app.state.store,
                registry=app.state.metrics.registry,
                query=app.state.query_settings,
                sink=alert_sink if alert_sink is not None else app.state.notify,
                engine=app.state.notify.engine,
                # with a shared database each rule shard is evaluated by one process
                leases=leases,
            )
            install_sighup(app)  # reloads both (perfintel.api.reload)
        notify = app.state.notify
        app.state.role.bind_metrics(
            app.state.metrics.registry,
            (lambda: notify.lease is not None) if notify is not None and notify.leases else None,
        )
        tasks: list[asyncio.Task[None]] = []
        # the live stream and the overview (perfintel.live, perfintel.overview)
        hub: LiveHub = app.state.live
        hub.bind(asyncio.get_running_loop())
        if app.state.anomaly is not None:
            app.state.anomaly.on_outputs = lambda batch: publish_detector_outputs(hub, batch)
        if app.state.notify is not None:  # the alerts topic: the active alerts changed
            notify = app.state.notify
            notify.listeners.append(
                lambda summary: hub.publish_event(
                    "alerts", {"version": notify.summary_version, **summary.to_json()}
                )
            )
        app.state.overview = _overview(app, run_collectors)
        if QUERY in SERVES[settings.role]:  # it reads the store for the dashboard only
            tasks.append(asyncio.create_task(app.state.overview.run()))
        scraper: Scraper | None = None
        if run_collectors:
            sink = _sink(app)
            hc = settings.host_collector
            if hc.enabled:
                collector = HostCollector(proc_root=hc.proc_root, clock=clock)

                def collect() -> CollectResult:
                    result = collector.collect_with_errors()
                    app.state.metadata.add_missing(result.metadata())
                    return result

                async def collect_host() -> None:
                    result = await run_in_threadpool(collect)
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
                scraper = Scraper(
                    settings.scrape,
                    sink,
                    clock=clock,
                    metrics=app.state.metrics,
                    on_metadata=app.state.metadata.update,
                )
                tasks.append(asyncio.create_task(scraper.run()))
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            app.state.stopping.set()
            await stop_tasks(tasks)
            if scraper is not None:
                await scraper.aclose()
            if app.state.rules is not None:  # stops before the pipeline it sends to
                remove_sighup()
                await app.state.rules.stop()
                app.state.rules = None
            if app.state.anomaly is not None:  # drains its queue (2 s at most), saves its state
                await run_in_threadpool(app.state.anomaly.close, 2.0)
                app.state.anomaly = None
            if app.state.notify is not None:
                await run_in_threadpool(app.state.notify.close)
                app.state.notify = None
            await app.state.role.stop()  # a worker checkpoints and hands its shards back
            await run_in_threadpool(app.state.query_threads.close)
            await run_in_threadpool(app.state.metadata.close)
            if own_store:
                await run_in_threadpool(app.state.store.close)
            if app.state.promql_passthrough is not None:
                app.state.promql_passthrough.close()

    app = FastAPI(
        title="perfintel",
        version=__version__,
        description="Self-hosted performance intelligence: ingest, store, query, analyse and alert on metrics.",
        lifespan=lifespan,
        default_response_class=JSONResponse,
        docs_url=None,  # served by perfintel.web from the vendored Swagger UI (offline)
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.ready = False
    app.state.anomaly = None  # an OnlineAnomalyDetection while running, when enabled
    app.state.notify = None  # the notification Pipeline (an AlertSink) while running
    app.state.rules = None  # a RuleService while running, when alerting is enabled
    app.state.role = RoleRuntime(settings.role)  # its bus pieces, once the lifespan starts them
    app.state.requests_in_flight = 0  # kept by _HttpMetricsMiddleware (probes not counted)
    app.state.last_request_at = 0.0
    app.state.stopping = threading.Event()  # set when the lifespan ends
    app.state.metadata = MetadataStore()  # in memory until the lifespan opens the file
    app.state.metrics = ServiceMetrics(Registry())
    d = settings.dashboard
    app.state.live = LiveHub(max_clients=d.stream_max_clients, max_queue=d.stream_queue_messages)
    q = settings.query
    app.state.query_settings = QuerySettings(
        max_series=q.max_series,
        max_samples=q.max_samples,
        timeout_s=q.timeout,
        lookback_ms=int(q.lookback_delta * 1000),
        max_length=q.max_length,
        max_depth=q.max_depth,
    )
    app.state.query_threads = QueryThreads(q.max_concurrency)  # PromQL never on the loop
    errors.install(app)
    # every route needs a token unless declared public (perfintel.api.auth)
    app.state.auth = AuthPolicy(settings)
    app.add_middleware(AuthMiddleware, policy=app.state.auth)
    _install_http_metrics(app)
    serves = SERVES[settings.role]
    if INGEST in serves:
        app.include_router(ingest.router)
    if QUERY in serves:
        for r in (series, performance, anomalies, outliers, analyze, optimize, prometheus):
            app.include_router(r.router)
        for r in (alertmanager, incidents, rules, reload, backup, dashboard, stream, status):
            app.include_router(r.router)
        install_web(app)
    declare_public(app, *ingest.PUBLIC_PATHS, *incidents.PUBLIC_PATHS, *WEB_PUBLIC_PATHS)

    @app.get("/healthz", tags=["status"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["status"],
        summary="Readiness: the store is open and what the role needs answers (Redis, "
        "the shared database); anomaly_kernel: waiting, warming, ready, failed, off or lazy "
        "(an ingest process: compiled on the first detect request)",
    )
    async def readyz(request: Request) -> JSONResponse:
        state = request.app.state
        ready = bool(getattr(state, "ready", False))
        needs = await state.role.readiness() if ready else {}
        ready = ready and all(v == "ok" for v in needs.values())
        return JSONResponse(
            {
                "status": "ready" if ready else "starting",
                "role": settings.role,
                **needs,
                "anomaly_kernel": getattr(state, "kernel_state", "off"),
            },
            status_code=200 if ready else 503,
        )

    @app.get(
        "/metrics",
        tags=["status"],
        summary="perfintel's own metrics (Prometheus text format)",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
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
        report = await run_in_threadpool(st.flush, compact=compact)
        stats = await run_in_threadpool(st.stats)
        return {
            "flushed": report.flushed,
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


#: The kernel warm-up waits for this much quiet (no request in flight but probes) ...
WARM_UP_IDLE_S = 1.0
#: ... but starts at the latest this long after start-up.
WARM_UP_LATEST_S = 30.0


def _start_kernel_warm_up(app: FastAPI) -> None:
    """Compile (or load from numba's disk cache) the anomaly kernel on a daemon thread.

    The compiler holds the GIL much of the time (about 3 s of CPU the first time,
    0.5 s from the cache), which would slow the requests of the first seconds:
    the thread waits for a quiet second (``WARM_UP_IDLE_S``, probes not counted),
    at most ``WARM_UP_LATEST_S``. ``app.state.kernel_state`` says ``waiting``,
    ``warming``, ``ready``, ``failed`` or ``off`` (shown by ``/readyz``)."""
    if not kernel.enabled():
        app.state.kernel_state = "off"
        return
    app.state.kernel_state = "waiting"
    stopping: threading.Event = app.state.stopping
    app.state.last_request_at = time.monotonic()  # start-up counts: clients come right after

    def quiet() -> bool:
        st = app.state
        return (
            st.requests_in_flight == 0 and time.monotonic() - st.last_request_at >= WARM_UP_IDLE_S
        )

    def warm() -> None:
        latest = time.monotonic() + WARM_UP_LATEST_S
        while not quiet() and time.monotonic() < latest:
            if stopping.wait(0.1):
                return
        app.state.kernel_state = "warming"
        try:
            seconds = kernel.warm_up()
        except Exception:  # the detect API falls back to the vectorised path
            log.exception("compiling the anomaly kernel failed")
            app.state.kernel_state = "failed"
        else:
            log.info("anomaly kernel ready (%.1f s)", seconds)
            app.state.kernel_state = "ready"

    threading.Thread(target=warm, name="perfintel-kernel-warm-up", daemon=True).start()


def _sink(app: FastAPI) -> Callable[[SampleBatch], Awaitable[None]]:
    def store_and_publish(batch: SampleBatch) -> None:
        app.state.store.append(batch)
        app.state.live.publish_samples(batch)  # matching grows with the batch: not on the loop

    async def sink(batch: SampleBatch) -> None:
        if len(batch):
            await run_in_threadpool(store_and_publish, batch)
            app.state.metrics.ingested_samples.labels(protocol="collector").inc(len(batch))
            if app.state.anomaly is not None:
                app.state.anomaly.submit(batch)

    return sink


def _overview(app: FastAPI, collectors: bool) -> OverviewState:
    settings: Settings = app.state.settings
    m = app.state.metrics
    anomaly = app.state.anomaly
    hc = settings.host_collector
    probes = Probes(
        disk_bytes=m.store_bytes.get,
        series=m.series.get,
        head_samples=m.write_queue_depth.get,
        head_limit=4.0 * settings.storage.head_max_samples,
        detector_queue=anomaly.queue_depth if anomaly is not None else lambda: (0, 1),
        detector_dropped=anomaly.metrics.dropped_batches.get if anomaly is not None else float,
        expected_ingest_interval_s=hc.interval if hc.enabled and collectors else None,
        alerts=lambda: app.state.notify.summary if app.state.notify is not None else None,
    )
    return OverviewState(
        app.state.store, settings.dashboard, app.state.query_settings, app.state.live, probes
    )


def _bind_store_metrics(app: FastAPI) -> None:
    m = app.state.metrics

    def stats_value(attr: str) -> Callable[[], float]:
        def read() -> float:
            size = app.state.store.size()
            if attr == "bytes":
                return float(size.disk_bytes)
            if attr == "series":
                return float(size.series)
            return float(size.samples_in_head)

        return read

    m.store_bytes.set_function(stats_value("bytes"))
    wal = getattr(app.state.store, "wal", None)
    if wal is not None:  # the embedded store's write-ahead log
        st = wal.stats
        m.wal_damaged.labels(kind="torn_tail").set_function(lambda: float(st.torn_tails))
        m.wal_damaged.labels(kind="damaged").set_function(
            lambda: float(st.damaged_regions - st.torn_tails)
        )
        m.wal_damaged_bytes.set_function(lambda: float(st.damaged_bytes))
        m.wal_recovered_records.set_function(lambda: float(st.records_replayed))
        m.wal_write_errors.set_function(lambda: float(st.write_errors))
    m.series.set_function(stats_value("series"))
    m.write_queue_depth.set_function(stats_value("head"))


def _install_http_metrics(app: FastAPI) -> None:
    app.add_middleware(_HttpMetricsMiddleware)


_PROBES = frozenset(("/healthz", "/readyz"))


class _HttpMetricsMiddleware:
    """Counts requests by route, method and status code, and notes when the last
    request (probes aside) ended and how many are in flight (``app.state``).

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

        state = scope["app"].state
        probe = scope["path"] in _PROBES
        if not probe:
            state.requests_in_flight += 1
        try:
            await self.app(scope, receive, send_counted)
        finally:
            if not probe:
                state.requests_in_flight -= 1
                state.last_request_at = time.monotonic()
            path = getattr(scope.get("route"), "path", "unmatched")
            scope["app"].state.metrics.http_requests.labels(
                route=path, method=scope["method"], code=str(status)
            ).inc()
