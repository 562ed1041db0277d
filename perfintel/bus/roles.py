"""What each process role runs, for ``perfintel.api.app``: the bus publisher of an
ingest process, the shard worker of a worker process, the bus tail (live stream, peer
outliers) of an api process, and their readiness checks.

``all`` (the default) uses none of this: ingest feeds the in-process detector
directly, as before, at no extra cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Engine

from perfintel.alerting.state.database import default_url, open_database
from perfintel.alerting.state.leases import Lease, LeaseManager
from perfintel.background import STOP_TIMEOUT_S, pause, stop_tasks
from perfintel.batch import SampleBatch
from perfintel.bus.checkpoint import Checkpoint, CheckpointStore, unpacked
from perfintel.bus.output import RemoteWriteOutput
from perfintel.bus.publish import BusPublisher
from perfintel.bus.redis_streams import RedisBus
from perfintel.bus.tail import (
    WATCHED_TTL_S,
    BusTail,
    OutputsFanout,
    mark_watched,
    outputs_bus,
)
from perfintel.bus.watch import BusWatch
from perfintel.bus.worker import ShardWorker
from perfintel.config import Settings
from perfintel.errors import LeaseLostError, PerfintelError
from perfintel.live.hub import LiveHub, publish_detector_outputs
from perfintel.performance.online import OnlineAnomalyDetection, peer_group_specs
from perfintel.performance.outliers_online import OnlinePeerOutliers
from perfintel.performance.outputs import OUTPUT_NAMES
from perfintel.storage.base import SampleWriter
from perfintel.telemetry import Counter, Gauge, Registry

#: the routers each role serves (``all`` serves every router)
INGEST, QUERY = "ingest", "query"
SERVES = {"all": {INGEST, QUERY}, "ingest": {INGEST}, "api": {QUERY}, "worker": set[str]()}
#: how long a stopping worker may take to checkpoint and hand its shards back; beyond it the
#: process exits anyway and its successors replay from the last checkpoint (nothing acked is lost)
WORKER_STOP_TIMEOUT_S = 60.0

log = logging.getLogger(__name__)


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
    #: an api process's view of the bus (the live stream), and its peer outliers
    tail: BusTail | None = None
    #: an api process's view of the workers' detector outputs; a worker's side of it
    outputs_tail: BusTail | None = None
    fanout: OutputsFanout | None = None
    peers: LivePeerOutliers | None = None
    #: an ingest process's per-shard view of the backlog (for /metrics)
    watch: BusWatch | None = None
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
        watch = self.watch
        if watch is not None:
            lag = Gauge(
                "perfintel_bus_shard_lag",
                "Entries of a shard not yet delivered to the workers' group.",
                ["shard"],
                registry=registry,
            )
            pending = Gauge(
                "perfintel_bus_shard_pending",
                "Entries of a shard delivered to a worker and not yet acknowledged (a worker "
                "is on them, or died with them: claimed after bus.lease_ttl).",
                ["shard"],
                registry=registry,
            )
            age = Gauge(
                "perfintel_bus_shard_oldest_age_seconds",
                "Age of a shard's oldest entry not yet acknowledged (0: none): how far behind "
                "the shard's scores are, in time.",
                ["shard"],
                registry=registry,
            )
            for s in range(watch.bus.shards):
                lag.labels(str(s)).set_function(_at(watch.lag, s))
                pending.labels(str(s)).set_function(_at(watch.pending, s))
                age.labels(str(s)).set_function(_at(watch.oldest_age, s))
        if worker is not None:
            owned = Gauge(
                "perfintel_bus_shard_owned",
                "1 for each shard whose lease this worker holds (who holds which shard).",
                ["shard"],
                registry=registry,
            )
            applied = Counter(
                "perfintel_bus_shard_batches_applied_total",
                "Batches this worker scored per shard since it took the shard (per-shard "
                "throughput; starts again from 0 when a shard comes back).",
                ["shard"],
                registry=registry,
            )
            for s in range(worker.bus.shards):
                owned.labels(str(s)).set_function(_at(lambda s: float(s in worker.owned), s))
                applied.labels(str(s)).set_function(
                    _at(lambda s: float(worker.stats().get(s, (0, 0))[0]), s)
                )
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
        tail, peers = self.tail, self.peers
        if tail is not None:
            Counter(
                "perfintel_live_tail_samples_total",
                "Samples this api process read from the bus for its live stream.",
                registry=registry,
            ).set_function(lambda: float(tail.samples))
            Counter(
                "perfintel_live_tail_dropped_entries_total",
                "Bus entries this api process's live stream skipped (it fell behind) or never "
                "saw (trimmed first); the store has them, the live view does not.",
                registry=registry,
            ).set_function(lambda: float(tail.dropped))
        if peers is not None:
            Gauge(
                "perfintel_live_outliers_lease_held",
                "1 while this api process scores the online peer outliers (one at a time).",
                registry=registry,
            ).set_function(lambda: float(peers.lease is not None))
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
        for tail in (self.tail, self.outputs_tail):
            if tail is not None:
                tail.stop()
        if self.worker is not None:
            self.worker.stop()
        # a worker checkpoints and hands its shards back when told to stop: not cancelled,
        # and given longer
        await stop_tasks(
            self.tasks,
            cancel=self.worker is None,
            timeout_s=STOP_TIMEOUT_S if self.worker is None else WORKER_STOP_TIMEOUT_S,
        )
        if self.bus is not None:
            await self.bus.close()
        if self.peers is not None:
            with contextlib.suppress(PerfintelError):  # it expires instead
                await asyncio.to_thread(self.peers.release)
        if self.engine is not None:
            self.engine.dispose()
        if self.output is not None:
            self.output.close()
        if self.fanout is not None:
            self.fanout.close()
        if self.outputs_tail is not None:
            await self.outputs_tail.bus.close()


def _at(fn: Callable[[int], float], shard: int) -> Callable[[], float]:
    """``fn`` of one shard, for a labelled metric's ``set_function``."""
    return lambda: fn(shard)


