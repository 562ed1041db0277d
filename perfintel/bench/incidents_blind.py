"""A third incident generator, written *blind*: from issue 13's description and general
knowledge of how Kubernetes microservice incidents look, without reading the ranking code or
the other two generators (only the :class:`Incident` dataclass and ``FAULT_KINDS``).

It is for reporting only: no constant of the ranking may be chosen on it.

What it simulates, per seed:

* a small shop on Kubernetes: an edge service (the one users see) and 3-9 more applications
  with 1-3 pods each, a PostgreSQL shared by several of them, often a Redis; the call graph is
  a chain, a fan-out, a random layered DAG or a DAG with one database under most services;
* traffic at the edge with a daily cycle (local time zone by seed), a quieter weekend and a
  slow random wander; each service's request rate is its callers' rates times calls per
  request, split over its pods a little unevenly;
* the physics of each pod: CPU demand from its request rate (throttled at its limit),
  queueing delay as CPU utilisation rises, a JVM-like memory sawtooth in some services,
  garbage-collection slow-down near the memory limit, open file descriptors from concurrent
  connections, a database connection pool obeying Little's law (waiting once it is full),
  error ratios that partly pass up to callers, and callee latency that reaches callers a few
  scrape intervals later (lag per edge);
* what an exporter would show: Prometheus counters (``http_requests_total``,
  ``http_errors_total``, ``container_cpu_usage_seconds_total``, ...) that are really
  monotone and restart from zero when a container restarts, gauges (memory working set,
  open fds, pool connections in use, ``pg_stat_activity_count``, node load), a p99 summary
  quantile smoothed over its own window, noise that is heavy-tailed in some series, and rare
  missed scrapes (NaN);
* Kubernetes labels (``namespace``, ``pod``, ``container``, ``node``, ``job``, ``instance``,
  ``service``). In about a quarter of the seeds the cAdvisor series keep the labels
  kube-prometheus gives them (``job="kubelet"``, ``service="kubelet"``: only ``pod`` and
  ``container`` tie them to the application), as in a real cluster without relabelling;
* one fault in one series of one pod (or of the database) whose effect on the edge becomes an
  alert: a level shift, a spike, a gradual leak or a saturation of latency, errors, CPU,
  memory, file descriptors, pool connections or database connections. The fault's size is the
  smallest of a geometric ladder that both shows in the root's own series and makes the edge
  clearly bad; the alert time is when the edge's p99 latency or error ratio has been bad for
  two minutes (a Prometheus ``for: 2m`` rule);
* ``affected``: the root and the latency and error series of the services the fault reaches
  (its own pod, its callers transitively) that the fault really moved, judged on the
  noise-free simulation against the same shop without the fault (p99 +10 %, errors +0.5 pt);
* 1-5 unrelated background anomalies outside the services the fault reaches (spikes, level
  shifts, container restarts, cron-job CPU bursts, node memory ramps), about half of them
  near the incident.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy.signal import lfilter

from perfintel.analysis.signals import SeriesInput
from perfintel.bench.incidents import FAULT_KINDS, Incident
from perfintel.model import label_set

#: scrape intervals in seconds and how often each is drawn
STEPS_S = (60, 30, 15)
STEP_WEIGHTS = (0.6, 0.25, 0.15)
#: the longest the alert may come after the fault's onset
HORIZON_S = 70 * 60
#: history kept after the alert (the user asks shortly after it fires)
AFTER_ALERT_S = 5 * 60
#: geometric ladder of fault sizes tried until the fault shows and the edge alerts
LADDER = 1.4
LADDER_STEPS = 9
#: share of seeds whose cAdvisor series keep kube-prometheus' own ``service="kubelet"``
RAW_CADVISOR_SHARE = 0.25
_EPOCH_2026_MS = 1_767_225_600_000
_DAY_MS = 86_400_000

APP_NAMES = (
    "checkout",
    "cart",
    "catalog",
    "payment",
    "shipping",
    "user",
    "auth",
    "recommendation",
    "search",
    "inventory",
    "pricing",
    "notification",
    "currency",
    "reviews",
)
SHAPES = ("chain", "fanout", "layered", "shared-db")
#: the series a fault can sit in, by fault kind and service kind
ROOT_METRICS: dict[tuple[str, str], tuple[str, ...]] = {
    ("level_shift", "app"): ("latency", "cpu", "errors", "pool"),
    ("spike", "app"): ("latency", "cpu", "errors"),
    ("leak", "app"): ("memory", "fds", "pool"),
    ("saturation", "app"): ("cpu", "pool"),
    ("level_shift", "postgres"): ("cpu",),
    ("spike", "postgres"): ("cpu",),
    ("leak", "postgres"): ("pg_conns",),
    ("saturation", "postgres"): ("pg_conns", "cpu"),
    ("level_shift", "redis"): ("cpu",),
    ("spike", "redis"): ("cpu",),
    ("leak", "redis"): ("memory",),
    ("saturation", "redis"): ("cpu",),
}


@dataclass
class BlindTruth:
    """What the :class:`Incident` does not carry: for tests and diagnostics."""

    #: service index owning each series (``-1``: a node's series)
    owner: list[int]
    #: series index -> steps at which that counter restarts from zero (a container restart)
    resets: dict[int, list[int]]
    #: which physical quantity the fault hit (``latency``, ``cpu``, ``pool``, ...)
    root_metric: str
    #: ``relabelled`` or ``raw-cadvisor``
    label_style: str
    #: graph shape
    shape: str
    #: size of the fault in its own unit after the ladder
    magnitude: float
    #: services the fault can reach (the root's and its transitive callers)
    reached: list[int] = field(default_factory=list)


@dataclass
class _Service:
    name: str
    kind: str  # app | postgres | redis
    pods: list[str]
    pod_ips: list[str]
    pod_nodes: list[int]
    share: np.ndarray  # traffic share per pod
    base_latency_s: float
    tail: float  # p99 / mean
    smooth: float  # EWMA weight of the p99 summary per step (1: none)
    cpu_base: float
    cpu_cost: float  # core-seconds per request
    cpu_limit: float
    mem_base: float
    mem_limit: float
    sawtooth: float  # JVM heap sawtooth amplitude (0: none)
    saw_period: int
    fds_base: float
    fds_limit: float
    err_base: float
    calls: dict[int, float] = field(default_factory=dict)
    lag: dict[int, int] = field(default_factory=dict)
    err_pass: dict[int, float] = field(default_factory=dict)
    pool_max: float = 0.0
    hold_s: float = 0.0
    max_connections: float = 0.0


@dataclass
class _Fault:
    kind: str
    service: int
    pod: int
    metric: str
    onset: int
    length: int  # spike duration / leak time scale / saturation ramp, in steps
    size: float


@dataclass
class _State:
    """Noise-free physical quantities per service and pod (steps along the last axis)."""

    rate: list[np.ndarray]  # per service: pods x steps, requests/s
    latency: list[np.ndarray]  # mean latency, s
    errors: list[np.ndarray]  # error ratio
    cpu: list[np.ndarray]  # cores used
    memory: list[np.ndarray]  # bytes
    fds: list[np.ndarray]
    pool: list[np.ndarray]  # connections in use (apps calling postgres)
    pg_conns: np.ndarray | None = None


def _hex(rng: np.random.Generator, n: int) -> str:
    return "".join("0123456789abcdef"[int(i)] for i in rng.integers(0, 16, n))


def _alnum(rng: np.random.Generator, n: int) -> str:
    chars = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(chars[int(i)] for i in rng.integers(0, len(chars), n))


def _shift(x: np.ndarray, lag: int) -> np.ndarray:
    if lag <= 0:
        return x
    out = np.empty_like(x)
    out[..., lag:] = x[..., :-lag]
    out[..., :lag] = x[..., :1]
    return out


def _ewma(x: np.ndarray, w: float) -> np.ndarray:
    """Exponentially weighted mean along the last axis, started at the first value."""
    if w >= 1.0:
        return x
    zi = (1 - w) * x[..., :1]
    out, _ = lfilter([w], [1.0, -(1 - w)], x, axis=-1, zi=zi)
    return np.asarray(out)


def _ar1(rng: np.random.Generator, n: int, phi: float, heavy: bool) -> np.ndarray:
    """Unit-scale noise: AR(1), Student-t(3) innovations (variance 1) when ``heavy``."""
    e = rng.standard_t(3, n) / np.sqrt(3.0) if heavy else rng.standard_normal(n)
    return np.asarray(lfilter([np.sqrt(1 - phi * phi)], [1.0, -phi], e))


# -- the shop -----------------------------------------------------------------------------


def _call_graph(rng: np.random.Generator, n_apps: int, shape: str, redis: bool) -> list[list[int]]:
    """Callees per service; apps are ``0..n_apps-1`` (0 the edge), then postgres, then redis.

    Edges go from lower to higher index, so the index order is a topological order."""
    pg = n_apps
    rd = n_apps + 1 if redis else -1
    callees: list[set[int]] = [set() for _ in range(n_apps + 1 + int(redis))]
    if shape == "chain":
        for i in range(n_apps - 1):
            callees[i].add(i + 1)
        callees[n_apps - 1].add(pg)
        if n_apps > 2 and rng.random() < 0.5:
            callees[int(rng.integers(1, n_apps - 1))].add(pg)
    elif shape == "fanout":
        for i in range(1, n_apps):
            callees[0].add(i)
            if rng.random() < 0.6:
                callees[i].add(pg)
    else:
        for i in range(1, n_apps):
            callees[int(rng.integers(0, i))].add(i)
            if i > 1 and rng.random() < 0.3:
                callees[int(rng.integers(0, i))].add(i)
        leaves = [i for i in range(n_apps) if not callees[i]]
        for i in leaves:
            callees[i].add(pg)
        if shape == "shared-db":
            for i in range(1, n_apps):
                if rng.random() < 0.75:
                    callees[i].add(pg)
    if not any(pg in c for c in callees):
        callees[n_apps - 1].add(pg)
    if redis:
        users = [i for i in range(n_apps) if rng.random() < 0.35] or [int(rng.integers(0, n_apps))]
        for i in users:
            callees[i].add(rd)
    return [sorted(c) for c in callees]


def _build_services(
    rng: np.random.Generator, callees: list[list[int]], n_apps: int, n_nodes: int
) -> list[_Service]:
    names = ["frontend"] + [
        str(x) for x in rng.choice(APP_NAMES, size=n_apps - 1, replace=False).tolist()
    ]
    names += ["postgres"] + (["redis"] if len(callees) > n_apps + 1 else [])
    out: list[_Service] = []
    for i, name in enumerate(names):
        kind = "app" if i < n_apps else name
        replicas = int(rng.integers(1, 4)) if kind == "app" else 1
        if kind == "app":
            h = _hex(rng, 10)
            pods = [f"{name}-{h}-{_alnum(rng, 5)}" for _ in range(replicas)]
        else:
            pods = [f"{name}-{k}" for k in range(replicas)]
        share = rng.dirichlet(np.full(replicas, 30.0))
        ips = [
            f"10.{int(rng.integers(0, 4))}.{int(rng.integers(0, 255))}.{int(rng.integers(2, 254))}"
            for _ in pods
        ]
        lat = {"app": (0.005, 0.06), "postgres": (0.001, 0.008), "redis": (0.0002, 0.0015)}[kind]
        mem_base = float(np.exp(rng.uniform(np.log(1.5e8), np.log(2.5e9))))
        svc = _Service(
            name=name,
            kind=kind,
            pods=pods,
            pod_ips=ips,
            pod_nodes=[int(rng.integers(0, n_nodes)) for _ in pods],
            share=share,
            base_latency_s=float(rng.uniform(*lat)),
            tail=float(rng.uniform(2.0, 5.0)),
            smooth=float(rng.choice([1.0, 1.0, 0.6, 0.35])),
            cpu_base=float(rng.uniform(0.01, 0.08)),
            cpu_cost=float(rng.uniform(0.0008, 0.006)),
            cpu_limit=0.0,
            mem_base=mem_base,
            mem_limit=mem_base * float(rng.uniform(1.6, 2.6)),
            sawtooth=float(rng.uniform(0.08, 0.25))
            if kind == "app" and rng.random() < 0.4
            else 0.0,
            saw_period=0,
            fds_base=float(rng.uniform(30, 250)),
            fds_limit=float(rng.choice([1024.0, 4096.0, 65536.0])),
            err_base=float(np.exp(rng.uniform(np.log(2e-4), np.log(8e-3)))),
        )
        for c in callees[i]:
            svc.calls[c] = float(rng.uniform(0.3, 2.5))
            svc.lag[c] = int(rng.integers(0, 3))  # in scrape intervals, fixed below
            svc.err_pass[c] = float(rng.uniform(0.3, 0.95))
        out.append(svc)
    return out


def _traffic(rng: np.random.Generator, ts_ms: np.ndarray, step_s: int) -> np.ndarray:
    """Edge requests per second: daily cycle in a local time zone, weekends, wander."""
    tz = float(rng.integers(-8, 10))
    hours = (ts_ms / 3_600_000.0 + tz) % 24
    peak, amp = float(rng.uniform(13, 21)), float(rng.uniform(0.25, 0.7))
    day = (
        1
        + amp * np.cos(2 * np.pi * (hours - peak) / 24)
        + 0.15 * amp * np.cos(4 * np.pi * (hours - peak - 3) / 24)
    )
    weekday = ((ts_ms + tz * 3_600_000) // _DAY_MS + 3) % 7  # 0 Monday
    weekend = np.where(weekday >= 5, float(rng.uniform(0.55, 0.9)), 1.0)
    wander = np.exp(0.08 * _ar1(rng, ts_ms.size, float(np.exp(-step_s / 1800)), False))
    return float(np.exp(rng.uniform(np.log(20), np.log(400)))) * day * weekend * wander


def _service_rates(
    services: list[_Service], callees: list[list[int]], edge: np.ndarray
) -> list[np.ndarray]:
    """Requests per second of each service: its callers' rates times calls per request."""
    total = [np.zeros_like(edge) for _ in services]
    total[0] = edge.copy()
    for i, cs in enumerate(callees):
        for c in cs:
            total[c] = total[c] + total[i] * services[i].calls[c]
    return total


