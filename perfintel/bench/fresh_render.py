"""What Prometheus would have scraped of a :mod:`perfintel.bench.fresh_system` state.

Series are named as real exporters name them: ingress-nginx or HAProxy in front; per pod the
application's request metrics (a Prometheus histogram with cumulative ``le`` buckets, a
summary with ``quantile`` series, or a latency gauge in milliseconds, by service), its runtime
(JVM/Micrometer, Go, Python process), its connection pool (HikariCP, Go ``database/sql``,
OTel ``db.client.connections``), cAdvisor and kube-state-metrics series; postgres_exporter,
redis_exporter and kafka_exporter for the backends (their counters without ``_total``, as
those exporters name them); node_exporter per node; a cron job's pods, each run a new pod
whose series exist only while it runs. Counters are cumulative (Poisson counts of requests),
gauges carry multiplicative AR(1) noise, heavy-tailed in some incidents. ``rng=None`` gives
the noise-free expectation with the same series in the same order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
from scipy.signal import lfilter
from scipy.special import ndtr, ndtri

from perfintel.bench.fresh_system import Service, State, System, shifted

BUCKET_SETS = (
    (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),  # client_golang defaults
    (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    (0.01, 0.05, 0.1, 0.5, 1.0, 5.0),
)
QUANTILES = (0.5, 0.95, 0.99)
Arr = np.ndarray
Labels = dict[str, str]
MetaOf = Callable[[str], "Meta"]
Offset = Callable[[float], float]


@dataclass(frozen=True)
class Meta:
    """What a series measures: service (-1: none), pod (-1), node (-1) and a tag."""

    svc: int
    pod: int
    node: int
    tag: str


@dataclass
class Look:
    """How this incident's data looks, fixed per seed (not the noise itself)."""

    buckets: tuple[float, ...]
    infra_service_label: bool  # cAdvisor / kube-state series relabelled with ``service``
    heavy: bool
    noise: float  # typical relative gauge noise
    pod_names: list[list[str]]
    namespace: str


@dataclass
class Rendered:
    labels: list[dict[str, str]]
    values: list[np.ndarray]
    counter: list[bool]
    meta: list[Meta]

    def add(self, labels: dict[str, str], values: np.ndarray, counter: bool, meta: Meta) -> None:
        self.labels.append(labels)
        self.values.append(values)
        self.counter.append(counter)
        self.meta.append(meta)

    def find(self, svc: int, pod: int, node: int, tag: str) -> int:
        for i, m in enumerate(self.meta):
            if m == Meta(svc, pod, node, tag):
                return i
        raise KeyError((svc, pod, node, tag))


def make_look(rng: np.random.Generator, system: System) -> Look:
    names = []
    for s in system.services:
        rs = "".join(rng.choice(list("bcdfghjklmnpqrstvwxz2456789"), size=10))
        if s.kind in ("db", "cache", "queue"):
            names.append([f"{s.name}-{p}" for p in range(s.pods)])
        else:
            names.append(
                [
                    f"{s.name}-{rs[:9]}-{''.join(rng.choice(list('bcdfghjklmnpqrstvwxz2456789'), size=5))}"
                    for _ in range(s.pods)
                ]
            )
    return Look(
        buckets=BUCKET_SETS[int(rng.integers(0, len(BUCKET_SETS)))],
        infra_service_label=bool(rng.random() < 0.75),
        heavy=bool(rng.random() < 0.4),
        noise=float(rng.uniform(0.01, 0.05)),
        pod_names=names,
        namespace=str(rng.choice(["prod", "shop", "default"])),
    )