def _ping_db(engine: Engine) -> None:
    import sqlalchemy as sa

    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))


class LivePeerOutliers:
    """Online peer outliers (``anomaly.outlier_groups``) in api processes, fed by their bus
    tails: peer groups span every shard, so no shard worker sees a whole group. One api
    process scores at a time (lease ``outliers``) and writes the scores to the shared
    store while its lease has a quarter of its TTL left. The holder saves the members'
    shares (``OnlinePeerOutliers.state``) under its lease every ``checkpoint_interval_s``
    and on release (checkpoint ``outliers``); a new holder restores them, so a member
    flagged before the change stays flagged instead of learning for most of a window
    again. Called from the tail's worker thread."""

    CHECKPOINT = "outliers"

    def __init__(
        self,
        settings: Settings,
        store: SampleWriter,
        leases: LeaseManager,
        on_outputs: Callable[[SampleBatch], None],
        checkpoints: CheckpointStore | None = None,
        checkpoint_interval_s: float = 10.0,
    ) -> None:
        self.settings = settings
        self.store = store
        self.leases = leases
        self.on_outputs = on_outputs
        self.checkpoints = checkpoints
        self.checkpoint_interval_s = checkpoint_interval_s
        self.lease: Lease | None = None
        self.scorer: OnlinePeerOutliers | None = None
        self.scored = 0
        self.restored = 0  # members whose shares the last takeover restored
        self._saved_at = 0.0

    def _new_scorer(self) -> OnlinePeerOutliers:
        a = self.settings.anomaly
        scorer = OnlinePeerOutliers(
            peer_group_specs(self.settings),
            excluded_names=OUTPUT_NAMES,
            max_members=a.max_series,
            tolerance=a.outlier_tolerance,
            pct=a.outlier_pct,
        )
        self.restored = 0
        if self.checkpoints is not None:
            try:
                cp = self.checkpoints.load(self.CHECKPOINT)
                if cp is not None:
                    self.restored = scorer.restore(unpacked(cp.state))
                    log.info(
                        "peer outliers: lease taken, %d members' shares restored", self.restored
                    )
            except PerfintelError as exc:  # the windows start afresh, as without a checkpoint
                log.warning("peer outliers: not restored: %s", exc)
        self._saved_at = time.monotonic()
        return scorer

    def _held(self) -> bool:
        now, lease, ttl = time.time(), self.lease, self.leases.ttl
        if lease is None or lease.expires_at - now < ttl / 2:
            new = self.leases.acquire("outliers") if lease is None else self.leases.renew(lease)
            if new is not None and lease is None:
                self.scorer = self._new_scorer()
            self.lease = new
        return self.lease is not None and self.lease.expires_at - time.time() > ttl / 4

    def process(self, batch: SampleBatch) -> None:
        try:
            if not self._held() or self.scorer is None:
                return
        except PerfintelError as exc:  # the database away: someone else scores meanwhile
            log.warning("peer outliers lease: %s", exc)
            return
        out = self.scorer.process(batch)
        if len(out):
            self.store.append(out)
            self.scored += len(out)
            self.on_outputs(out)
            # the shares change only when a step completes: save then, at most this often
            if time.monotonic() - self._saved_at >= self.checkpoint_interval_s:
                self.save()

    def save(self) -> None:
        """Store the scorer's state under the lease (fenced: a stale holder writes nothing)."""
        lease, scorer = self.lease, self.scorer
        self._saved_at = time.monotonic()
        if self.checkpoints is None or lease is None or scorer is None:
            return
        try:
            self.checkpoints.save(self.CHECKPOINT, lease, Checkpoint("0-0", [], scorer.state()))
        except LeaseLostError:
            self.lease, self.scorer = None, None
        except PerfintelError as exc:
            log.warning("peer outliers: checkpoint: %s", exc)

    def release(self) -> None:
        if self.lease is not None:
            self.save()
        if self.lease is not None:
            self.leases.release(self.lease)
            self.lease = None