def _size_limits(
    rng: np.random.Generator,
    services: list[_Service],
    callees: list[list[int]],
    rates: list[np.ndarray],
) -> None:
    """CPU limits, pool sizes and max_connections so the shop runs at 30-70 % at its peak."""
    pg = next(i for i, s in enumerate(services) if s.kind == "postgres")
    pg_peak = 0.0
    for i, svc in enumerate(services):
        peak = float(np.max(rates[i])) * float(np.max(svc.share))
        svc.cpu_limit = (svc.cpu_base + svc.cpu_cost * peak) / float(rng.uniform(0.35, 0.7))
        if pg in callees[i]:
            svc.hold_s = float(rng.uniform(0.01, 0.05))
            busy = peak * svc.calls[pg] * (svc.hold_s + services[pg].base_latency_s)
            svc.pool_max = float(max(4.0, np.ceil(busy / float(rng.uniform(0.3, 0.65)))))
            pg_peak += svc.pool_max * len(svc.pods) * 0.5
    services[pg].max_connections = float(np.ceil((pg_peak + 8) / float(rng.uniform(0.45, 0.7))))
    for svc in services:
        svc.saw_period = int(rng.integers(4, 30))  # minutes, scaled to steps by the caller


def _fault_shape(fault: _Fault, n: int) -> np.ndarray:
    k = np.arange(n, dtype=np.float64) - fault.onset
    if fault.kind == "level_shift":
        return np.clip((k + 1) / max(1, fault.length), 0.0, 1.0)
    if fault.kind == "spike":
        end = fault.length
        return np.where(
            (k >= 0) & (k < end), 1.0, np.where(k >= end, np.exp(-(k - end) / 2.0), 0.0)
        )
    if fault.kind == "leak":
        return np.maximum(k, 0.0) / fault.length
    return np.clip(k / max(1, fault.length), 0.0, 1.0)  # saturation: demand ramps past the cap