class _Noise:
    """Measurement noise; every method is the identity when there is no generator."""

    def __init__(self, rng: np.random.Generator | None, look: Look, n: int, dt: float) -> None:
        self.rng, self.look, self.n, self.dt = rng, look, n, dt

    def ar(self, sd: float, heavy: bool = False) -> np.ndarray:
        if self.rng is None:
            return np.zeros(self.n)
        phi = float(self.rng.uniform(0.3, 0.9))
        if heavy and self.look.heavy:
            e = self.rng.standard_t(2.5, self.n) * 0.6
        else:
            e = self.rng.standard_normal(self.n)
        return lfilter([np.sqrt(1 - phi * phi)], [1.0, -phi], e) * sd

    def gauge(self, x: np.ndarray, sd: float | None = None, heavy: bool = False) -> np.ndarray:
        if self.rng is None:
            return x
        return x * np.exp(self.ar(self.look.noise if sd is None else sd, heavy))

    def count(self, rate: np.ndarray, start: float) -> np.ndarray:
        """A counter of events at ``rate`` per second (Poisson per scrape)."""
        mean = np.maximum(rate, 0.0) * self.dt
        inc = mean if self.rng is None else self.rng.poisson(mean).astype(float)
        return start + np.cumsum(inc)

    def seconds(self, rate: np.ndarray, start: float, sd: float = 0.02) -> np.ndarray:
        """A counter of seconds (CPU, GC, disk busy) accrued at ``rate`` per second."""
        inc = np.maximum(self.gauge(rate, sd), 0.0) * self.dt
        return start + np.cumsum(inc)


def render(
    system: System, st: State, look: Look, n: int, rng: np.random.Generator | None, layout_seed: int
) -> Rendered:
    """Every series of ``st`` over ``n`` steps; noise-free when ``rng`` is ``None``. Counter
    start values come from ``layout_seed`` so the noisy and noise-free renders line up."""
    out = Rendered([], [], [], [])
    dt = float(system.step_s)
    nz = _Noise(rng, look, n, dt)
    start = np.random.default_rng(layout_seed)
    ns = look.namespace

    def offset(rate: float) -> float:  # counters began when the process did, hours ago
        return float(np.floor(max(rate, 0.0) * start.uniform(3600, 20 * 86400)))

    for i, s in enumerate(system.services):
        for p in range(s.pods):
            pod = look.pod_names[i][p]
            node = system.node_names[s.nodes[p]]
            base = {"namespace": ns, "pod": pod}
            app = {**base, "service": s.name, "instance": f"10.1.{i}.{10 + p}:8080"}
            infra = {**base, "container": s.name, "node": node}
            if look.infra_service_label:
                infra["service"] = s.name
            m = partial(Meta, i, p, s.nodes[p])
            rps = st.rps[i][:n] / s.pods
            lat = st.latency[i][p, :n]
            err = st.error[i][p, :n]
            if s.kind == "lb":
                _lb(
                    out,
                    nz,
                    s.name,
                    {**base, "service": s.name},
                    rps,
                    lat,
                    err,
                    s.spread,
                    look,
                    m,
                    offset,
                )
                continue
            if s.kind in ("api", "worker"):
                _requests(out, nz, s, app, rps, lat, err, look, m, offset)
                _runtime(out, nz, s, app, st, i, p, n, m, offset)
            if s.kind == "batch":
                _batch(out, nz, system, s, base, st, i, n, look, start)
                continue
            cpu = st.cpu[i][p, :n]
            out.add({"__name__": "container_cpu_usage_seconds_total", **infra},
                    nz.seconds(cpu, offset(float(cpu.mean()))), True, m("cpu"))  # fmt: skip
            out.add({"__name__": "container_memory_working_set_bytes", **infra},
                    nz.gauge(st.memory[i][p, :n], 0.004), False, m("memory"))  # fmt: skip
            if s.kind in ("api", "worker"):
                thr = st.throttled[i][p, :n] * 10.0  # 10 CFS periods a second
                out.add({"__name__": "container_cpu_cfs_throttled_periods_total", **infra},
                        nz.seconds(thr, offset(0.05), 0.1), True, m("throttled"))  # fmt: skip
            out.add({"__name__": "kube_pod_container_status_restarts_total", **infra},
                    np.full(n, float(start.integers(0, 3))), True, m("restarts"))  # fmt: skip
        if s.kind == "db":
            _postgres(out, nz, s, i, st, n, ns, offset)
        if s.kind == "cache":
            _redis(out, nz, s, i, st, n, ns, offset)
        if s.kind == "queue":
            _kafka(out, nz, system, i, st, n, ns, offset)
    for k, node in enumerate(system.node_names):
        _node(out, nz, k, node, st, n, offset)
    return out


