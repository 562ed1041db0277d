"""What each process role runs, for ``perfintel.api.app``: the bus publisher of an
ingest process, the shard worker of a worker process, and their readiness checks.

``all`` (the default) uses none of this: ingest feeds the in-process detector
directly, as before, at no extra cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Engine

from perfintel.alerting.state.database import default_url, open_database
from perfintel.alerting.state.leases import LeaseManager
from perfintel.bus.checkpoint import CheckpointStore
from perfintel.bus.output import RemoteWriteOutput
from perfintel.bus.publish import BusPublisher
from perfintel.bus.redis_streams import RedisBus
from perfintel.bus.worker import ShardWorker
from perfintel.config import Settings
from perfintel.performance.online import OnlineAnomalyDetection
from perfintel.storage.base import SampleWriter
from perfintel.telemetry import Counter, Gauge, Registry

#: the routers each role serves (``all`` serves every router)
INGEST, QUERY = "ingest", "query"
SERVES = {"all": {INGEST, QUERY}, "ingest": {INGEST}, "api": {QUERY}, "worker": set[str]()}


def process_id(settings: Settings) -> str:
    return f"{socket.gethostname()}:{settings.port}:{os.getpid()}:{settings.role}"


def open_bus(settings: Settings) -> RedisBus:
    b = settings.bus
    return RedisBus(b.redis_url, b.stream_prefix, b.shards)


def shared_engine(settings: Settings) -> Engine:
    a = settings.alerting
    return open_database(a.database_url or default_url(Path(settings.data_dir)))


@dataclass
class RoleRuntime:
    """The bus pieces of one process: what ``/readyz`` checks and what the lifespan stops."""

    role: str
    bus: RedisBus | None = None
    publisher: BusPublisher | None = None
    worker: ShardWorker | None = None
    engine: Engine | None = None
    output: RemoteWriteOutput | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def bind_metrics(self, registry: Registry, notifier: Callable[[], bool] | None) -> None:
        """The self-metrics an operator watches: how far behind the bus is, what a worker
        owns and scores, whether this process holds the notifier lease."""
        pub, worker = self.publisher, self.worker
        if pub is not None:
            Gauge(
                "perfintel_bus_behind",
                "Batches the slowest shard is behind (undelivered plus unacknowledged).",
                registry=registry,
            ).set_function(lambda: float(pub.behind))
            Counter(
                "perfintel_bus_published_batches_total",
                "Shard batches this ingest process published.",
                registry=registry,
            ).set_function(lambda: float(pub.published_batches))
            Counter(
                "perfintel_bus_trimmed_entries_total",
                "Stream entries trimmed once every group had acknowledged them.",
                registry=registry,
            ).set_function(lambda: float(pub.trimmed))
        if worker is not None:
            Gauge(
                "perfintel_bus_shards_owned",
                "Shards this worker holds the lease of.",
                registry=registry,
            ).set_function(lambda: float(len(worker.owned)))
            Counter(
                "perfintel_bus_samples_scored_total",
                "Samples this worker scored from the bus.",
                registry=registry,
            ).set_function(lambda: float(worker.samples_scored))
        if notifier is not None:
            Gauge(
                "perfintel_notifier_lease_held",
                "1 while this process holds the notifier lease (only it notifies).",
                registry=registry,
            ).set_function(lambda: float(notifier()))

    async def readiness(self) -> dict[str, str]:
        """What this role needs, each ``ok`` or why not."""
        out: dict[str, str] = {}
        if self.bus is not None:
            try:
                await self.bus.ping()
                out["redis"] = "ok"
            except Exception as exc:  # reported, not raised: this is the probe
                out["redis"] = str(exc)
        if self.engine is not None:
            try:
                await asyncio.to_thread(_ping_db, self.engine)
                out["database"] = "ok"
            except Exception as exc:
                out["database"] = type(exc).__name__
        return out

    async def stop(self) -> None:
        if self.output is not None:
            self.output.stop_retrying()
        if self.worker is not None:
            self.worker.stop()
        for t in self.tasks:
            if self.worker is None:
                t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self.bus is not None:
            await self.bus.close()
        if self.engine is not None:
            self.engine.dispose()
        if self.output is not None:
            self.output.close()


def _ping_db(engine: Engine) -> None:
    import sqlalchemy as sa

    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))


async def start_role(settings: Settings, store: SampleWriter) -> RoleRuntime:
    """Start the bus side of ``settings.role`` (nothing for ``all`` and ``api``)."""
    rt = RoleRuntime(settings.role)
    b = settings.bus
    if settings.role == "ingest":
        rt.bus = open_bus(settings)
        rt.publisher = BusPublisher(
            rt.bus,
            group=b.group,
            max_behind=b.max_behind,
            retry_after_s=b.retry_after,
            trim_interval_s=b.trim_interval,
        )
        rt.tasks.append(asyncio.create_task(rt.publisher.observe()))
    elif settings.role == "worker":
        rt.bus = open_bus(settings)
        rt.engine = await asyncio.to_thread(shared_engine, settings)
        leases = LeaseManager(rt.engine, process_id(settings), b.lease_ttl)

        out: SampleWriter = store
        if b.output_url:
            rt.output = RemoteWriteOutput(b.output_url)
            out = rt.output

        def detector() -> OnlineAnomalyDetection:
            a = settings.anomaly
            return OnlineAnomalyDetection(
                out,
                selectors=a.selectors,
                max_series=a.max_series,
                compact=a.compact_state != "off",  # auto: on in a worker (many series)
            )

        rt.worker = ShardWorker(
            rt.bus,
            leases,
            CheckpointStore(rt.engine),
            detector,
            group=b.group,
            consumer=process_id(settings),
            checkpoint_interval_s=b.checkpoint_interval,
        )
        rt.tasks.append(asyncio.create_task(rt.worker.run()))
    elif settings.role == "api":
        rt.engine = await asyncio.to_thread(shared_engine, settings)
    return rt
