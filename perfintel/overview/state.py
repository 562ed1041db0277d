"""The overview kept current in memory: what ``dashboard/realtime`` and ``health/comprehensive``
answer, refreshed by a background task instead of per request.

``OverviewState.run`` is the task. Every ``tick`` (1 s) it samples the cheap
figures (ingest rate, store size, queue depths) on the event loop; every
``refresh_interval`` it reads the health signals and the anomaly scores on a
worker thread; every ``anomaly_interval`` it explains the top anomalies, and
every ``capacity_interval`` it re-plans the disks and memory. After each step it
renders the answers once (JSON bytes, one per service too), so a request costs
a dictionary look-up: O(size of the answer).

Thread-safety: the snapshot is replaced whole (one reference assignment); the
workers never mutate a published snapshot.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

import orjson
from starlette.concurrency import run_in_threadpool

from perfintel.background import pause
from perfintel.config_sections import DashboardSettings
from perfintel.live.hub import LiveHub
from perfintel.model import LabelSet, Selector
from perfintel.overview import gather
from perfintel.overview.health import (
    Health,
    SelfSignals,
    Signals,
    overall,
    score_entity,
    score_self,
)
from perfintel.query.promql.engine import Engine
from perfintel.query.settings import QuerySettings
from perfintel.storage.base import QueryLimits, SampleReader

log = logging.getLogger(__name__)

#: Precomputed per-service answers beyond this many services are filtered per request instead.
MAX_PRECOMPUTED_SERVICES = 500
#: Capacity risks in one realtime answer: the soonest that run out within the horizon (the
#: Capacity page asks the capacity API for every resource).
MAX_RISKS = 20


class RecentErrors(logging.Handler):
    """The last ``size`` warnings and errors perfintel logged (for its own health)."""

    def __init__(self, size: int = 20) -> None:
        super().__init__(logging.WARNING)
        self.records: collections.deque[dict[str, Any]] = collections.deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not break logging
            message = str(record.msg)
        self.records.append(
            {
                "time": record.created,
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": message[:500],
            }
        )

    def since(self, t: float) -> int:
        return sum(1 for r in list(self.records) if r["time"] >= t)


class ActiveAlerts(Protocol):
    """What alerting says is active (``perfintel.alerting.summary.ActiveSummary``): replaced
    whole when it changes, so the overview notices a change by identity."""

    @property
    def by_entity(self) -> Mapping[tuple[str, str], Mapping[str, int]]: ...

    def to_json(self) -> dict[str, Any]: ...


@dataclass
class Probes:
    """Callbacks for perfintel's own figures (bound by the service; all cheap)."""

    disk_bytes: Callable[[], float] = lambda: 0.0
    series: Callable[[], float] = lambda: 0.0
    head_samples: Callable[[], float] = lambda: 0.0
    head_limit: float = 1.0
    detector_queue: Callable[[], tuple[int, int]] = lambda: (0, 1)
    detector_dropped: Callable[[], float] = lambda: 0.0
    expected_ingest_interval_s: float | None = None
    #: the active alerts and incidents; None while alerting is off
    alerts: Callable[[], ActiveAlerts | None] = lambda: None


@dataclass
class Snapshot:
    generated_ms: int = 0
    services: list[Health] = field(default_factory=list)
    hosts: list[Health] = field(default_factory=list)
    host_service: dict[str, str] = field(default_factory=dict)
    anomalies: list[dict[str, Any]] = field(default_factory=list)
    capacity: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    refreshed: dict[str, int | None] = field(default_factory=dict)
    #: the signals the scores came from, before the alerts (re-scored when the alerts change)
    signals: gather.EntitySignals | None = None
    #: the analysed series still in the detector's warm-up (read with the anomaly scores)
    warmup: gather.WarmUp = field(default_factory=gather.WarmUp)


def _scored(
    signals: gather.EntitySignals, alerts: ActiveAlerts | None
) -> tuple[list[Health], list[Health]]:
    """Scores per service and host: the signals plus the active alerts naming each."""
    services, hosts = dict(signals.services), dict(signals.hosts)
    if alerts is not None:
        per: dict[tuple[str, str], dict[str, int]] = {}
        for (service, instance), counts in alerts.by_entity.items():
            for key in (("service", service), ("host", gather.host_of(instance))):
                if key[1]:
                    acc = per.setdefault(key, {})
                    for b, k in counts.items():
                        acc[b] = acc.get(b, 0) + k
        for table, kind in ((services, "service"), (hosts, "host")):
            for name in {*table, *(n for k, n in per if k == kind)}:
                table[name] = replace(table.get(name, Signals()), alerts=per.get((kind, name), {}))
    return (
        sorted(
            (score_entity("service", k, v) for k, v in services.items()),
            key=lambda h: (h.score, h.name),
        ),
        sorted(
            (score_entity("host", k, v) for k, v in hosts.items()), key=lambda h: (h.score, h.name)
        ),
    )


