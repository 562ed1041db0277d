"""The simulated system behind :mod:`perfintel.bench.incidents_fresh`: topology and latent state.

A system is a load balancer in front of HTTP services (a call DAG), an optional Kafka topic
fed by some of them and drained by consumer workers, an optional cron job, and backends
(PostgreSQL databases, Redis caches); its pods are spread over a few nodes, so services
share CPUs and disks. :func:`simulate` turns a :class:`System` and a :class:`Perturbation`
(a fault, background anomalies, or nothing) into the latent state of every step — request
rates, CPU demand, memory, GC time, connection pools, latencies, error ratios, cache hit
ratio, disk busy time, consumer lag — with no measurement noise (only the traffic's own
fluctuations, when given). Loads flow from callers to callees (with retries on a callee's
errors amplifying them, and a cache's misses reaching the database behind it); latencies
and errors flow back up with per-edge lags and the share of requests that wait on each
callee. Feedback loops (retries, a consumer slowed by its database) are solved by iterating.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

API_NAMES = (
    "storefront", "checkout", "cart", "catalog", "search", "payments", "accounts",
    "inventory", "pricing", "shipping", "reviews", "recommendations", "auth", "orders",
)  # fmt: skip
FRONT_NAMES = ("web", "api-gateway", "bff")
WORKER_NAMES = ("order-processor", "email-sender", "search-indexer", "ledger-writer")
DB_NAMES = ("postgres-orders", "postgres-main", "postgres-catalog")
CACHE_NAMES = ("redis-cache", "redis-sessions")
BATCH_NAMES = ("report-cron", "reconcile-job", "cleanup-cron")
TOPICS = ("orders", "events", "emails")


@dataclass
class Service:
    name: str
    kind: str  # lb | api | worker | batch | cache | db | queue
    runtime: str  # go | jvm | python | native
    style: str  # how its request latency is exported: histogram | summary | gauge
    pods: int
    nodes: list[int]  # node of each pod
    cores: float  # CPU limit per pod
    cost: float  # CPU seconds per request
    base_latency: float  # seconds, its own work
    spread: float  # sigma of log latency
    timeout: float
    base_error: float
    pool_max: int = 0  # database connections per pod (0: no pool)
    heap_max: float = 0.0  # bytes
    memory: float = 0.0  # baseline working set per pod, bytes
    mean_rps: float = 1.0  # requests per second at the mean traffic
    concurrency: float = 0.0  # a consumer pod's messages in flight at most


@dataclass
class Edge:
    src: int
    dst: int
    fanout: float  # calls per request
    share: float  # fraction of the caller's latency that waits on the callee
    lag: int  # steps
    retries: float  # extra calls per failed call
    cache: int = -1  # a database edge taken only on misses of this cache


@dataclass
class System:
    step_s: int
    services: list[Service]
    edges: list[Edge]
    node_cores: list[float]
    node_names: list[str]
    base_rps: float
    daily: tuple[float, float]  # amplitude, phase
    weekly: tuple[float, float]
    start_s: float  # seconds since the epoch week's start, for the seasonality
    hit_ratio: dict[int, float] = field(default_factory=dict)
    batch_period: int = 0  # steps between cron runs
    batch_length: int = 0
    batch_offset: int = 0

    def callees(self) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in self.services]
        for e in self.edges:
            if e.dst not in out[e.src]:
                out[e.src].append(e.dst)
        return out

    def of_kind(self, kind: str) -> list[int]:
        return [i for i, s in enumerate(self.services) if s.kind == kind]

    def batch_running(self, n: int) -> np.ndarray:
        if not self.batch_period:
            return np.zeros(n, dtype=bool)
        k = np.arange(n) + self.batch_offset
        return (k % self.batch_period) < self.batch_length


def build_system(rng: np.random.Generator, step_s: int, start_s: float) -> System:
    """A random system: an LB, 3-8 HTTP services, maybe a Kafka pipeline and a cron job, backends."""
    minute = 60 // step_s
    services: list[Service] = []
    edges: list[Edge] = []

    def lag() -> int:  # 0-45 s, often 0 steps
        return int(np.rint(rng.choice([0.0, 0.0, 10.0, 15.0, 30.0, 45.0]) / step_s))

    def add(kind: str, name: str, **kw: float | int | str) -> int:
        runtime = str(kw.pop("runtime", rng.choice(["go", "jvm", "python"], p=[0.4, 0.4, 0.2])))
        style = str(
            kw.pop("style", rng.choice(["histogram", "summary", "gauge"], p=[0.5, 0.3, 0.2]))
        )
        if runtime == "jvm" and style == "gauge":
            style = "summary"  # Micrometer
        pods = int(kw.pop("pods", rng.integers(1, 4)))
        svc = Service(
            name=name,
            kind=kind,
            runtime=runtime,
            style=style,
            pods=pods,
            nodes=[0] * pods,
            cores=float(kw.pop("cores", rng.choice([0.5, 1.0, 2.0]))),
            cost=float(kw.pop("cost", 0.0)),
            base_latency=float(kw.pop("base_latency", rng.uniform(0.004, 0.04))),
            spread=float(rng.uniform(0.35, 0.8)),
            timeout=float(kw.pop("timeout", rng.choice([1.0, 2.0, 5.0]))),
            base_error=float(rng.uniform(0.0002, 0.0015)),
            heap_max=float(rng.choice([512, 1024, 2048])) * 2**20 if runtime == "jvm" else 0.0,
            memory=float(rng.uniform(80, 600)) * 2**20,
        )
        services.append(svc)
        return len(services) - 1

    base_rps = float(rng.uniform(40.0, 600.0))
    lb = add("lb", str(rng.choice(["ingress-nginx", "haproxy"])), runtime="native", pods=2,
             style="histogram", base_latency=0.0005, cores=2.0)  # fmt: skip
    if services[lb].name == "haproxy":
        services[lb].style = "gauge"
    n_api = int(rng.integers(3, 9))
    names = list(rng.choice(API_NAMES, size=n_api - 1, replace=False))
    apis = [add("api", str(rng.choice(FRONT_NAMES)))] + [add("api", str(x)) for x in names]
    edges.append(Edge(lb, apis[0], 1.0, 1.0, lag(), 0.0))
    # the call DAG among services: each non-front service has 1-2 callers of lower index
    for j, a in enumerate(apis[1:], start=1):
        callers = rng.choice(apis[:j], size=min(j, int(rng.integers(1, 3))), replace=False)
        for c in callers:
            edges.append(_call(rng, int(c), a, lag()))
    pipeline = rng.random() < 0.55
    workers: list[int] = []
    if pipeline:
        for w in rng.choice(WORKER_NAMES, size=int(rng.integers(1, 3)), replace=False):
            workers.append(add("worker", str(w), base_latency=float(rng.uniform(0.01, 0.08))))
    batch = -1
    if rng.random() < 0.5:
        batch = add("batch", str(rng.choice(BATCH_NAMES)), runtime="python", style="gauge", pods=1)
    caches = [add("cache", str(c), runtime="native", pods=1, base_latency=0.0006, cores=1.0)
              for c in rng.choice(CACHE_NAMES, size=int(rng.integers(0, 3)), replace=False)]  # fmt: skip
    dbs = [add("db", str(d), runtime="native", pods=1, base_latency=float(rng.uniform(0.002, 0.01)),
               cores=float(rng.choice([2.0, 4.0])), timeout=30.0)
           for d in rng.choice(DB_NAMES, size=int(rng.integers(1, 3)), replace=False)]  # fmt: skip
    queue = add("queue", "kafka", runtime="jvm", pods=3, base_latency=0.003) if pipeline else -1
    # backends: some services read a cache and fall back to a database on a miss
    users = [a for a in apis if rng.random() < 0.6] or [apis[-1]]
    for u in users:
        d = int(rng.choice(dbs))
        share = float(rng.uniform(0.5, 0.95))
        calls = float(rng.uniform(1.0, 4.0))
        if caches and rng.random() < 0.6:
            c = int(rng.choice(caches))
            edges.append(Edge(u, c, calls, share, lag(), 0.0))
            edges.append(Edge(u, d, calls, share, lag(), float(rng.uniform(0.0, 1.0)), cache=c))
        else:
            edges.append(Edge(u, d, calls, share, lag(), float(rng.uniform(0.0, 1.0))))
        services[u].pool_max = int(rng.choice([10, 20, 30]))
    for b in caches + dbs:  # a backend nobody uses is not deployed
        if not any(e.dst == b for e in edges):
            u = int(rng.choice(apis[1:]))
            edges.append(Edge(u, b, float(rng.uniform(1.0, 3.0)), 0.7, lag(), 0.5))
            if b in dbs:  # a pool of database connections, not of cache ones
                services[u].pool_max = services[u].pool_max or 20
    for w in workers:
        d = int(rng.choice(dbs))
        edges.append(Edge(w, d, float(rng.uniform(1.0, 3.0)), 0.9, lag(), 0.5))
        services[w].pool_max = int(rng.choice([5, 10]))
        edges.append(Edge(w, queue, 1.0, 0.0, 0, 0.0))
    if pipeline:
        producers = rng.choice(apis, size=min(len(apis), int(rng.integers(1, 3))), replace=False)
        for p in producers:
            edges.append(Edge(int(p), queue, float(rng.uniform(0.3, 1.5)), 0.3, lag(), 0.0))
    if batch >= 0:
        edges.append(Edge(batch, int(rng.choice(dbs)), 1.0, 1.0, 0, 0.0))
        services[batch].pool_max = 5
    hit = {c: float(rng.uniform(0.8, 0.97)) for c in caches}
    # CPU cost per request: each pod at 15-45 % of its limit at the mean load
    load = _mean_loads(services, edges, base_rps, hit)
    for i, s in enumerate(services):
        target = float(rng.uniform(0.15, 0.45)) * s.cores * s.pods
        s.cost = target / max(load[i], 1.0)
        s.mean_rps = max(load[i], 1.0)
    for w in workers:  # a first guess; calibrate() sizes it on a clean run
        proc = services[w].base_latency * 1.3 + sum(
            e.fanout * e.share * services[e.dst].base_latency * 2.0
            for e in edges
            if e.src == w and services[e.dst].kind == "db"
        )
        inflow = load[w] / services[w].pods
        services[w].concurrency = float(rng.uniform(2.5, 3.5)) * inflow * proc
    # nodes: 3-6, pods placed at random (so some share a node: noisy neighbours)
    n_nodes = int(rng.integers(3, 7))
    for s in services:
        s.nodes = [int(rng.integers(0, n_nodes)) for _ in range(s.pods)]
    octet = rng.integers(2, 250, size=n_nodes)
    return System(
        step_s=step_s,
        services=services,
        edges=edges,
        node_cores=[float(rng.choice([4.0, 8.0])) for _ in range(n_nodes)],
        node_names=[f"ip-10-0-{i + 1}-{o}.ec2.internal" for i, o in enumerate(octet)],
        base_rps=base_rps,
        daily=(float(rng.uniform(0.15, 0.45)), float(rng.uniform(0, 2 * np.pi))),
        weekly=(float(rng.uniform(0.03, 0.12)), float(rng.uniform(0, 2 * np.pi))),
        start_s=start_s,
        hit_ratio=hit,
        batch_period=int(rng.choice([30, 60, 120])) * minute if batch >= 0 else 0,
        batch_length=int(rng.integers(4, 13)) * minute if batch >= 0 else 0,
        batch_offset=int(rng.integers(0, 10_000)),
    )


def _call(rng: np.random.Generator, src: int, dst: int, lag: int) -> Edge:
    return Edge(
        src, dst, float(rng.uniform(0.3, 1.5)), float(rng.uniform(0.3, 0.9)), lag,
        float(rng.choice([0.0, 0.0, 1.0, 2.0])),
    )  # fmt: skip


def _mean_loads(
    services: list[Service], edges: list[Edge], base: float, hit: dict[int, float]
) -> list[float]:
    """Requests per second at each service at the mean traffic (edges go to larger indices;
    a consumer group drains what the producers put in the topic, found in a first pass)."""
    drained: dict[int, float] = {}
    load = [0.0] * len(services)
    for _ in range(2):
        load = [0.0] * len(services)
        load[0] = base
        for i, s in enumerate(services):
            if s.kind == "batch":
                load[i] = base * 0.3
            if s.kind == "worker":
                load[i] = drained.get(i, 0.0)
            for e in edges:
                if e.src != i or (s.kind == "worker" and services[e.dst].kind == "queue"):
                    continue
                frac = 1.0 - hit[e.cache] if e.cache >= 0 else 1.0
                load[e.dst] += load[i] * e.fanout * frac
        queue = [i for i, s in enumerate(services) if s.kind == "queue"]
        for i, s in enumerate(services):
            if s.kind == "worker" and queue:
                drained[i] = load[queue[0]]
    return load


@dataclass
class Perturbation:
    """Changes to the latent system, each an array over steps (missing: none).

    Keys are tuples: ``("cpu", service, pod)`` extra CPU cores, ``("cost", service, pod)``
    factor on the CPU per request, ``("heap", service, pod)`` extra memory (fraction of the
    heap or of the baseline working set), ``("goroutines", service, pod)`` extra goroutines,
    ``("gc", service, pod)`` extra fraction of time in GC, ``("conns", service, pod)`` leaked
    pool connections, ``("hold", service, pod)`` factor on the time a connection is held,
    ``("burst", service, pod)`` CPU used beyond the pod's limit (no limit set: it loads the
    node, not the pod), ``("miss", cache)`` drop of the hit ratio, ``("locks", db)`` exclusive locks held,
    ``("disk", node)`` extra disk busy fraction, ``("traffic", service)`` factor on its load.
    """

    arrays: dict[tuple[object, ...], np.ndarray] = field(default_factory=dict)

    def get(self, key: tuple[object, ...], n: int, default: float = 0.0) -> np.ndarray:
        x = self.arrays.get(key)
        return np.full(n, default) if x is None else x[:n]

    def add(self, key: tuple[object, ...], x: np.ndarray) -> None:
        self.arrays[key] = self.arrays[key] + x if key in self.arrays else x.copy()

    def merged(self, other: Perturbation) -> Perturbation:
        out = Perturbation(dict(self.arrays))
        for k, v in other.arrays.items():
            if k[0] in ("cost", "hold", "traffic"):  # factors multiply
                out.arrays[k] = out.arrays[k] * v if k in out.arrays else v
            else:
                out.add(k, v)
        return out


@dataclass
class State:
    """Latent values per step: per service ``rps`` (n,); per pod arrays (pods, n)."""

    rps: list[np.ndarray]
    cpu: list[np.ndarray]  # cores used (capped at the limit)
    throttled: list[np.ndarray]  # fraction of periods throttled
    memory: list[np.ndarray]  # working set bytes
    heap: list[np.ndarray]  # JVM heap used bytes (zeros elsewhere)
    gc: list[np.ndarray]  # fraction of time paused for GC
    goroutines: list[np.ndarray]
    pool_used: list[np.ndarray]
    pool_pending: list[np.ndarray]
    latency: list[np.ndarray]  # median seconds per request, own + waited on callees
    error: list[np.ndarray]  # ratio
    hit: dict[int, np.ndarray]
    locks: dict[int, np.ndarray]
    active: dict[int, np.ndarray]  # database connections in use
    disk: list[np.ndarray]  # node disk busy fraction
    node_cpu: list[np.ndarray]  # node cores used
    lag: dict[int, np.ndarray]  # worker -> consumer group lag (messages)
    produced: np.ndarray  # messages per second into the topic


def shifted(x: np.ndarray, lag: int) -> np.ndarray:
    """``x`` seen ``lag`` steps later (the first values carried back)."""
    if lag <= 0:
        return x
    out = np.empty_like(x)
    out[..., lag:] = x[..., :-lag]
    out[..., :lag] = x[..., :1]
    return out


def traffic(system: System, n: int, noise: np.ndarray | None) -> np.ndarray:
    t = system.start_s + system.step_s * np.arange(n)
    (ad, pd), (aw, pw) = system.daily, system.weekly
    shape = 1.0 + ad * np.sin(2 * np.pi * t / 86400 + pd) + aw * np.sin(2 * np.pi * t / 604800 + pw)
    out = system.base_rps * shape
    return out * np.exp(noise) if noise is not None else out


def simulate(system: System, pert: Perturbation, n: int, noise: np.ndarray | None) -> State:
    """The latent state over ``n`` steps under ``pert`` (``noise``: log traffic fluctuation)."""
    svcs, edges, dt = system.services, system.edges, float(system.step_s)
    ns = len(svcs)
    front = traffic(system, n, noise)
    running = system.batch_running(n).astype(float)
    hit = {c: np.clip(h - pert.get(("miss", c), n), 0.0, 1.0) for c, h in system.hit_ratio.items()}
    lat = [np.full((s.pods, n), s.base_latency) for s in svcs]
    err = [np.full((s.pods, n), s.base_error) for s in svcs]
    mean_lat = [x.mean(axis=0) for x in lat]
    mean_err = [x.mean(axis=0) for x in err]
    workers = system.of_kind("worker")
    qs = system.of_kind("queue")
    disk = [np.full(n, 0.05) for _ in system.node_names]
    for _ in range(3):
        rps = [np.zeros(n) for _ in svcs]
        rps[0] = front * pert.get(("traffic", 0), n, 1.0)
        lagged: dict[int, np.ndarray] = {}
        produced = np.zeros(n)
        for i, s in enumerate(svcs):
            if s.kind == "batch":
                rps[i] = system.base_rps * 0.3 * running
            if s.kind == "worker":
                produced = rps[qs[0]].copy()  # producers are services of lower index
                rps[i], lagged[i] = _consume(system, i, produced, mean_lat[i], pert, n, dt)
            rps[i] = rps[i] * pert.get(("traffic", i), n, 1.0) if i else rps[i]
            for e in edges:
                if e.src != i or (svcs[e.dst].kind == "queue" and s.kind == "worker"):
                    continue
                frac = 1.0 - hit[e.cache] if e.cache >= 0 else 1.0
                retry = 1.0 + e.retries * mean_err[e.dst]
                rps[e.dst] = rps[e.dst] + shifted(rps[i] * e.fanout * frac, e.lag) * retry
        # bottom-up: callees have larger indices
        cpu, thr, mem, heap, gcs, gor, used, pend = ([] for _ in range(8))
        demand_node = [np.zeros(n) for _ in system.node_names]
        own_cpu = []
        for i, s in enumerate(svcs):
            pod_rps = rps[i] / s.pods
            d = np.stack([
                pod_rps * s.cost * pert.get(("cost", i, p), n, 1.0) + pert.get(("cpu", i, p), n)
                for p in range(s.pods)
            ])  # fmt: skip
            own_cpu.append(d)
            for p in range(s.pods):
                burst = pert.get(("burst", i, p), n)
                demand_node[s.nodes[p]] += np.minimum(d[p], s.cores) + burst
        node_util = [dn / c for dn, c in zip(demand_node, system.node_cores, strict=True)]
        dbs_disk = {i: np.zeros(n) for i in range(len(system.node_names))}
        for i, s in enumerate(svcs):
            if s.kind == "db":
                dbs_disk[s.nodes[0]] += 0.25 * rps[i] / s.mean_rps
        disk = [
            np.clip(0.03 + 0.2 * dbs_disk[k] + pert.get(("disk", k), n), 0.0, 1.0)
            for k in range(len(system.node_names))
        ]
        locks: dict[int, np.ndarray] = {}
        active: dict[int, np.ndarray] = {}
        for i in reversed(range(ns)):
            s = svcs[i]
            pod_rps = rps[i] / s.pods
            d = own_cpu[i]
            g0 = 0.004 if s.runtime in ("jvm", "go") else 0.0
            h = np.stack([pert.get(("heap", i, p), n) for p in range(s.pods)])
            fill = 0.45 + 0.1 * (rps[i] / s.mean_rps) + h  # heap fill
            # collections grow more frequent as the live heap nears its limit
            gc = np.minimum(g0 * (0.5 / (1.02 - np.clip(fill, 0.0, 0.99))) ** 2, 0.5)
            gc = gc + np.stack([pert.get(("gc", i, p), n) for p in range(s.pods)])
            extra_g = np.stack([pert.get(("goroutines", i, p), n) for p in range(s.pods)])
            d = d + gc * s.cores * 0.8 + extra_g * 2e-5
            util = np.clip(d / s.cores, 0.0, 0.97)
            throttle = np.clip(d / s.cores - 1.0, 0.0, None)
            steal = np.stack([np.clip(node_util[k] - 0.7, 0.0, None) for k in s.nodes])
            factor = 1.0 + 0.35 * util / (1.0 - util) + 3.0 * throttle + 4.0 * steal + 6.0 * gc
            factor = factor * (1.0 + extra_g / 20000.0)
            own = s.base_latency * factor
            if s.kind == "db":
                lk = pert.get(("locks", i), n)
                locks[i] = 2.0 + lk
                own = own * (1.0 + 4.0 * np.clip(disk[s.nodes[0]] - 0.5, 0.0, None) ** 1.5 * 4)
                own = own * (1.0 + 0.5 * lk)
            wait_callees = np.zeros(n)
            err_callees = np.zeros(n)
            hold = np.zeros(n)
            for e in edges:
                if e.src != i or (svcs[e.dst].kind == "queue" and s.kind == "worker"):
                    continue
                frac = 1.0 - hit[e.cache] if e.cache >= 0 else 1.0
                w = e.share * e.fanout * frac * shifted(mean_lat[e.dst], e.lag)
                wait_callees += w
                err_callees += e.share * frac * shifted(mean_err[e.dst], e.lag)
                if svcs[e.dst].kind == "db":
                    hold += e.fanout * frac * shifted(mean_lat[e.dst], e.lag)
            pool_u = np.zeros((s.pods, n))
            pool_p = np.zeros((s.pods, n))
            wait_pool = np.zeros((s.pods, n))
            if s.pool_max:
                for p in range(s.pods):
                    need = pod_rps * hold * pert.get(("hold", i, p), n, 1.0) * 1.3 + 1.0
                    need = need + pert.get(("conns", i, p), n)
                    pool_u[p] = np.minimum(need, s.pool_max)
                    pool_p[p] = np.clip(need - s.pool_max, 0.0, None) * 2.0
                    wait_pool[p] = np.minimum(pool_p[p] / np.maximum(pod_rps, 0.05), s.timeout)
            total = own + wait_callees + wait_pool
            timeouts = _tail(total, s.spread, s.timeout)
            pool_timeouts = np.clip(wait_pool / s.timeout - 0.5, 0.0, 1.0)
            e_all = s.base_error + timeouts + pool_timeouts + np.minimum(err_callees, 1.0)
            lat[i], err[i] = total, np.clip(e_all, 0.0, 1.0)
            mem_extra = np.stack([pert.get(("heap", i, p), n) for p in range(s.pods)])
            heap.append(
                np.clip(fill, 0.0, 0.99) * s.heap_max if s.heap_max else np.zeros((s.pods, n))
            )
            base_mem = s.memory * (1.0 + 0.05 * np.log1p(rps[i] / s.mean_rps))
            mem.append(base_mem * (1.0 + (0.0 if s.heap_max else 1.0) * mem_extra) + extra_g * 8192)
            gcs.append(gc)
            gor.append(
                np.round(30 + 0.8 * pod_rps * total + extra_g)
                if s.runtime == "go"
                else np.zeros((s.pods, n))
            )
            burst = np.stack([pert.get(("burst", i, p), n) for p in range(s.pods)])
            cpu.append(np.minimum(d, s.cores) + burst)
            thr.append(np.clip(d / s.cores - 0.9, 0.0, 1.0) * 2)
            used.append(pool_u)
            pend.append(pool_p)
            if s.kind == "db":
                active[i] = rps[i] * lat[i][0] + 1.0 + locks[i] * 0.5
        for lst in (cpu, thr, mem, heap, gcs, gor, used, pend):
            lst.reverse()
        mean_lat = [x.mean(axis=0) for x in lat]
        mean_err = [x.mean(axis=0) for x in err]
    node_cpu = [np.minimum(dn, c) for dn, c in zip(demand_node, system.node_cores, strict=True)]
    return State(
        rps=rps, cpu=cpu, throttled=thr, memory=mem, heap=heap, gc=gcs, goroutines=gor,
        pool_used=used, pool_pending=pend, latency=lat, error=err, hit=hit, locks=locks,
        active=active, disk=disk, node_cpu=node_cpu,
        lag={w: lagged[w] for w in workers}, produced=produced,
    )  # fmt: skip


def _consume(
    system: System,
    w: int,
    produced: np.ndarray,
    proc: np.ndarray,
    pert: Perturbation,
    n: int,
    dt: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Messages per second a consumer group drains and its lag: each pod owns an equal share
    of the partitions and handles ``concurrency / processing time`` messages a second at most
    (less when its CPU per message grows)."""
    s = system.services[w]
    inflow = produced / s.pods  # every group reads the whole topic
    out = np.zeros(n)
    lag = np.zeros(n)
    for p in range(s.pods):
        cost = pert.get(("cost", w, p), n, 1.0)
        cap = s.concurrency / np.maximum(proc * cost, 1e-4)
        backlog = 0.0
        drained = np.empty(n)
        for k in range(n):
            can = min(inflow[k] + backlog / dt, cap[k])
            backlog = max(0.0, backlog + (inflow[k] - can) * dt)
            drained[k] = can
            lag[k] += backlog
        out += drained
    return out, lag + 5.0


def _tail(median: np.ndarray, spread: float, limit: float) -> np.ndarray:
    """Share of lognormal latencies (this median, log-sigma) over ``limit``."""
    from scipy.special import ndtr

    return ndtr((np.log(np.maximum(median, 1e-6)) - np.log(limit)) / spread)


def calibrate(system: System, n: int, rng: np.random.Generator) -> None:
    """Size each connection pool and consumer from a clean run, as an operator would: pools at
    2-4x their busiest use, consumers with 1.8-2.6x headroom over their busiest inflow."""
    for s in system.services:
        if s.pool_max:
            s.pool_max = 1_000_000
        if s.kind == "worker":
            s.concurrency = 1e9
    clean = simulate(system, Perturbation(), n, None)
    for i, s in enumerate(system.services):
        if s.pool_max:
            s.pool_max = max(5, int(np.ceil(clean.pool_used[i].max() * rng.uniform(2.0, 4.0))))
        if s.kind == "worker":
            inflow = float(clean.produced.max()) / s.pods
            proc = float(clean.latency[i].mean(axis=0).max())
            s.concurrency = float(rng.uniform(1.8, 2.6)) * inflow * proc
