"""The shop the blind incident generator simulates (see :mod:`perfintel.bench.incidents_blind`):
services on Kubernetes, their call graph and traffic, the physics of each pod under a fault,
and what the exporters scrape from it.

Written blind to the ranking code, for reporting only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.signal import lfilter

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


@dataclass
class Service:
    """One service: its pods, where they run, and the constants of their physics."""

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
class Fault:
    """The injected fault: ``size`` times :func:`fault_shape` added to ``metric`` of one pod."""

    kind: str
    service: int
    pod: int
    metric: str
    onset: int
    length: int  # spike duration / leak time scale / saturation ramp, in steps
    size: float


@dataclass
class ShopState:
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


def call_graph(rng: np.random.Generator, n_apps: int, shape: str, redis: bool) -> list[list[int]]:
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


def build_services(
    rng: np.random.Generator, callees: list[list[int]], n_apps: int, n_nodes: int
) -> list[Service]:
    names = ["frontend"] + [
        str(x) for x in rng.choice(APP_NAMES, size=n_apps - 1, replace=False).tolist()
    ]
    names += ["postgres"] + (["redis"] if len(callees) > n_apps + 1 else [])
    out: list[Service] = []
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
        svc = Service(
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


def traffic(rng: np.random.Generator, ts_ms: np.ndarray, step_s: int) -> np.ndarray:
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


def service_rates(
    services: list[Service], callees: list[list[int]], edge: np.ndarray
) -> list[np.ndarray]:
    """Requests per second of each service: its callers' rates times calls per request."""
    total = [np.zeros_like(edge) for _ in services]
    total[0] = edge.copy()
    for i, cs in enumerate(callees):
        for c in cs:
            total[c] = total[c] + total[i] * services[i].calls[c]
    return total


def size_limits(
    rng: np.random.Generator,
    services: list[Service],
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


def fault_shape(fault: Fault, n: int) -> np.ndarray:
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


def simulate(
    services: list[Service],
    callees: list[list[int]],
    rates: list[np.ndarray],
    fault: Fault,
    step_s: int,
) -> ShopState:
    """Noise-free pod physics under ``fault``: two passes so database refusals reach callers."""
    n = rates[0].size
    shape = fault_shape(fault, n)
    pg = next(i for i, s in enumerate(services) if s.kind == "postgres")

    def hit(i: int, metric: str) -> np.ndarray:
        """The fault's term for ``metric`` in service ``i``'s pods (pods x steps)."""
        out = np.zeros((len(services[i].pods), n))
        if fault.service == i and fault.metric == metric:
            out[fault.pod] = fault.size * shape
        return out

    refused = np.zeros(n)
    state = ShopState([], [], [], [], [], [], [])
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
        state = ShopState(
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
class Exported:
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
class Node:
    name: str
    ip: str


def make_nodes(rng: np.random.Generator, n: int) -> list[Node]:
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
        out.append(Node(name, ip))
    return out


def observe(
    rng: np.random.Generator,
    services: list[Service],
    callees: list[list[int]],
    state: ShopState,
    nodes: list[Node],
    step_s: int,
    raw_cadvisor: bool,
    namespaces: tuple[str, str],
) -> list[Exported]:
    n = state.rate[0].shape[1]
    out: list[Exported] = []

    def noise(sd: float, tau_steps: float = 1.0) -> np.ndarray:
        phi = float(np.exp(-1.0 / max(tau_steps, 0.2)))
        return sd * _ar1(rng, n, phi, bool(rng.random() < 0.35))

    def counter(
        labels: dict[str, str], i: int, p: int, metric: str, inc: np.ndarray, node: int
    ) -> None:
        uptime = float(rng.uniform(3_600, 30 * 86_400)) / step_s
        offset = float(np.mean(inc)) * uptime
        out.append(Exported(labels, i, (i, p), node, metric, True, np.maximum(inc, 0.0), offset))

    def gauge(
        labels: dict[str, str], i: int, p: int, metric: str, v: np.ndarray, node: int
    ) -> None:
        out.append(Exported(labels, i, (i, p), node, metric, False, v))

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
        out.append(Exported({**lab, "__name__": "node_load1"}, -1, None, k, "load", False, load))
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
            Exported(
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