def _lb(
    out: Rendered, nz: _Noise, name: str, labels: Labels, rps: Arr, lat: Arr, err: Arr,
    spread: float, look: Look, m: MetaOf, offset: Offset,
) -> None:  # fmt: skip
    ok = rps * (1 - err)
    if name == "haproxy":
        lb = {**labels, "proxy": "backend_web"}
        out.add({"__name__": "haproxy_backend_http_responses_total", **lb, "code": "2xx"},
                nz.count(ok, offset(ok.mean())), True, m("ok"))  # fmt: skip
        out.add({"__name__": "haproxy_backend_http_responses_total", **lb, "code": "5xx"},
                nz.count(rps * err, offset(rps.mean() * err.mean())), True, m("errors"))  # fmt: skip
        mean = lat * np.exp(spread**2 / 2)
        out.add({"__name__": "haproxy_backend_response_time_average_seconds", **lb},
                nz.gauge(mean, 0.05, heavy=True), False, m("latency"))  # fmt: skip
        return
    lb = {**labels, "ingress": "web", "method": "GET"}
    out.add({"__name__": "nginx_ingress_controller_requests", **lb, "status": "2xx"},
            nz.count(ok, offset(ok.mean())), True, m("ok"))  # fmt: skip
    out.add({"__name__": "nginx_ingress_controller_requests", **lb, "status": "5xx"},
            nz.count(rps * err, offset(rps.mean() * err.mean())), True, m("errors"))  # fmt: skip
    _histogram(out, nz, "nginx_ingress_controller_request_duration_seconds", lb, rps, lat, spread,
               look.buckets, m, offset)  # fmt: skip


def _histogram(
    out: Rendered, nz: _Noise, name: str, labels: Labels, rps: Arr, lat: Arr, spread: float,
    buckets: tuple[float, ...], m: MetaOf, offset: Offset,
) -> None:  # fmt: skip
    """Cumulative ``le`` buckets, ``_sum`` and ``_count`` of lognormal request latencies."""
    cdf = ndtr(
        (np.log(np.asarray(buckets))[None, :] - np.log(np.maximum(lat, 1e-6))[:, None]) / spread
    )
    probs = np.diff(
        np.concatenate([np.zeros((len(lat), 1)), cdf, np.ones((len(lat), 1))], axis=1), axis=1
    )
    mean = np.maximum(rps, 0.0) * nz.dt
    if nz.rng is None:
        per_bin = mean[:, None] * probs
        total = mean
    else:
        total = nz.rng.poisson(mean).astype(np.int64)
        per_bin = nz.rng.multinomial(
            total, np.clip(probs, 0.0, 1.0) / probs.sum(axis=1, keepdims=True)
        )
        total = total.astype(float)
    cum_le = np.cumsum(per_bin, axis=1)
    start = offset(float(rps.mean()))
    starts = [np.floor(start * float(np.mean(cdf[:, j]))) for j in range(len(buckets))] + [start]
    for j, le in enumerate([*buckets, float("inf")]):
        series = starts[j] + np.cumsum(cum_le[:, j])
        out.add(
            {"__name__": f"{name}_bucket", **labels, "le": _le(le)},
            series,
            True,
            m(f"le={_le(le)}"),
        )
    obs_mean = lat * np.exp(spread**2 / 2)
    sums = total * obs_mean if nz.rng is None else total * obs_mean * np.exp(nz.ar(0.03, True))
    out.add({"__name__": f"{name}_sum", **labels}, start * float(obs_mean.mean()) + np.cumsum(sums),
            True, m("sum"))  # fmt: skip
    out.add({"__name__": f"{name}_count", **labels}, start + np.cumsum(total), True, m("count"))


def _le(x: float) -> str:
    return "+Inf" if np.isinf(x) else f"{x:g}"


