"""What a metric's name says it measures: its role and whether it counts things held.

:func:`role_of` reads one of the roles a fault travels through inside one workload —
offered load (``traffic``), the resources it uses, how slow it is (``latency``), how often it
fails (``errors``) — from name fragments, in tiers read most specific first:

1. **failures** (``error``, ``timeout``, ``oom_``…) — except a NIC's errors and drops, which
   are the device's trouble: a resource;
2. **arrivals**: a counter of things arriving (connections accepted or opened, messages
   published, MySQL's ``Connections``; any ``*_total`` of connections or sessions) is load,
   although its subject (connections) is a resource;
3. **resource subjects** whose waits and durations are their own: garbage collection, pressure
   stall, the scheduler, a pool, connections, a queue, a lock. ``go_gc_duration_seconds``,
   ``node_pressure_cpu_waiting_seconds_total`` and ``db.client.connection.wait_time`` are the
   runtime's, the machine's and the pool's time, not how slow requests are;
4. **latency** (``duration``, ``latency``…; ``wait`` only with a time unit: a gauge of
   connections ``waiting`` is no time);
5. **resources**, then 6. **load** by their words.

Then :mod:`.conventions` reads timers (a timer of requests is latency, its ``_count`` load)
and failure labels (a count of requests the labels say failed is errors).

:func:`is_occupancy` says whether a series counts things in use (Little's law: arrivals ×
latency) by words (pool, connections, threads, a queue, a backlog); never a size in bytes or
memory pages, a time, or a counter (``_total``, arrivals): those count no things held.

The fragments are specific enough not to misfire on common names;
tests/analysis/test_rootcause_exporter_names.py holds real exporters' names and what each
should read.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from perfintel.model import LabelSet, metric_name

from .conventions import TIMER_SUFFIXES, failed, timer_parts

#: what a metric measures, by name fragments, in the order a fault usually travels inside one
#: workload: offered load, then the resources it uses, then how slow, then how often it fails
ROLE_WORDS = (
    (
        "traffic",
        (
            "request",
            "rps",
            "qps",
            "throughput",
            "traffic",
            "calls",
            "rpc",  # gRPC, OpenTelemetry rpc.*
            "messages_in",
            "messagesin",  # Kafka's MessagesInPerSec
            "responses",  # HAProxy, nginx VTS: responses by code
            "response_total",  # Linkerd
            "grpc_server_handled",
            "grpc_server_started",
            "grpc_client_handled",
            "msg_received",
            "msg_sent",
            "upstream_rq",  # Envoy
            "downstream_rq",
            "commands_processed",  # Redis
            "commands_total",  # Redis per command, MySQL's Com_*
            "queries",  # MySQL
            "xact_commit",  # PostgreSQL transactions
            "commits_total",
        ),
    ),
    (
        "resource",
        (
            "cpu",
            "memory",
            "mem_",
            "heap",
            "gc_",
            "pool",
            "connection",
            "conn_",
            "thread",
            "queue",
            "disk",
            "_io_",  # not "io_": istio_requests_total is no I/O
            "fd",
            "socket",
            "load",
            "swap",
            "paging",  # OpenTelemetry system.paging.*
            "saturation",
            "utili",
            "goroutine",
            "memstats",  # Go runtime memory
            "network",
            "netstat",  # node exporter's TCP counters
            "sockstat",  # node exporter's sockets
            "conntrack",  # the kernel's connection tracking table
            "filesystem",
            "container_fs_",
            "file_descriptor",  # OpenTelemetry process.open_file_descriptor.count
            "open_files",
            "files_open",  # Micrometer process.files.open
            "_lag",  # Kafka consumer lag, a replica's lag: a backlog
            "evict",  # a cache evicting: its memory is full
            "_lock",  # lock contention
            "stat_activity",  # PostgreSQL connections (pg_stat_activity_count)
            "backends",  # PostgreSQL connections (numbackends, OpenTelemetry's backends)
            "connected_clients",  # Redis
            "clients_connected",
            "current_sessions",  # HAProxy
            "upstream_cx",  # Envoy connections
            "downstream_cx",
            "pressure",  # Linux pressure stall information
            "sched_",  # Go's scheduler
            "schedstat",  # node exporter: tasks waiting for a CPU
        ),
    ),
    (
        "latency",
        (
            "latency",
            "duration",
            "response_time",
            "slow_",  # MySQL's slow queries
            "_p99",
            "_p95",
            "_p50",
            "rq_time",  # Envoy
            "handling_seconds",  # gRPC
        ),
    ),
    (
        "errors",
        (
            "error",
            "fail",
            "5xx",
            "exception",
            "timeout",
            "reject",
            "drop",
            "restart",
            "oom_",
            "deadlock",
            "abort",  # MySQL's aborted connects and clients
            "overflow",  # Envoy's circuit breakers
        ),
    ),
)
#: latency words that name a time only beside a time unit (a gauge of connections
#: ``waiting`` is no time; ``row_lock_waits`` counts waits)
TIMED_WORDS = ("wait",)
#: name tokens of a time
TIME_TOKENS = frozenset(("seconds", "milliseconds", "microseconds", "ms", "ns", "time"))
#: a device whose errors and drops are its own trouble (a resource, a cause of what follows),
#: not requests failing
DEVICE_WORDS = ("network",)
#: a counter of things arriving: load, whatever its subject
ARRIVAL_WORDS = (
    "accepted",  # nginx connections
    "handled",  # nginx connections, gRPC calls
    "opened",  # RabbitMQ, Istio connections
    "received",  # Redis connections, RabbitMQ messages
    "published",  # RabbitMQ
    "delivered",
    "status_connections",  # MySQL's Connections: connection attempts
    "activeopens",  # TCP connections opened (node exporter's netstat)
    "passiveopens",
)
#: subjects whose counter (a name ending in ``_total``) counts arrivals
CONNECTION_WORDS = ("connection", "conn_", "upstream_cx", "downstream_cx", "session")
#: subjects whose waits and durations are their own (a resource's), not a request's
RESOURCE_SUBJECTS = (
    "gc_",
    "pressure",
    "sched_",
    "schedstat",
    "pool",
    "connection",
    "conn_",
    "queue",
    "_lock",
)
OCCUPANCY_WORDS = (
    "pool",
    "connection",
    "conn_",
    "thread",
    "queue",
    "in_use",
    "inuse",  # node exporter's sockets in use
    "currestab",  # TCP connections established now
    "conntrack",
    "inflight",
    "in_flight",
    "active",
    "goroutine",
    "_lag",
    "current_sessions",
    "stat_activity",
    "backends",
    "connected_clients",
    "clients_connected",
)
#: name tokens of what no occupancy is: a size (bytes, memory pages), a time, a counter
NOT_HELD_TOKENS = TIME_TOKENS | {"bytes", "pages", "total"}
#: descriptors a process holds while a request or a connection is open (``little_order``):
#: occupancies too, one per connection in flight
HELD_WORDS = ("fd", "socket", "file_descriptor", "open_files", "files_open")
#: CPU throttling (cAdvisor's ``container_cpu_cfs_throttled_periods_total``): the CFS quota
#: met, a CPU's usage at its limit; it follows that usage (USE: saturation after utilisation)
#: and moves with the latency it adds, as an occupancy below its cap does
THROTTLE_WORDS = ("throttl",)
ROLE_ORDER = {name: k for k, (name, _) in enumerate(ROLE_WORDS)}
#: the roles of what users see and incidents are declared on: latency and errors (the RED
#: signals but the rate)
SYMPTOM_ROLES = (ROLE_ORDER["latency"], ROLE_ORDER["errors"])
#: the roles a timer of requests and a count the labels can call failures may have by name
_REQUEST_ROLES = ("traffic", "latency", "")
_WORDS = dict(ROLE_WORDS)


def _has(name: str, words: tuple[str, ...]) -> bool:
    return any(w in name for w in words)


def _arrivals(name: str) -> bool:
    """Whether the name counts things arriving (connections accepted, messages published)."""
    return _has(name, ARRIVAL_WORDS) or (name.endswith("_total") and _has(name, CONNECTION_WORDS))


def _role_by_words(name: str) -> str:
    # the most specific first (the tiers of the module's docstring)
    if _has(name, _WORDS["errors"]):
        return "resource" if _has(name, DEVICE_WORDS) else "errors"
    if _arrivals(name):
        return "traffic"
    if _has(name, RESOURCE_SUBJECTS):
        return "resource"
    timed = _has(name, TIMED_WORDS) and not TIME_TOKENS.isdisjoint(name.split("_"))
    if timed or _has(name, _WORDS["latency"]):
        return "latency"
    for role in ("resource", "traffic"):
        if _has(name, _WORDS[role]):
            return role
    return ""


def role_of(labels: LabelSet) -> str:
    """``traffic``, ``resource``, ``latency``, ``errors`` from the metric name and labels
    (``""``: unknown): a timer's series of requests is latency, its ``_count`` traffic; a
    count of requests the labels say failed is errors (:mod:`.conventions`)."""
    d = dict(labels)
    name = metric_name(labels).lower()
    timer = timer_parts(name, d)
    if timer is None and name.endswith(TIMER_SUFFIXES):
        # a histogram of a duration without a unit in its name (Envoy's upstream_rq_time)
        base = name[: name.rindex("_")]
        timer = (base, name[len(base) :]) if _role_by_words(base) == "latency" else None
    role = _role_by_words(name)
    if timer is not None and _role_by_words(timer[0]) in _REQUEST_ROLES:
        role = "traffic" if timer[1] == "_count" else "latency"
    if role in ("traffic", "") and failed(d):
        return "errors"
    return role


def role_codes(labels: Iterable[LabelSet]) -> np.ndarray:
    """The :data:`ROLE_ORDER` of each series' :func:`role_of` (-1: unknown), as the ranking
    reads them once per call and hands them to every rule that needs a role."""
    return np.array([ROLE_ORDER.get(role_of(ls), -1) for ls in labels], dtype=np.int64)


def is_occupancy(labels: LabelSet, held: bool = False) -> bool:
    """Whether the metric counts things in use (a pool, connections, threads, a queue; with
    ``held``, also open file descriptors and sockets): never a size, a time or a counter."""
    name = metric_name(labels).lower()
    if not NOT_HELD_TOKENS.isdisjoint(name.split("_")) or _arrivals(name):
        return False
    return _has(name, OCCUPANCY_WORDS + (HELD_WORDS if held else ()))


def is_throttling(labels: LabelSet) -> bool:
    """Whether the metric counts a CPU held back at its quota (:data:`THROTTLE_WORDS`)."""
    return _has(metric_name(labels).lower(), THROTTLE_WORDS)