def _alerts_json(alerts: ActiveAlerts | None, service: str | None) -> dict[str, Any] | None:
    """The active alerts and incidents of the realtime answer (of one service when given)."""
    if alerts is None:
        return None
    doc = alerts.to_json()
    if service is None:
        return doc
    by: dict[str, int] = {}
    for (svc, _), counts in alerts.by_entity.items():
        if svc == service:
            for b, k in counts.items():
                by[b] = by.get(b, 0) + k
    return {
        **doc,
        "firing": sum(by.values()),
        "by_severity": by,
        "top_alerts": [a for a in doc["top_alerts"] if a["labels"].get("service") == service],
        "top_incidents": [i for i in doc["top_incidents"] if service in i["services"]],
    }


def _health_json(h: Health, brief: bool = False) -> dict[str, Any]:
    """``brief``: only the reasons that cost points (the realtime answer; the comprehensive
    one lists every measured signal)."""
    doc = asdict(h)
    for r in doc["reasons"]:
        r["value"] = float(f"{r['value']:.4g}")
    if brief:
        doc["reasons"] = [r for r in doc["reasons"] if r["penalty"] > 0]
    return doc


class OverviewState:
    """Keeps the overview current; ``realtime`` and ``health`` answer from memory."""

    def __init__(
        self,
        store: SampleReader,
        settings: DashboardSettings,
        query_settings: QuerySettings,
        hub: LiveHub,
        probes: Probes,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings
        self.engine = Engine(store, query_settings)
        self.limits = QueryLimits(
            max_series=query_settings.max_series, max_samples=query_settings.max_samples
        )
        self.max_samples = query_settings.max_samples
        self.hub = hub
        self.probes = probes
        self.clock = clock
        self.errors = RecentErrors()
        self.snapshot = Snapshot()
        self._ingest_marks: collections.deque[tuple[float, int]] = collections.deque(maxlen=120)
        self._disk_marks: collections.deque[tuple[float, float]] = collections.deque(maxlen=720)
        self._dropped_marks: collections.deque[tuple[float, float]] = collections.deque(maxlen=300)
        self._ingest: dict[str, Any] = {}
        self._self: Health = score_self(SelfSignals())
        self._answers: dict[str | None, bytes] = {}
        self._health_answer = b""
        self._lock = threading.Lock()  # one refresh at a time (the task, or a test's refresh_now)
        self._alerts: ActiveAlerts | None = None
        self._last = {"signals": 0.0, "anomalies": 0.0, "capacity": 0.0}

    # -- answers (event loop; O(answer)) ---------------------------------------------
    def realtime(self, service: str | None = None, selector: Selector | None = None) -> bytes:
        if selector is None:
            cached = self._answers.get(service)
            if cached is not None:
                return cached
        return orjson.dumps(self._realtime_doc(service, selector))

    def health(self) -> bytes:
        return self._health_answer or self._render_health()

    def cached_answers(self) -> int:
        return len(self._answers)

    # -- the task -------------------------------------------------------------------
    async def run(self) -> None:
        logging.getLogger("perfintel").addHandler(self.errors)
        try:
            while True:
                now = self.clock()
                self.sample_figures(now)
                due = [
                    part
                    for part, every in (
                        ("signals", self.settings.refresh_interval),
                        ("anomalies", self.settings.anomaly_interval),
                        ("capacity", self.settings.capacity_interval),
                    )
                    if now - self._last[part] >= every
                ]
                if due:
                    try:
                        await run_in_threadpool(self.refresh, due)
                    except Exception:
                        log.exception("overview refresh failed")
                    if "signals" in due:
                        self.hub.publish_event("health", self.health_doc()["data"])
                alerts = self.probes.alerts()
                if alerts is not self._alerts:  # fired, resolved, acknowledged: re-score now
                    self._alerts = alerts
                    await run_in_threadpool(self.rescore)
                    self.hub.publish_event("health", self.health_doc()["data"])
                # one answer per service: grows with the services, so off the event loop
                await run_in_threadpool(self.render)
                await pause(self.settings.tick)
        finally:
            logging.getLogger("perfintel").removeHandler(self.errors)

    def sample_figures(self, now: float) -> None:
        """The cheap figures: ingest rate, store size and growth, queues (event loop)."""
        hub = self.hub
        self._ingest_marks.append((now, hub.published_samples))
        p = self.probes
        disk = float(p.disk_bytes())
        self._disk_marks.append((now, disk))
        dropped = float(p.detector_dropped())
        self._dropped_marks.append((now, dropped))
        t0, n0 = self._ingest_marks[0]
        rate = (hub.published_samples - n0) / (now - t0) if now > t0 else 0.0
        d0t, d0 = self._disk_marks[0]
        growth = (disk - d0) / (now - d0t) * 3600 if now - d0t >= 60 else None
        q, qcap = p.detector_queue()
        head = float(p.head_samples())
        since = now - hub.last_batch_at if hub.last_batch_at else None
        dropped_recent = dropped - self._dropped_marks[0][1]
        stats = hub.stats()
        self._ingest = {
            "samples_per_second": round(rate, 3),
            "samples_total": hub.published_samples,
            "batches_total": hub.published_batches,
            "seconds_since_last_batch": round(since, 3) if since is not None else None,
            "last_sample_lag_seconds": hub.last_sample_lag_s,
            "series": int(p.series()),
            "head_samples": int(head),
            "disk_bytes": int(disk),
            "disk_growth_bytes_per_hour": round(growth) if growth is not None else None,
            "detector_queue": q,
            "detector_queue_capacity": qcap,
            "detector_dropped_batches": dropped,
            "stream_clients": stats.clients,
            "stream_queued_messages": stats.queued_messages,
        }
        refreshed = self.snapshot.refreshed.get("signals")
        self._self = score_self(
            SelfSignals(
                seconds_since_ingest=since,
                expected_interval_s=p.expected_ingest_interval_s,
                head_fill=head / p.head_limit if p.head_limit else 0.0,
                anomaly_dropped_recent=dropped_recent,
                anomaly_queue_fill=q / qcap if qcap else 0.0,
                refresh_age_s=now - refreshed / 1000 if refreshed else 0.0,
                refresh_interval_s=self.settings.refresh_interval,
                recent_errors=self.errors.since(now - 900),
            )
        )

    def refresh(self, parts: list[str]) -> None:
        """Recompute the given parts (worker thread): signals, anomalies, capacity."""
        with self._lock:
            now = self.clock()
            now_ms = int(now * 1000)
            old = self.snapshot
            snap = Snapshot(
                generated_ms=now_ms,
                services=old.services,
                hosts=old.hosts,
                host_service=old.host_service,
                anomalies=old.anomalies,
                capacity=old.capacity,
                problems=[],
                timings=dict(old.timings),
                refreshed=dict(old.refreshed),
                signals=old.signals,
                warmup=old.warmup,
            )
            window_ms = int(self.settings.anomaly_window * 1000)
            start_ms = now_ms - window_ms
            candidates: list[gather.Candidate] = []
            if "capacity" in parts:
                t0 = time.perf_counter()
                snap.capacity, problems = gather.capacity_risks(
                    self.store,
                    now_ms,
                    horizon_days=self.settings.capacity_horizon / 86400,
                    max_samples=self.max_samples,
                )
                snap.problems.extend(problems)
                snap.timings["capacity_seconds"] = round(time.perf_counter() - t0, 4)
                snap.refreshed["capacity"] = now_ms
                self._last["capacity"] = now
            if "signals" in parts or "anomalies" in parts:
                t0 = time.perf_counter()
                signals = gather.gather_signals(self.engine, now_ms)
                warmup = gather.WarmUp()
                try:
                    candidates = gather.anomaly_shares(
                        self.store, start_ms, now_ms, self.limits, signals, warmup
                    )
                    snap.warmup = warmup
                except Exception as exc:
                    snap.problems.append(f"anomaly scores: {exc}")
                self._add_capacity_signals(signals, snap.capacity)
                snap.signals = signals
                snap.services, snap.hosts = _scored(signals, self._alerts)
                snap.host_service = signals.host_service
                snap.timings["signals_seconds"] = round(time.perf_counter() - t0, 4)
                snap.refreshed["signals"] = now_ms
                self._last["signals"] = now
            if "anomalies" in parts:
                t0 = time.perf_counter()
                snap.anomalies = gather.explain_anomalies(
                    self.store,
                    candidates,
                    start_ms,
                    now_ms,
                    top=self.settings.top_anomalies,
                    max_samples=self.max_samples,
                )
                snap.timings["anomalies_seconds"] = round(time.perf_counter() - t0, 4)
                snap.refreshed["anomalies"] = now_ms
                self._last["anomalies"] = now
            self.snapshot = snap
            self.render()

    def rescore(self) -> None:
        """The scores again from the last signals and the current alerts (worker thread)."""
        with self._lock:
            old = self.snapshot
            if old.signals is None:
                return
            services, hosts = _scored(old.signals, self._alerts)
            self.snapshot = replace(old, services=services, hosts=hosts)
            self.render()

    @staticmethod
    def _add_capacity_signals(signals: gather.EntitySignals, risks: list[dict[str, Any]]) -> None:
        for r in risks:
            if r.get("beyond_history"):  # too little history to mark a host down for it
                continue
            for table, key in ((signals.services, r["service"]), (signals.hosts, r["host"])):
                if not key:
                    continue
                sig = table.setdefault(key, Signals())
                for attr, value in (
                    ("exhaustion_days_p50", r["days_p50"]),
                    ("exhaustion_days_p10", r["days_p10"]),
                ):
                    if value is not None:
                        cur = getattr(sig, attr)
                        setattr(sig, attr, value if cur is None else min(cur, value))

    # -- rendering --------------------------------------------------------------------
    def render(self) -> None:
        """Pre-render the answers (one per service) from the current snapshot."""
        answers: dict[str | None, bytes] = {None: orjson.dumps(self._realtime_doc(None, None))}
        services = [h.name for h in self.snapshot.services][:MAX_PRECOMPUTED_SERVICES]
        for name in services:
            answers[name] = orjson.dumps(self._realtime_doc(name, None))
        self._answers = answers
        self._health_answer = self._render_health()

    def _render_health(self) -> bytes:
        return orjson.dumps(self.health_doc())

    def health_doc(self) -> dict[str, Any]:
        snap = self.snapshot
        entities = [*snap.services, *snap.hosts]
        return {
            "status": "success",
            "data": {
                "generated": snap.generated_ms or None,
                "overall": _health_json(overall(entities)),
                "services": [_health_json(h) for h in snap.services],
                "hosts": [_health_json(h) for h in snap.hosts],
                "perfintel": {
                    **_health_json(self._self),
                    "figures": self._ingest,
                    "evaluation": {
                        "refreshed": snap.refreshed,
                        "seconds": snap.timings,
                        "problems": snap.problems,
                    },
                    "last_errors": list(self.errors.records)[-10:],
                },
                "formula": "docs/health.md",
            },
        }

    def _realtime_doc(self, service: str | None, selector: Selector | None) -> dict[str, Any]:
        snap = self.snapshot

        def keep(item: dict[str, Any]) -> bool:
            if service is not None and item.get("service") != service:
                return False
            if selector is not None:
                labels: LabelSet = tuple(sorted(item["labels"].items()))
                return selector.matches(labels)
            return True

        services = [h for h in snap.services if service is None or h.name == service]
        hosts = [
            h for h in snap.hosts if service is None or snap.host_service.get(h.name) == service
        ]
        entities = [*services, *hosts]
        return {
            "status": "success",
            "data": {
                "generated": snap.generated_ms or None,
                "now": int(self.clock() * 1000),
                "filters": {"service": service, "selector": str(selector) if selector else None},
                "health": {
                    "overall": _health_json(overall(entities)),
                    "services": [_health_json(h, brief=True) for h in services],
                    "hosts": [_health_json(h, brief=True) for h in hosts],
                },
                "anomalies": [a for a in snap.anomalies if keep(a)],
                "capacity": [r for r in snap.capacity if r["days_p50"] is not None and keep(r)][
                    :MAX_RISKS
                ],
                "ingest": self._ingest,
                "alerts": _alerts_json(self._alerts, service),
                "perfintel": _health_json(self._self, brief=True),
                "refreshed": snap.refreshed,
                "window_seconds": self.settings.anomaly_window,
                # no score before a series' history spans the detector's warm-up: the page
                # says so while nothing is listed because of it
                "anomaly_warmup": snap.warmup.doc(service),
            },
        }