def _requests(
    out: Rendered, nz: _Noise, s: Service, app: Labels, rps: Arr, lat: Arr, err: Arr,
    look: Look, m: MetaOf, offset: Offset,
) -> None:  # fmt: skip
    worker = s.kind == "worker"
    if s.style == "histogram":
        name = {
            "go": "http_server_request_duration_seconds",
            "jvm": "http_server_requests_seconds",
            "python": "flask_http_request_duration_seconds",
        }[s.runtime]
        if worker:
            name = "messaging_process_duration_seconds"
        _histogram(out, nz, name, app, rps, lat, s.spread, look.buckets, m, offset)
    elif s.style == "summary":
        name = (
            "http_server_requests_seconds"
            if s.runtime == "jvm"
            else "http_request_duration_seconds"
        )
        if worker:
            name = "messaging_process_duration_seconds"
        for q in QUANTILES:
            value = lat * np.exp(s.spread * float(ndtri(q)))
            sd = 0.03 + 0.1 * (q - 0.5)  # the tail quantiles are the noisier estimates
            out.add({"__name__": name, **app, "quantile": f"{q:g}"}, nz.gauge(value, sd, True),
                    False, m(f"q={q:g}"))  # fmt: skip
        obs_mean = lat * np.exp(s.spread**2 / 2)
        c = nz.count(rps, offset(rps.mean()))
        start = offset(rps.mean())
        out.add({"__name__": f"{name}_sum", **app}, start * float(obs_mean.mean()) + np.cumsum(
            np.diff(c, prepend=c[0]) * obs_mean), True, m("sum"))  # fmt: skip
        out.add({"__name__": f"{name}_count", **app}, c, True, m("count"))
    else:
        p95 = lat * np.exp(s.spread * 1.645) * 1000.0
        out.add({"__name__": "http_request_latency_ms", **app, "stat": "p95"},
                nz.gauge(p95, 0.08, True), False, m("p95"))  # fmt: skip
        if not worker:
            out.add({"__name__": "http_requests_total", **app, "code": "2xx"},
                    nz.count(rps * (1 - err), offset(rps.mean())), True, m("ok"))  # fmt: skip
    if worker:
        out.add({"__name__": "kafka_consumer_fetch_manager_records_consumed_total", **app},
                nz.count(rps, offset(rps.mean())), True, m("consumed"))  # fmt: skip
        out.add({"__name__": "messages_failed_total", **app},
                nz.count(rps * err, offset(rps.mean() * err.mean())), True, m("errors"))  # fmt: skip
    else:
        out.add({"__name__": "http_requests_total", **app, "code": "5xx"},
                nz.count(rps * err, offset(rps.mean() * err.mean())), True, m("errors"))  # fmt: skip


def _runtime(
    out: Rendered, nz: _Noise, s: Service, app: Labels, st: State, i: int, p: int, n: int,
    m: MetaOf, offset: Offset,
) -> None:  # fmt: skip
    gc = st.gc[i][p, :n]
    if s.runtime == "jvm":
        out.add({"__name__": "jvm_memory_used_bytes", **app, "area": "heap"},
                nz.gauge(st.heap[i][p, :n], 0.03), False, m("heap"))  # fmt: skip
        out.add({"__name__": "jvm_gc_pause_seconds_sum", **app, "action": "end of minor GC"},
                nz.seconds(gc, offset(gc.mean()), 0.15), True, m("gc"))  # fmt: skip
        out.add({"__name__": "jvm_threads_live_threads", **app},
                np.round(nz.gauge(40 + 0.2 * st.rps[i][:n] / s.pods, 0.01)), False, m("threads"))  # fmt: skip
    elif s.runtime == "go":
        out.add({"__name__": "go_gc_duration_seconds_sum", **app},
                nz.seconds(gc, offset(gc.mean()), 0.15), True, m("gc"))  # fmt: skip
        out.add({"__name__": "go_goroutines", **app},
                np.round(nz.gauge(st.goroutines[i][p, :n], 0.02)), False, m("goroutines"))  # fmt: skip
    else:
        out.add({"__name__": "process_open_fds", **app},
                np.round(nz.gauge(20 + st.pool_used[i][p, :n] + 0.01 * st.rps[i][:n], 0.01)),
                False, m("fds"))  # fmt: skip
    if not s.pool_max:
        return
    used, pending = st.pool_used[i][p, :n], st.pool_pending[i][p, :n]
    if s.runtime == "jvm":
        names = ("hikaricp_connections_active", "hikaricp_connections_pending")
        extra = {"pool": "HikariPool-1"}
    elif s.runtime == "go":
        names = ("go_sql_stats_connections_in_use", "go_sql_stats_connections_waiting")
        extra = {"db_name": "app"}
    else:
        names = ("db_client_connections_usage", "db_client_connections_pending_requests")
        extra = {"pool_name": "default", "state": "used"}
    out.add(
        {"__name__": names[0], **app, **extra}, np.round(nz.gauge(used, 0.08)), False, m("pool")
    )
    out.add({"__name__": names[1], **app, **extra},
            np.round(nz.gauge(pending, 0.1)), False, m("pending"))  # fmt: skip