async def start_role(
    settings: Settings, store: SampleWriter, live: LiveHub | None = None
) -> RoleRuntime:
    """Start the bus side of ``settings.role`` (nothing for ``all``). ``live``: where an api
    process's bus tail hands the samples (the live hub)."""
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
        rt.watch = BusWatch(rt.bus, b.group)
        rt.tasks.append(asyncio.create_task(rt.watch.run()))
    elif settings.role == "worker":
        rt.bus = open_bus(settings)
        rt.engine = await asyncio.to_thread(shared_engine, settings)
        leases = LeaseManager(rt.engine, process_id(settings), b.lease_ttl)

        out: SampleWriter = store
        if b.output_url:
            token = b.output_token.get_secret_value() if b.output_token else None
            rt.output = RemoteWriteOutput(b.output_url, token=token)
            out = rt.output
        if b.live:  # the api processes' live streams show the scores
            rt.fanout = OutputsFanout(out, b.redis_url, b.stream_prefix)
            out = rt.fanout

        def detector() -> OnlineAnomalyDetection:
            a = settings.anomaly
            return OnlineAnomalyDetection(
                out,
                selectors=a.selectors,
                max_series=a.max_series,
                compact=a.compact_state != "off",  # auto: on in a worker (many series)
                keep_labels=False,  # series by key: no Python object per series
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
        if b.live and live is not None:
            hub = live
            rt.bus = open_bus(settings)
            if settings.anomaly.enabled and settings.anomaly.outlier_groups:
                rt.peers = LivePeerOutliers(
                    settings,
                    store,
                    LeaseManager(rt.engine, process_id(settings), b.lease_ttl),
                    lambda out: publish_detector_outputs(hub, out),
                    CheckpointStore(rt.engine),
                    b.checkpoint_interval,
                )
            peers = rt.peers

            def on_batch(batch: SampleBatch) -> None:
                hub.publish_samples(batch)
                if peers is not None:
                    peers.process(batch)

            rt.tail = BusTail(
                rt.bus,
                on_batch,
                max_lag_s=b.live_max_lag,
                # nobody watching samples and no peer outliers: count, do not decode
                wants_samples=lambda: peers is not None or hub.wants_samples(),
                on_counts=hub.count_ingested,
            )
            rt.tasks.append(asyncio.create_task(rt.tail.run()))
            # the workers' detector outputs: scores on the charts, anomalies events
            rt.outputs_tail = BusTail(
                outputs_bus(b.redis_url, b.stream_prefix),
                lambda out: publish_detector_outputs(hub, out),
                max_lag_s=b.live_max_lag,
                wants_samples=hub.has_clients,
                on_counts=lambda batches, samples, newest: None,
            )
            rt.tasks.append(asyncio.create_task(rt.outputs_tail.run()))
            rt.tasks.append(asyncio.create_task(_say_watched(rt.bus, b.stream_prefix, hub)))
    return rt


async def _say_watched(bus: RedisBus, prefix: str, hub: LiveHub) -> None:
    """While this api process has live clients, tell the workers to stream their outputs."""
    while True:
        if hub.has_clients():
            try:
                await mark_watched(bus, prefix)
            except PerfintelError as exc:
                log.debug("live outputs: %s", exc)
        await pause(WATCHED_TTL_S / 4)