def _simulate(
    services: list[_Service],
    callees: list[list[int]],
    rates: list[np.ndarray],
    fault: _Fault,
    step_s: int,
) -> _State:
    """Noise-free pod physics under ``fault``: two passes so database refusals reach callers."""
    n = rates[0].size
    shape = _fault_shape(fault, n)
    pg = next(i for i, s in enumerate(services) if s.kind == "postgres")

    def hit(i: int, metric: str) -> np.ndarray:
        """The fault's term for ``metric`` in service ``i``'s pods (pods x steps)."""
        out = np.zeros((len(services[i].pods), n))
        if fault.service == i and fault.metric == metric:
            out[fault.pod] = fault.size * shape
        return out

    refused = np.zeros(n)
    state = _State([], [], [], [], [], [], [])
    for _ in range(2):
        lat: list[np.ndarray] = [np.zeros(0)] * len(services)
        err: list[np.ndarray] = [np.zeros(0)] * len(services)
        cpu: list[np.ndarray] = [np.zeros(0)] * len(services)
        mem: list[np.ndarray] = [np.zeros(0)] * len(services)
        fds: list[np.ndarray] = [np.zeros(0)] * len(services)
        pool: list[np.ndarray] = [np.zeros(0)] * len(services)
        svc_lat: list[np.ndarray] = [np.zeros(0)] * len(services)
        svc_err: list[np.ndarray] = [np.zeros(0)] * len(services)
        pool_demand = np.zeros(n)
        for i in reversed(range(len(services))):
            svc = services[i]
            r = svc.share[:, None] * rates[i][None, :]
            demand = svc.cpu_base + svc.cpu_cost * r + hit(i, "cpu") * svc.cpu_limit
            u = demand / svc.cpu_limit
            uc = np.minimum(u, 0.97)
            queueing = 1 + 0.5 * uc**4 / (1 - uc)
            throttled = np.maximum(u, 1.0) ** 3
            saw = np.zeros(n)
            if svc.sawtooth:
                period = max(2, svc.saw_period * 60 // step_s)
                saw = svc.sawtooth * ((np.arange(n) % period) / period)
            m = svc.mem_base * (1 + 0.04 * r / max(float(np.mean(r)), 1e-9) + saw)
            m = np.minimum(m + hit(i, "memory") * svc.mem_limit, 0.995 * svc.mem_limit)
            gc = 1 + 10 * np.clip((m / svc.mem_limit - 0.75) / 0.25, 0, 1) ** 2
            own = svc.base_latency_s * queueing * throttled * gc * (1 + hit(i, "latency"))
            down = np.zeros_like(own)
            e = svc.err_base + hit(i, "errors") + 0.3 * np.clip(u - 1.15, 0, None)
            e = e + 0.5 * np.clip((m / svc.mem_limit - 0.97) / 0.03, 0, 1)
            for c in callees[i]:
                lag = svc.lag[c]
                down = down + svc.calls[c] * _shift(svc_lat[c], lag)[None, :]
                e = e + svc.err_pass[c] * min(1.0, svc.calls[c]) * _shift(svc_err[c], lag)[None, :]
            wait = np.zeros_like(own)
            p = np.zeros_like(own)
            if pg in callees[i]:
                # a leak keeps connections checked out; other pool faults hold them longer
                leaked = hit(i, "pool") if fault.kind == "leak" else np.zeros_like(own)
                slower = hit(i, "pool") if fault.kind != "leak" else np.zeros_like(own)
                hold = (svc.hold_s + _shift(svc_lat[pg], svc.lag[pg])) * (1 + slower)
                want = r * svc.calls[pg] * hold + leaked * svc.pool_max
                p = np.minimum(want, svc.pool_max)
                full = want / svc.pool_max
                wait = hold * (3 * np.clip(full - 1, 0, None) + 0.3 * np.clip(full - 0.85, 0, 0.15))
                pool_demand = pool_demand + p.sum(axis=0)
                e = e + 0.7 * refused[None, :]
                wait = wait + 0.5 * refused[None, :]
            latency = own + down + wait
            f = svc.fds_base + 1.5 * r * latency + hit(i, "fds") * svc.fds_limit
            f = np.minimum(f, svc.fds_limit)
            e = e + 0.5 * np.clip((f / svc.fds_limit - 0.9) / 0.1, 0, 1)
            e = np.clip(e, 0.0, 1.0)
            lat[i], err[i], cpu[i], mem[i], fds[i], pool[i] = (
                latency,
                e,
                np.minimum(demand, svc.cpu_limit),
                m,
                f,
                p,
            )
            svc_lat[i] = (svc.share[:, None] * latency).sum(axis=0)
            svc_err[i] = (svc.share[:, None] * e).sum(axis=0)
        conns = pool_demand + 6 + hit(pg, "pg_conns")[0] * services[pg].max_connections
        refused = np.clip(1 - services[pg].max_connections / conns, 0.0, 1.0)
        rate_pods = [s.share[:, None] * rates[i][None, :] for i, s in enumerate(services)]
        state = _State(
            rate_pods,
            lat,
            err,
            cpu,
            mem,
            fds,
            pool,
            np.minimum(conns, services[pg].max_connections),
        )
    return state


# -- what the exporters show ----------------------------------------------------------------


@dataclass
class _Obs:
    """One exported series before assembly: gauge values, or a counter's per-step increases."""

    labels: dict[str, str]
    owner: int
    pod: tuple[int, int] | None
    node: int
    metric: str
    counter: bool
    data: np.ndarray
    offset: float = 0.0
    resets: list[int] = field(default_factory=list)


@dataclass
class _Node:
    name: str
    ip: str


def _nodes(rng: np.random.Generator, n: int) -> list[_Node]:
    style = int(rng.integers(0, 3))
    out = []
    for k in range(n):
        a, b = int(rng.integers(0, 64)), int(rng.integers(2, 254))
        ip = f"10.0.{a}.{b}"
        if style == 0:
            name = f"ip-10-0-{a}-{b}.ec2.internal"
        elif style == 1:
            name = f"gke-prod-default-pool-{_hex(rng, 8)}-{_alnum(rng, 4)}"
        else:
            name = f"worker-{k + 1}"
        out.append(_Node(name, ip))
    return out


def _observe(
    rng: np.random.Generator,
    services: list[_Service],
    callees: list[list[int]],
    state: _State,
    nodes: list[_Node],
    step_s: int,
    raw_cadvisor: bool,
    namespaces: tuple[str, str],
) -> list[_Obs]:
    n = state.rate[0].shape[1]
    out: list[_Obs] = []

    def noise(sd: float, tau_steps: float = 1.0) -> np.ndarray:
        phi = float(np.exp(-1.0 / max(tau_steps, 0.2)))
        return sd * _ar1(rng, n, phi, bool(rng.random() < 0.35))

    def counter(
        labels: dict[str, str], i: int, p: int, metric: str, inc: np.ndarray, node: int
    ) -> None:
        uptime = float(rng.uniform(3_600, 30 * 86_400)) / step_s
        offset = float(np.mean(inc)) * uptime
        out.append(_Obs(labels, i, (i, p), node, metric, True, np.maximum(inc, 0.0), offset))

    def gauge(
        labels: dict[str, str], i: int, p: int, metric: str, v: np.ndarray, node: int
    ) -> None:
        out.append(_Obs(labels, i, (i, p), node, metric, False, v))

    for i, svc in enumerate(services):
        ns = namespaces[0] if svc.kind == "app" else namespaces[1]
        for p, pod in enumerate(svc.pods):
            node = svc.pod_nodes[p]
            base = {"namespace": ns, "pod": pod, "container": svc.name}
            app = {
                **base,
                "instance": f"{svc.pod_ips[p]}:8080",
                "job": svc.name,
                "service": svc.name,
            }
            cad = {
                **base,
                "node": nodes[node].name,
                "instance": f"{nodes[node].ip}:10250",
                "job": "kubelet",
                "metrics_path": "/metrics/cadvisor",
                "service": "kubelet" if raw_cadvisor else svc.name,
            }
            rate = state.rate[i][p]
            cpu_inc = state.cpu[i][p] * step_s * (1 + noise(0.04, 2.0))
            counter(
                {**cad, "__name__": "container_cpu_usage_seconds_total"}, i, p, "cpu", cpu_inc, node
            )
            mem = state.memory[i][p] * (1 + noise(0.008, 3.0))
            gauge(
                {**cad, "__name__": "container_memory_working_set_bytes"}, i, p, "memory", mem, node
            )
            if svc.kind == "app":
                sd = float(rng.uniform(0.03, 0.12))
                p99 = _ewma(state.latency[i][p] * svc.tail, svc.smooth) * np.exp(noise(sd, 1.5))
                gauge(
                    {**app, "__name__": "http_request_duration_seconds", "quantile": "0.99"},
                    i,
                    p,
                    "latency",
                    p99,
                    node,
                )
                req = rng.poisson(np.maximum(rate, 0.0) * step_s).astype(np.float64)
                counter({**app, "__name__": "http_requests_total"}, i, p, "requests", req, node)
                errs = rng.binomial(req.astype(np.int64), np.clip(state.errors[i][p], 0, 1))
                counter(
                    {**app, "__name__": "http_errors_total"},
                    i,
                    p,
                    "errors",
                    errs.astype(np.float64),
                    node,
                )
                fds = np.round(state.fds[i][p] + noise(0.3 * float(np.sqrt(svc.fds_base)), 2.0))
                gauge(
                    {**app, "__name__": "process_open_fds"}, i, p, "fds", np.maximum(fds, 3.0), node
                )
                if svc.pool_max:
                    used = state.pool[i][p] + noise(0.4 * float(np.sqrt(svc.pool_max)), 1.0)
                    gauge(
                        {**app, "__name__": "db_client_connections_in_use", "pool": "postgres"},
                        i,
                        p,
                        "pool",
                        np.clip(np.round(used), 0, svc.pool_max),
                        node,
                    )
            elif svc.kind == "postgres":
                exp = {
                    **base,
                    "instance": f"{svc.pod_ips[p]}:9187",
                    "job": "postgres-exporter",
                    "service": "postgres",
                }
                assert state.pg_conns is not None
                conns = np.round(state.pg_conns + noise(1.2, 1.0))
                gauge(
                    {
                        **exp,
                        "__name__": "pg_stat_activity_count",
                        "datname": "shop",
                        "state": "active",
                    },
                    i,
                    p,
                    "pg_conns",
                    np.clip(conns, 0, svc.max_connections),
                    node,
                )
                tx = rng.poisson(np.maximum(rate, 0.0) * step_s).astype(np.float64)
                counter(
                    {**exp, "__name__": "pg_stat_database_xact_commit_total", "datname": "shop"},
                    i,
                    p,
                    "commits",
                    tx,
                    node,
                )
            else:
                exp = {
                    **base,
                    "instance": f"{svc.pod_ips[p]}:9121",
                    "job": "redis-exporter",
                    "service": "redis",
                }
                users = sum(len(services[j].pods) for j, cs in enumerate(callees) if i in cs)
                clients = np.round(users * 8 + 2 + noise(1.0, 5.0))
                gauge(
                    {**exp, "__name__": "redis_connected_clients"}, i, p, "clients", clients, node
                )
                cmds = rng.poisson(np.maximum(rate, 0.0) * step_s).astype(np.float64)
                counter(
                    {**exp, "__name__": "redis_commands_processed_total"},
                    i,
                    p,
                    "commands",
                    cmds,
                    node,
                )
    for k, nd in enumerate(nodes):
        lab = {
            "namespace": "monitoring",
            "pod": f"node-exporter-{_alnum(rng, 5)}",
            "container": "node-exporter",
            "instance": f"{nd.ip}:9100",
            "job": "node-exporter",
            "service": "node-exporter",
            "node": nd.name,
        }
        cores = sum(
            (
                state.cpu[i][p]
                for i, s in enumerate(services)
                for p in range(len(s.pods))
                if s.pod_nodes[p] == k
            ),
            start=np.zeros(n),
        )
        w = 1 - float(np.exp(-step_s / 60.0))
        load = _ewma(cores + float(rng.uniform(0.2, 0.8)), w) * (1 + noise(0.05, 2.0))
        out.append(_Obs({**lab, "__name__": "node_load1"}, -1, None, k, "load", False, load))
        used = sum(
            (
                state.memory[i][p]
                for i, s in enumerate(services)
                for p in range(len(s.pods))
                if s.pod_nodes[p] == k
            ),
            start=np.zeros(n),
        )
        total = 16 * 2**30 if float(np.max(used)) < 12 * 2**30 else 64 * 2**30
        avail = total - used - 1.5 * 2**30 * (1 + noise(0.02, 10.0))
        out.append(
            _Obs(
                {**lab, "__name__": "node_memory_MemAvailable_bytes"},
                -1,
                None,
                k,
                "avail",
                False,
                avail,
            )
        )
    return out


# -- the alert, the background, the assembly -------------------------------------------------


def _alert_within_s(fault: _Fault, step_s: int) -> int:
    """How long after the onset the edge may first turn bad for the fault to count: an abrupt
    fault that only bites an hour later (at the daily peak) is a different incident."""
    if fault.kind == "leak":
        return HORIZON_S
    if fault.kind == "spike":
        return fault.length * step_s
    return 15 * 60 + (fault.length * step_s if fault.kind == "saturation" else 0)


def _robust(x: np.ndarray) -> tuple[float, float]:
    med = float(np.nanmedian(x))
    return med, 1.4826 * float(np.nanmedian(np.abs(x - med))) + 1e-12


def _alert_step(
    obs: list[_Obs], services: list[_Service], onset: int, step_s: int, within_s: int
) -> int | None:
    """First step at which the edge's p99 or error ratio has been clearly bad for two minutes,
    at most ``within_s`` after the onset."""
    edge = [o for o in obs if o.owner == 0]
    p99 = sum(services[0].share[o.pod[1]] * o.data for o in edge if o.metric == "latency" and o.pod)
    req = sum(o.data for o in edge if o.metric == "requests")
    err = sum(o.data for o in edge if o.metric == "errors")
    ratio = err / np.maximum(req, 1.0)
    base = slice(max(0, onset - 3_600 // step_s), onset)
    bad = np.zeros(ratio.size, dtype=bool)
    # p99 must rise by 30 % and the error ratio by two points, beyond six robust sigmas
    for x, rel, absolute in ((np.asarray(p99), 0.3, 0.0), (ratio, 0.0, 0.02)):
        med, sd = _robust(x[base])
        bad |= x > med + max(6 * sd, rel * med, absolute)
    need = max(2, 120 // step_s)
    run = 0
    for k in range(onset, min(bad.size, onset + within_s // step_s + 1)):
        run = run + 1 if bad[k] else 0
        if run >= need:
            return k
    return None


def _root_visible(x: np.ndarray, onset: int, alert: int, step_s: int) -> bool:
    """The root's own series left its baseline: the last few steps up to the alert sit at least
    four robust standard deviations away from the three hours before the onset."""
    base = x[max(0, onset - 10_800 // step_s) : onset]
    med, sd = _robust(base)
    tail = x[max(onset, alert - 4) : alert + 1]
    return bool(abs(float(np.nanmedian(tail)) - med) >= 4 * sd)


def _background(
    rng: np.random.Generator,
    obs: list[_Obs],
    reached: set[int],
    root_node: int,
    onset: int,
    alert: int,
    step_s: int,
) -> list[int]:
    """1-5 unrelated anomalies in series outside the reached services; returns their indices."""
    n = obs[0].data.size
    eligible = [
        k
        for k, o in enumerate(obs)
        if (o.owner >= 0 and o.owner not in reached) or (o.owner < 0 and o.node != root_node)
    ]
    pods = sorted({o.pod for o in obs if o.pod and o.owner not in reached and o.owner >= 0})
    minute = max(1, 60 // step_s)
    touched: set[int] = set()
    for _ in range(int(rng.integers(1, 6))):
        if not eligible:
            break
        if rng.random() < 0.5:
            at = int(rng.integers(max(1, onset - 15 * minute), min(n - 1, alert + 2 * minute)))
        else:
            at = int(rng.integers(max(1, alert - 210 * minute), max(2, alert - 20 * minute)))
        what = str(rng.choice(["spike", "shift", "restart", "cron", "ramp"]))
        if what == "restart" and pods:
            pod = pods[int(rng.integers(0, len(pods)))]
            for k, o in enumerate(obs):
                if o.pod != pod:
                    continue
                warm = np.clip((np.arange(n) - at) / (10 * minute), 0, 1)
                if o.counter:
                    o.resets.append(at)
                    if o.metric == "cpu":
                        o.data[at : at + 3 * minute] *= 2.5  # JIT warm-up
                    touched.add(k)
                elif o.metric in ("memory", "fds"):
                    o.data = np.where(np.arange(n) >= at, o.data * (0.5 + 0.5 * warm), o.data)
                    touched.add(k)
            continue
        k = eligible[int(rng.integers(0, len(eligible)))]
        o = obs[k]
        if what == "cron":
            cpu = [j for j in eligible if obs[j].metric in ("cpu", "load")]
            if not cpu:
                continue
            k = cpu[int(rng.integers(0, len(cpu)))]
            o = obs[k]
            end = at + int(rng.integers(5, 21)) * minute
            o.data[at:end] *= float(rng.uniform(1.8, 4.0))
        elif what == "ramp":
            mem = [j for j in eligible if obs[j].metric in ("avail", "memory")]
            if not mem:
                continue
            k = mem[int(rng.integers(0, len(mem)))]
            o = obs[k]
            length = int(rng.integers(20, 61)) * minute
            frac = float(rng.uniform(0.1, 0.3)) * np.clip((np.arange(n) - at) / length, 0, 1)
            o.data = o.data * (1 - frac) if o.metric == "avail" else o.data * (1 + frac)
        elif what == "spike":
            end = at + int(rng.integers(1, 4)) * max(1, minute // 2)
            o.data[at:end] *= float(rng.uniform(2.0, 6.0))
        else:
            factor = float(rng.uniform(1.25, 2.5))
            o.data[at:] *= factor if rng.random() < 0.7 else 1 / factor
        touched.add(k)
    return sorted(touched)


def _assemble(o: _Obs, n: int) -> np.ndarray:
    """A counter's exported values: offset plus running sum, from zero after each restart."""
    if not o.counter:
        return o.data[:n].copy()
    inc = o.data[:n]
    values = o.offset + np.cumsum(inc)
    for at in sorted(o.resets):
        if at < n:
            values[at:] = np.cumsum(inc[at:])
    return np.floor(values) if o.metric != "cpu" else values


def _draw_fault(
    rng: np.random.Generator,
    services: list[_Service],
    callees: list[list[int]],
    onset: int,
    step_s: int,
) -> _Fault:
    kind = FAULT_KINDS[int(rng.integers(0, len(FAULT_KINDS)))]
    service = 0 if rng.random() < 0.08 else int(rng.integers(1, len(services)))
    svc = services[service]
    pg = next(i for i, s in enumerate(services) if s.kind == "postgres")
    metrics = [m for m in ROOT_METRICS[(kind, svc.kind)] if m != "pool" or pg in callees[service]]
    metric = metrics[int(rng.integers(0, len(metrics)))]
    minute = max(1, 60 // step_s)
    length = {
        "level_shift": int(rng.integers(1, 3)),
        "spike": int(rng.integers(3, 9)) * minute,
        "leak": int(rng.integers(15, 51)) * minute,
        "saturation": int(rng.integers(1, 9)) * minute,
    }[kind]
    size = {
        ("level_shift", "latency"): rng.uniform(0.3, 1.5),
        ("spike", "latency"): rng.uniform(1.0, 5.0),
        ("level_shift", "errors"): rng.uniform(0.01, 0.06),
        ("spike", "errors"): rng.uniform(0.03, 0.2),
        ("level_shift", "cpu"): rng.uniform(0.15, 0.4),
        ("spike", "cpu"): rng.uniform(0.5, 1.2),
        ("saturation", "cpu"): rng.uniform(0.7, 1.2),
        ("level_shift", "pool"): rng.uniform(0.5, 2.0),
        ("saturation", "pool"): rng.uniform(1.5, 4.0),
        ("leak", "pool"): rng.uniform(0.4, 0.9),
        ("leak", "memory"): rng.uniform(0.15, 0.4),
        ("leak", "fds"): rng.uniform(0.3, 0.8),
        ("leak", "pg_conns"): rng.uniform(0.3, 0.7),
        ("saturation", "pg_conns"): rng.uniform(0.4, 0.9),
    }[(kind, metric)]
    return _Fault(
        kind, service, int(rng.integers(0, len(svc.pods))), metric, onset, length, float(size)
    )


def _moved(obs: list[_Obs], state: _State, calm: _State, onset: int, alert: int) -> set[int]:
    """Latency and error series the fault really moved between its onset and the alert: the
    noise-free p99 by at least 10 %, or the error ratio by half a point, against the same shop
    without the fault."""
    out = set()
    span = slice(onset, alert + 1)
    for k, o in enumerate(obs):
        if o.pod is None or o.metric not in ("latency", "errors"):
            continue
        i, p = o.pod
        if o.metric == "latency":
            hit = state.latency[i][p][span] > 1.1 * calm.latency[i][p][span]
        else:
            hit = state.errors[i][p][span] > calm.errors[i][p][span] + 0.005
        if hit.any():
            out.add(k)
    return out


def _callers_closure(callees: list[list[int]], root: int) -> set[int]:
    reached = {root}
    changed = True
    while changed:
        changed = False
        for i, cs in enumerate(callees):
            if i not in reached and reached.intersection(cs):
                reached.add(i)
                changed = True
    return reached


def generate_blind_incident_with_truth(seed: int) -> tuple[Incident, BlindTruth]:
    """The incident of ``seed`` and what the :class:`Incident` does not carry."""
    rng = np.random.default_rng([seed, 0xB11D])
    step_s = int(rng.choice(STEPS_S, p=STEP_WEIGHTS))
    step_ms = step_s * 1000
    onset = int((4 * 3600 + rng.uniform(5, 90) * 60) // step_s)
    n_sim = onset + (HORIZON_S + AFTER_ALERT_S) // step_s + 1
    day = int(rng.integers(0, 330))
    start_ms = _EPOCH_2026_MS + day * _DAY_MS + int(rng.integers(0, _DAY_MS // step_ms)) * step_ms
    ts_ms = start_ms + step_ms * np.arange(n_sim, dtype=np.int64)
    n_apps = int(rng.integers(4, 11))
    shape = SHAPES[int(rng.integers(0, len(SHAPES)))]
    callees = _call_graph(rng, n_apps, shape, bool(rng.random() < 0.6))
    nodes = _nodes(rng, int(rng.integers(3, 7)))
    services = _build_services(rng, callees, n_apps, len(nodes))
    for svc in services:  # callee latency reaches a caller 0-2 minutes later
        svc.lag = {
            c: lag * max(1, 60 // step_s) // 2 + int(rng.integers(0, 2))
            for c, lag in svc.lag.items()
        }
    rates = _service_rates(services, callees, _traffic(rng, ts_ms, step_s))
    _size_limits(rng, services, callees, rates)
    raw_cadvisor = bool(rng.random() < RAW_CADVISOR_SHARE)
    namespaces = (
        str(rng.choice(["shop", "prod", "default", "storefront"])),
        str(rng.choice(["data", "db"])),
    )
    obs_seed = int(rng.integers(0, 2**31))
    for attempt in range(40):
        fault = _draw_fault(
            np.random.default_rng([seed, 1, attempt]), services, callees, onset, step_s
        )
        size0 = fault.size
        for rung in range(LADDER_STEPS):
            fault.size = size0 * LADDER**rung
            state = _simulate(services, callees, rates, fault, step_s)
            obs = _observe(
                np.random.default_rng(obs_seed),
                services,
                callees,
                state,
                nodes,
                step_s,
                raw_cadvisor,
                namespaces,
            )
            alert = _alert_step(obs, services, onset, step_s, _alert_within_s(fault, step_s))
            if alert is None:
                continue
            root = next(
                k
                for k, o in enumerate(obs)
                if o.pod == (fault.service, fault.pod) and o.metric == fault.metric
            )
            if _root_visible(obs[root].data, onset, alert, step_s):
                calm = _simulate(services, callees, rates, replace(fault, size=0.0), step_s)
                return _finish(
                    seed,
                    rng,
                    obs,
                    _moved(obs, state, calm, fault.onset, alert),
                    services,
                    callees,
                    fault,
                    root,
                    alert,
                    start_ms,
                    step_s,
                    shape,
                    raw_cadvisor,
                )
    raise RuntimeError(f"seed {seed}: no fault made the edge alert")  # pragma: no cover


def _finish(
    seed: int,
    rng: np.random.Generator,
    obs: list[_Obs],
    moved: set[int],
    services: list[_Service],
    callees: list[list[int]],
    fault: _Fault,
    root: int,
    alert: int,
    start_ms: int,
    step_s: int,
    shape: str,
    raw_cadvisor: bool,
) -> tuple[Incident, BlindTruth]:
    reached = _callers_closure(callees, fault.service)
    root_node = services[fault.service].pod_nodes[fault.pod]
    background = _background(rng, obs, reached, root_node, fault.onset, alert, step_s)
    affected = {root} | {k for k in moved if obs[k].owner in reached}
    n = alert + 1 + AFTER_ALERT_S // step_s
    order = rng.permutation(len(obs))
    where = {int(old): new for new, old in enumerate(order)}
    series: list[SeriesInput] = []
    for old in order:
        o = obs[int(old)]
        values = _assemble(o, n)
        gaps = rng.random(n) < 0.001  # missed scrapes
        values[gaps] = np.nan
        series.append(SeriesInput(label_set(o.labels), values, o.counter))
    step_ms = step_s * 1000
    inc = Incident(
        seed=seed,
        profile="blind",
        kind=fault.kind,
        start_ms=start_ms,
        step_ms=step_ms,
        series=series,
        root=where[root],
        onset_ms=start_ms + fault.onset * step_ms,
        time_ms=start_ms + alert * step_ms,
        services=[s.name for s in services],
        callees=[list(c) for c in callees],
        affected=sorted(where[k] for k in affected),
        background=sorted(where[k] for k in background if k not in affected and k != root),
    )
    truth = BlindTruth(
        owner=[obs[int(old)].owner for old in order],
        resets={where[k]: sorted(o.resets) for k, o in enumerate(obs) if o.resets},
        root_metric=fault.metric,
        label_style="raw-cadvisor" if raw_cadvisor else "relabelled",
        shape=shape,
        magnitude=fault.size,
        reached=sorted(reached),
    )
    return inc, truth


def generate_blind_incident(seed: int) -> Incident:
    """The blind generator's incident for ``seed`` (deterministic)."""
    return generate_blind_incident_with_truth(seed)[0]