def _batch(
    out: Rendered, nz: _Noise, system: System, s: Service, base: Labels, st: State, i: int,
    n: int, look: Look, start: np.random.Generator,
) -> None:  # fmt: skip
    """The cron job: one gauge always there, and per run a new pod's series (NaN between)."""
    running = system.batch_running(n)
    out.add({"__name__": "kube_cronjob_status_active", "namespace": base["namespace"],
             "cronjob": s.name, "service": s.name},
            running.astype(float), False, Meta(i, -1, -1, "active"))  # fmt: skip
    edges = np.flatnonzero(np.diff(np.concatenate([[0], running.astype(int), [0]])))
    for r, (a, b) in enumerate(zip(edges[::2], edges[1::2], strict=True)):
        pod = f"{s.name}-{29_000_000 + r * 7}-{''.join(start.choice(list('bcdfghjk2456'), size=5))}"
        labels = {"namespace": base["namespace"], "pod": pod, "container": "job",
                  "node": system.node_names[s.nodes[0]]}  # fmt: skip
        if look.infra_service_label:
            labels["service"] = s.name
        cpu = np.full(n, np.nan)
        cpu[a:b] = np.cumsum(np.maximum(nz.gauge(st.cpu[i][0, :n], 0.05)[a:b], 0.0) * nz.dt)
        mem = np.full(n, np.nan)
        mem[a:b] = nz.gauge(st.memory[i][0, :n], 0.01)[a:b] * np.linspace(0.5, 1.0, b - a)
        out.add({"__name__": "container_cpu_usage_seconds_total", **labels}, cpu, True,
                Meta(i, 100 + r, s.nodes[0], "cpu"))  # fmt: skip
        out.add({"__name__": "container_memory_working_set_bytes", **labels}, mem, False,
                Meta(i, 100 + r, s.nodes[0], "memory"))  # fmt: skip


def _postgres(
    out: Rendered, nz: _Noise, s: Service, i: int, st: State, n: int, ns: str, offset: Offset
) -> None:
    db = {
        "namespace": ns,
        "service": s.name,
        "instance": f"{s.name}:9187",
        "datname": s.name.split("-")[-1],
    }
    m = lambda tag: Meta(i, -1, s.nodes[0], tag)  # noqa: E731
    rps = st.rps[i][:n]
    out.add({"__name__": "pg_stat_database_xact_commit", **db},
            nz.count(rps * 0.4, offset(rps.mean() * 0.4)), True, m("commits"))  # fmt: skip
    out.add({"__name__": "pg_stat_database_blks_read", **db},
            nz.count(rps * 3.0, offset(rps.mean() * 3.0)), True, m("blks_read"))  # fmt: skip
    out.add({"__name__": "pg_stat_activity_count", **db, "state": "active"},
            np.round(nz.gauge(st.active[i][:n], 0.1)), False, m("active"))  # fmt: skip
    out.add({"__name__": "pg_locks_count", **db, "mode": "exclusivelock"},
            np.round(nz.gauge(st.locks[i][:n], 0.15)), False, m("locks"))  # fmt: skip
    out.add({"__name__": "pg_stat_activity_max_tx_duration", **db, "state": "active"},
            nz.gauge(st.latency[i][0, :n] * 20.0, 0.25, True), False, m("max_tx"))  # fmt: skip


def _redis(
    out: Rendered, nz: _Noise, s: Service, i: int, st: State, n: int, ns: str, offset: Offset
) -> None:
    r = {"namespace": ns, "service": s.name, "instance": f"{s.name}:9121"}
    m = lambda tag: Meta(i, -1, s.nodes[0], tag)  # noqa: E731
    rps, hit = st.rps[i][:n], st.hit[i][:n]
    out.add({"__name__": "redis_keyspace_hits_total", **r},
            nz.count(rps * hit, offset(rps.mean())), True, m("hits"))  # fmt: skip
    out.add({"__name__": "redis_keyspace_misses_total", **r},
            nz.count(rps * (1 - hit), offset(rps.mean() * 0.1)), True, m("misses"))  # fmt: skip
    out.add({"__name__": "redis_commands_processed_total", **r},
            nz.count(rps * 1.2, offset(rps.mean())), True, m("commands"))  # fmt: skip
    out.add({"__name__": "redis_connected_clients", **r},
            np.round(nz.gauge(20 + 0.0 * rps, 0.02)), False, m("clients"))  # fmt: skip
    out.add({"__name__": "redis_memory_used_bytes", **r},
            nz.gauge(s.memory * 4 * (1.0 + 0.02 * np.cumsum(1 - hit) / max(n, 1)), 0.002),
            False, m("memory"))  # fmt: skip


def _kafka(
    out: Rendered, nz: _Noise, system: System, i: int, st: State, n: int, ns: str, offset: Offset
) -> None:
    topic = "orders"
    k = {"namespace": ns, "service": "kafka", "instance": "kafka-exporter:9308", "topic": topic}
    m = lambda tag: Meta(i, -1, -1, tag)  # noqa: E731
    produced = st.produced[:n]
    for part in range(3):
        out.add({"__name__": "kafka_topic_partition_current_offset", **k, "partition": str(part)},
                nz.count(produced / 3, offset(produced.mean())), False, m(f"offset{part}"))  # fmt: skip
    for w, lag in st.lag.items():
        out.add({"__name__": "kafka_consumergroup_lag", **k, "consumergroup": system.services[w].name},
                np.round(nz.gauge(lag[:n], 0.05)), False, Meta(w, -1, -1, "lag"))  # fmt: skip


def _node(out: Rendered, nz: _Noise, k: int, node: str, st: State, n: int, offset: Offset) -> None:
    lab = {"instance": f"{node}:9100", "job": "node-exporter", "node": node}
    m = lambda tag: Meta(-1, -1, k, tag)  # noqa: E731
    cpu = st.node_cpu[k][:n] + 0.2
    disk = st.disk[k][:n]
    out.add({"__name__": "node_cpu_seconds_total", **lab, "mode": "user"},
            nz.seconds(cpu * 0.8, offset(cpu.mean())), True, m("cpu_user"))  # fmt: skip
    out.add({"__name__": "node_cpu_seconds_total", **lab, "mode": "iowait"},
            nz.seconds(0.02 + disk * 0.3, offset(0.05), 0.1), True, m("iowait"))  # fmt: skip
    out.add({"__name__": "node_load1", **lab},
            nz.gauge(shifted(cpu, 2) * 1.1 + disk, 0.08), False, m("load1"))  # fmt: skip
    out.add({"__name__": "node_disk_io_time_seconds_total", **lab, "device": "nvme0n1"},
            nz.seconds(disk, offset(disk.mean()), 0.05), True, m("disk"))  # fmt: skip
    out.add({"__name__": "node_memory_MemAvailable_bytes", **lab},
            nz.gauge(np.full(n, 8e9 + k * 1e9), 0.01), False, m("mem_avail"))  # fmt: skip
