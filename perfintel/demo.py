"""A realistic, deterministic demo data set: nine services observed for two weeks.

``generate_demo`` yields columnar ``SampleBatch`` objects (one per few hours of
data, every series in each) shaped like what Prometheus would have scraped from
a small shop:

* services ``api-gateway``, ``checkout``, ``search``, ``auth``, ``payments``,
  ``reports``, ``ingest``, ``notifier`` (HTTP apps, ``job`` = service name,
  instance ``<service>-<k>:8080``) and ``postgres`` (postgres_exporter,
  ``job="postgres"``, ``:9187``); every host also runs node_exporter
  (``job="node"``, ``:9100``). Every series carries ``service``, ``instance``
  and ``job``. The hosts of the first six are sized for their peaks (CPU and
  memory at 45-75 % at the weekly peak); ``reports`` runs on a host far too
  large for it (16 cores, 64 GiB), ``ingest`` on hosts too small (CPU-bound at
  every weekday peak) and ``notifier`` leaks memory from a third of the span
  on, still growing at the end (``demo_events`` lists them as
  ``overprovisioned``, ``underprovisioned`` and ``memory_leak``).
* app metrics: ``http_requests_total{code,method}``, the classic histogram
  ``http_request_duration_seconds_bucket{le}``/``_sum``/``_count``,
  ``app_errors_total{kind}``, ``process_cpu_seconds_total``,
  ``process_resident_memory_bytes``, ``process_start_time_seconds``, ``up``,
  ``deploy_info{version}`` (1 while that version runs) and
  ``worker_queue_depth{queue}`` on checkout and payments;
* node metrics: ``node_cpu_seconds_total{cpu,mode}``, ``node_load1``,
  ``node_memory_MemTotal_bytes``, ``node_memory_MemAvailable_bytes``,
  ``node_filesystem_avail_bytes`` / ``node_filesystem_size_bytes``
  ``{device,fstype,mountpoint}``;
* postgres metrics: ``pg_up``, ``pg_stat_database_xact_commit_total``,
  ``pg_stat_activity_count``, ``pg_database_size_bytes`` (``datname="shop"``).

Traffic has a daily cycle (business-hours peak around 14:00 UTC, an evening
shoulder, a night trough), quieter weekends and slow growth. The scenario, at
fixed fractions of the time span so that shorter spans contain it too, is
listed by ``demo_events``: rolling deploys (each restarts the instances, so
counters reset), one of which (checkout 2.5.0) makes latency and memory step
up; a memory leak on auth that grows until the processes are OOM-killed and is
fixed by the next deploy; a crash of one api-gateway instance; a latency spike
with an error burst on search (caused by a slow postgres replica, with upstream
errors on the gateway); the postgres data disk filling steadily, and the
gateway log disk cleaned up by a daily log rotation at 00:00 UTC.

Everything is a pure function of ``(end_ms, days, step_s, seed)``: each series
draws its noise from its own generator seeded by ``seed`` and the series'
name, so the output is the same on every run and platform.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from scipy.signal import lfilter
from scipy.special import ndtr

from perfintel.batch import MetricMetadata, SampleBatch, conventional_metadata
from perfintel.model import LabelSet, label_set

__all__ = ["DEMO_SERVICES", "DemoEvent", "demo_events", "demo_tour", "generate_demo"]

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
GIB = 1024**3
MIB = 1024**2

#: Prometheus client default histogram buckets (seconds), then +Inf.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LATENCY_SIGMA = 0.55  # log-normal shape of request latencies


@dataclass(frozen=True)
class _Service:
    name: str
    instances: int
    peak_rps: float = 0.0  # per instance, at the weekday peak
    latency_s: float = 0.0  # median latency at low load
    memory_bytes: float = 0.0  # resident memory at low load
    cpu_per_request_s: float = 0.0
    queue: str = ""
    versions: tuple[str, ...] = ()
    postgres: bool = False
    cpus: int = 2  # the host's size
    memory_gib: float = 4.0
    other_memory_gib: float = 1.8  # the OS, page cache and sidecars on the host
    leak_mib_per_day: float = 0.0  # an ongoing leak from _LEAK_FROM to the end


# Host sizes fit the peaks of the first six services (CPU and memory peaks at
# 45-75 % of the host): they are the right-sized ones. The last three are
# planted sizing cases (see _SIZING).
_SERVICES = (
    _Service("api-gateway", 3, 140.0, 0.012, 180 * MIB, 0.0070, versions=("5.2.1", "5.3.0")),
    _Service("checkout", 3, 22.0, 0.085, 420 * MIB, 0.042, "orders", ("2.4.0", "2.5.0")),
    _Service("search", 2, 75.0, 0.045, 900 * MIB, 0.011, versions=("1.8.2", "1.8.3")),
    _Service("auth", 2, 95.0, 0.008, 150 * MIB, 0.010, versions=("0.9.3", "0.9.4", "0.9.5")),
    _Service("payments", 2, 9.0, 0.220, 300 * MIB, 0.105, "settlements", ("3.1.0", "3.2.0")),
    _Service("postgres", 2, postgres=True, cpus=8, memory_gib=32.0, other_memory_gib=1.2),
    _Service(
        "reports", 1, 4.0, 0.400, 1800 * MIB, 0.040, versions=("1.0.0",), cpus=16, memory_gib=64.0
    ),
    _Service("ingest", 2, 60.0, 0.030, 350 * MIB, 0.032, versions=("4.1.0",)),
    _Service(
        "notifier", 1, 12.0, 0.020, 300 * MIB, 0.070, versions=("2.0.1",), leak_mib_per_day=110.0
    ),
)

#: Names of the demo services, in generation order.
DEMO_SERVICES = tuple(s.name for s in _SERVICES)

# The scenario, as fractions of the span (see the module docstring).
_DEPLOYS = (  # service, fraction, from-version index -> +1
    ("payments", 0.12),
    ("auth", 0.30),  # 0.9.4 introduces a memory leak
    ("search", 0.36),
    ("auth", 0.56),  # 0.9.5 fixes it
    ("checkout", 0.62),  # 2.5.0: latency x1.4, memory +18 %
    ("api-gateway", 0.70),
)
_CRASH = ("api-gateway", 2, 0.21)
_LEAK_OOM = {0: 0.49, 1: 0.52}  # auth instance -> OOM-kill fraction
_AUTH_MEMORY_LIMIT = 512 * MIB
_INCIDENT = ("search", 0.81, 50 * 60)  # service, fraction, duration in seconds
#: the services the search incident touches: its callers, itself and the replica behind it
_INCIDENT_SCOPE = ("api-gateway", "search", "postgres")
_REGRESSION = ("checkout", "2.5.0", 1.4, 1.18)  # service, version, latency x, memory x
_LOG_ROTATION_HOUR = 0.0
_LEAK_FROM = 0.35  # notifier's leak begins here and is still growing at the end
#: planted sizing cases: service -> (event kind, detail)
_SIZING = {
    "reports": ("overprovisioned", "16 cores and 64 GiB for a peak under 1 core and 4 GiB"),
    "ingest": ("underprovisioned", "2 cores, CPU-bound at every weekday peak"),
    "notifier": ("memory_leak", "leaks about 110 MiB a day since it started; not yet restarted"),
}


@dataclass(frozen=True)
class DemoEvent:
    """Something the demo data set contains on purpose: ground truth for detectors.

    ``kind`` is one of ``deploy``, ``restart`` (crash), ``oom``,
    ``memory_leak``, ``incident``, ``disk_fill``, ``overprovisioned`` and
    ``underprovisioned`` (the host ``instance`` ``<host>:9100``); ``instance``
    is empty when the event concerns the whole service.
    """

    kind: str
    service: str
    instance: str
    start_ms: int
    end_ms: int
    detail: str


@dataclass
class _Timeline:
    """The scrape grid: ``n`` steps ending one step before ``end_ms`` (aligned)."""

    end_ms: int
    days: float
    step_s: int
    ts: np.ndarray = field(init=False)  # int64 ms, the grid (targets add an offset)
    hours: np.ndarray = field(init=False)  # UTC hour of day, float
    weekend: np.ndarray = field(init=False)  # bool

    def __post_init__(self) -> None:
        if self.step_s <= 0 or self.days <= 0:
            raise ValueError("days and step_s must be positive")
        step_ms = self.step_s * 1000
        n = max(2, int(self.days * 86_400 / self.step_s))
        last = (self.end_ms // step_ms) * step_ms - step_ms
        self.ts = last - step_ms * np.arange(n - 1, -1, -1, dtype=np.int64)
        self.hours = (self.ts % DAY_MS) / HOUR_MS
        weekday = (self.ts // DAY_MS + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        self.weekend = weekday >= 5

    @property
    def n(self) -> int:
        return len(self.ts)

    def at(self, fraction: float) -> int:
        """Grid index at a fraction of the span (never the first or last step)."""
        return int(min(max(round(fraction * (self.n - 1)), 1), self.n - 2))

    def steps(self, seconds: float) -> int:
        return max(1, round(seconds / self.step_s))


@dataclass
class _Instance:
    service: _Service
    k: int
    restarts: list[int] = field(default_factory=list)  # grid indices (the target is down there)
    version_at: np.ndarray | None = None  # index into service.versions per step
    leak_bytes: np.ndarray | None = None

    @property
    def host(self) -> str:
        return f"{self.service.name}-{self.k}"


class _Scenario:
    """Event times on a timeline, and per-instance restarts and versions."""

    def __init__(self, tl: _Timeline) -> None:
        self.tl = tl
        self.instances = [_Instance(s, k) for s in _SERVICES for k in range(s.instances)]
        self.events: list[DemoEvent] = []
        gap = tl.steps(120)  # rolling deploys restart one instance every 2 minutes
        self.deploy_idx: dict[tuple[str, int], list[int]] = {}
        for svc_name, frac in _DEPLOYS:
            i0 = tl.at(frac)
            for inst in self._of(svc_name):
                r = min(i0 + inst.k * gap, tl.n - 1)
                inst.restarts.append(r)
                self.deploy_idx.setdefault((svc_name, inst.k), []).append(r)
            svc = next(s for s in _SERVICES if s.name == svc_name)
            n_before = sum(1 for s, f in _DEPLOYS if s == svc_name and f < frac)
            self.events.append(
                DemoEvent(
                    "deploy",
                    svc_name,
                    "",
                    self._ms(i0),
                    self._ms(min(i0 + (svc.instances - 1) * gap, tl.n - 1)),
                    f"rolling deploy {svc.versions[n_before]} -> {svc.versions[n_before + 1]}",
                )
            )
        svc_name, k, frac = _CRASH
        crash = self._of(svc_name)[k]
        crash.restarts.append(tl.at(frac))
        self.events.append(
            DemoEvent(
                "restart",
                svc_name,
                self._app_instance(crash),
                self._ms(tl.at(frac)),
                self._ms(tl.at(frac)),
                "process crashed (SIGSEGV) and was restarted",
            )
        )
        self._leak()
        svc_name, frac, dur = _INCIDENT
        self.incident = (tl.at(frac), min(tl.at(frac) + tl.steps(dur), tl.n - 1))
        self.events.append(
            DemoEvent(
                "incident",
                svc_name,
                "",
                self._ms(self.incident[0]),
                self._ms(self.incident[1]),
                "latency spike and 5xx burst (slow postgres replica); gateway sees upstream errors",
            )
        )
        self.events.append(
            DemoEvent(
                "disk_fill",
                "postgres",
                "postgres-0:9100",
                int(tl.ts[0]),
                int(tl.ts[-1]),
                "/var/lib/postgresql fills steadily",
            )
        )
        for svc_name, (kind, detail) in _SIZING.items():
            for inst in self._of(svc_name):
                port = 8080 if kind == "memory_leak" else 9100
                start = tl.at(_LEAK_FROM) if kind == "memory_leak" else 0
                self.events.append(
                    DemoEvent(
                        kind,
                        svc_name,
                        f"{inst.host}:{port}",
                        self._ms(start),
                        int(tl.ts[-1]),
                        detail,
                    )
                )
        for inst in self.instances:
            inst.restarts.sort()
            self._versions(inst)
        self.events.sort(key=lambda e: (e.start_ms, e.kind, e.service, e.instance))

    def _of(self, service: str) -> list[_Instance]:
        return [i for i in self.instances if i.service.name == service]

    def _ms(self, i: int) -> int:
        return int(self.tl.ts[i])

    @staticmethod
    def _app_instance(inst: _Instance) -> str:
        return f"{inst.host}:{9187 if inst.service.postgres else 8080}"

    def _leak(self) -> None:
        """auth 0.9.4 leaks memory until OOM-killed; 0.9.5 fixes it."""
        tl = self.tl
        auth = self._of("auth")
        for inst in auth:
            start, fix = self.deploy_idx[("auth", inst.k)][:2]
            oom = min(max(tl.at(_LEAK_OOM[inst.k]), start + 2), fix - 1)
            inst.restarts.append(oom)
            slope = (_AUTH_MEMORY_LIMIT - 1.2 * inst.service.memory_bytes) / max(oom - start, 1)
            leak = np.zeros(tl.n)
            idx = np.arange(tl.n)
            leak[start:oom] = slope * (idx[start:oom] - start)
            leak[oom:fix] = slope * (idx[oom:fix] - oom)
            inst.leak_bytes = leak
            name = self._app_instance(inst)
            self.events.append(
                DemoEvent(
                    "memory_leak",
                    "auth",
                    name,
                    self._ms(start),
                    self._ms(fix),
                    "0.9.4 leaks memory until restarted; fixed in 0.9.5",
                )
            )
            self.events.append(
                DemoEvent(
                    "oom",
                    "auth",
                    name,
                    self._ms(oom),
                    self._ms(oom),
                    f"OOM-killed at the {_AUTH_MEMORY_LIMIT // MIB} MiB limit",
                )
            )

    def _versions(self, inst: _Instance) -> None:
        v = np.zeros(self.tl.n, np.int64)
        for r in self.deploy_idx.get((inst.service.name, inst.k), []):
            v[r:] += 1
        inst.version_at = v


def _rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(key.encode())])


def _ar1(rng: np.random.Generator, n: int, std: float, tau_steps: float) -> np.ndarray:
    """Stationary AR(1) noise with standard deviation ``std`` and time constant ``tau_steps``."""
    phi = math.exp(-1.0 / max(tau_steps, 1e-9))
    eps = rng.normal(0.0, std * math.sqrt(1 - phi * phi), n)
    eps[0] = rng.normal(0.0, std)
    return np.asarray(lfilter([1.0], [1.0, -phi], eps))


def _circ(hours: np.ndarray, center: float) -> np.ndarray:
    """Signed distance in hours on the 24-hour clock."""
    return np.asarray((hours - center + 12.0) % 24.0 - 12.0)


def _load(tl: _Timeline) -> np.ndarray:
    """Relative traffic in [~0.1, 1]: business hours, evening shoulder, weekends, growth."""
    h = tl.hours
    day = np.exp(-0.5 * (_circ(h, 14.0) / 3.2) ** 2) + 0.35 * np.exp(
        -0.5 * (_circ(h, 20.5) / 1.8) ** 2
    )
    load = 0.16 + 0.84 * day / 1.02
    load = np.where(tl.weekend, 0.55 * load, load)
    weeks = (tl.ts - tl.ts[0]) / (7 * DAY_MS)
    return np.asarray(load * (1.0 + 0.02 * weeks))


def _counter(inc: np.ndarray, restarts: list[int], initial: float) -> np.ndarray:
    """Cumulative counter of per-step increments that restarts from 0 at each restart."""
    cs = np.cumsum(inc, dtype=np.float64)
    out = cs + initial
    if restarts:
        base = np.zeros(len(inc))
        for r in restarts:
            base[r] = out[r - 1] if r > 0 else 0.0
        out = out - np.maximum.accumulate(base)
    return out


def _since_restart_s(tl: _Timeline, restarts: list[int], uptime_s: float) -> np.ndarray:
    last = np.full(tl.n, -uptime_s / tl.step_s)
    for r in restarts:
        last[r] = r
    return (np.arange(tl.n) - np.maximum.accumulate(last)) * tl.step_s


class _Series:
    """Accumulates series as full-length value arrays plus a presence mask."""

    def __init__(self, tl: _Timeline) -> None:
        self.tl = tl
        self.labels: list[LabelSet] = []
        self.values: list[np.ndarray] = []
        self.masks: list[np.ndarray | None] = []
        self.offsets: list[int] = []

    def add(
        self,
        name: str,
        labels: dict[str, str],
        values: np.ndarray,
        offset_ms: int,
        mask: np.ndarray | None = None,
    ) -> None:
        self.labels.append(label_set({"__name__": name, **labels}))
        self.values.append(np.asarray(values, dtype=np.float64))
        self.masks.append(mask)
        self.offsets.append(offset_ms)


def _target_offset(seed: int, target: str, step_s: int) -> int:
    """Each scrape target has its own phase within the step (like Prometheus's spreading)."""
    return int(_rng(seed, "offset:" + target).integers(0, step_s * 1000))


def _app_series(
    out: _Series, sc: _Scenario, inst: _Instance, load: np.ndarray, seed: int
) -> dict[str, np.ndarray]:
    tl, svc = sc.tl, inst.service
    n, step = tl.n, tl.step_s
    name = f"{inst.host}:8080"
    rng = _rng(seed, "app:" + name)
    base = {"service": svc.name, "instance": name, "job": svc.name}
    off = _target_offset(seed, name, step)
    up = np.ones(n, bool)
    up[inst.restarts] = False
    assert inst.version_at is not None
    regressed = np.zeros(n, bool)
    if svc.name == _REGRESSION[0]:
        regressed = inst.version_at >= svc.versions.index(_REGRESSION[1])
    share = 1.0 + 0.04 * (inst.k - (svc.instances - 1) / 2)
    rps = svc.peak_rps * share * load * np.exp(_ar1(rng, n, 0.06, tl.steps(1800)))
    in_incident = np.zeros(n, bool)
    in_incident[sc.incident[0] : sc.incident[1]] = True
    # latency: grows with load, steps up after the regression, spikes in the incident
    median = svc.latency_s * (1 + 0.45 * load**2) * np.exp(_ar1(rng, n, 0.05, tl.steps(600)))
    median = np.where(regressed, median * _REGRESSION[2], median)
    p5xx = np.full(n, 0.0015)
    if svc.name == _INCIDENT[0]:
        ramp = np.zeros(n)
        i0, i1 = sc.incident
        ramp[i0:i1] = np.sin(np.linspace(0.15, math.pi - 0.15, i1 - i0)) ** 0.5
        median = median * (1 + 8.0 * ramp)
        p5xx = p5xx + 0.12 * ramp
    elif svc.name == "api-gateway":
        p5xx = np.where(in_incident, p5xx + 0.025, p5xx)
    total = rng.poisson(rps * step).astype(np.float64)
    total[~up] = 0
    n5 = rng.binomial(total.astype(np.int64), p5xx).astype(np.float64)
    n4 = rng.binomial((total - n5).astype(np.int64), 0.008).astype(np.float64)
    uptime = float(rng.uniform(1, 6)) * 86_400
    restarts = inst.restarts
    for code, cnt in (("200", total - n5 - n4), ("404", n4), ("500", n5)):
        get = rng.binomial(cnt.astype(np.int64), 0.78).astype(np.float64)
        for method, c in (("GET", get), ("POST", cnt - get)):
            init = float(np.round(c.mean() * uptime / step))
            out.add(
                "http_requests_total",
                {**base, "code": code, "method": method},
                _counter(c, restarts, init),
                off,
                up,
            )
    # classic histogram: log-normal latencies, integer bucket counts per step
    init_count = float(np.round(total.mean() * uptime / step))
    u = rng.random(n)
    mean_cdf = 0.0
    for le in LATENCY_BUCKETS:
        cdf = ndtr((math.log(le) - np.log(median)) / LATENCY_SIGMA)
        mean_cdf = float(cdf.mean())
        inc = np.floor(total * cdf + u)
        inc = np.minimum(inc, total)
        out.add(
            "http_request_duration_seconds_bucket",
            {**base, "le": repr(le)},
            _counter(inc, restarts, math.floor(init_count * mean_cdf)),
            off,
            up,
        )
    out.add(
        "http_request_duration_seconds_bucket",
        {**base, "le": "+Inf"},
        _counter(total, restarts, init_count),
        off,
        up,
    )
    mean_latency = median * math.exp(LATENCY_SIGMA**2 / 2)
    sum_inc = np.round(total * mean_latency * (1 + 0.03 * rng.standard_normal(n)).clip(0.5), 6)
    out.add(
        "http_request_duration_seconds_sum",
        base,
        np.round(_counter(sum_inc, restarts, init_count * float(mean_latency.mean())), 6),
        off,
        up,
    )
    out.add(
        "http_request_duration_seconds_count", base, _counter(total, restarts, init_count), off, up
    )
    timeouts = rng.binomial(n5.astype(np.int64), np.where(in_incident, 0.8, 0.3)).astype(np.float64)
    for kind, c in (("timeout", timeouts), ("exception", n5 - timeouts)):
        out.add(
            "app_errors_total",
            {**base, "kind": kind},
            _counter(c, restarts, float(np.round(c.mean() * uptime / step))),
            off,
            up,
        )
    cores = 0.02 + rps * svc.cpu_per_request_s * (1 + 0.1 * np.log1p(median / svc.latency_s))
    cpu_inc = np.round(cores * step * np.exp(_ar1(rng, n, 0.04, 3)), 2)
    cpu_inc[~up] = 0
    out.add(
        "process_cpu_seconds_total",
        base,
        np.round(_counter(cpu_inc, restarts, float(cores.mean() * uptime)), 2),
        off,
        up,
    )
    since = _since_restart_s(tl, restarts, uptime)
    warm = 0.72 + 0.28 * (1 - np.exp(-since / 1800))
    mem = svc.memory_bytes * (1 + 0.15 * load) * warm * np.exp(_ar1(rng, n, 0.015, 2))
    mem = np.where(regressed, mem * _REGRESSION[3], mem)
    if inst.leak_bytes is not None:
        mem = np.minimum(mem + inst.leak_bytes, _AUTH_MEMORY_LIMIT)
    if svc.leak_mib_per_day:
        days_in = np.maximum(0, np.arange(n) - tl.at(_LEAK_FROM)) * step / 86_400
        mem = mem + svc.leak_mib_per_day * MIB * days_in
    mem = np.round(mem / 4096) * 4096
    out.add("process_resident_memory_bytes", base, mem, off, up)
    start_s = np.round(tl.ts / 1000 - since, 2)
    out.add("process_start_time_seconds", base, start_s, off, up)
    out.add("up", base, up.astype(np.float64), off)
    for vi, version in enumerate(svc.versions):
        running = up & (inst.version_at == vi)
        if running.any():
            out.add("deploy_info", {**base, "version": version}, np.ones(n), off, running)
    if svc.queue:
        depth = rng.poisson(1.0 + 40.0 * load**3 * np.exp(_ar1(rng, n, 0.3, tl.steps(900))))
        out.add(
            "worker_queue_depth", {**base, "queue": svc.queue}, depth.astype(np.float64), off, up
        )
    return {"cores": cores, "mem": mem, "rps": rps, "requests": total}


def _node_series(
    out: _Series, sc: _Scenario, inst: _Instance, app: dict[str, np.ndarray], seed: int
) -> None:
    tl, svc = sc.tl, inst.service
    n, step = tl.n, tl.step_s
    name = f"{inst.host}:9100"
    rng = _rng(seed, "node:" + name)
    base = {"service": svc.name, "instance": name, "job": "node"}
    off = _target_offset(seed, name, step)
    ncpu = svc.cpus
    in_incident = np.zeros(n, bool)
    in_incident[sc.incident[0] : sc.incident[1]] = True
    busy = np.clip(0.03 + app["cores"] / ncpu + 0.01 * rng.standard_normal(n), 0.01, 0.97)
    uptime = float(rng.uniform(20, 90)) * 86_400
    for cpu in range(ncpu):
        u = np.clip(busy * (1 + 0.08 * rng.standard_normal(n)), 0.005, 0.97)
        iowait = np.full(n, 0.004)
        if svc.postgres:
            iowait = 0.01 + 0.05 * u
            if inst.k == 1:  # the slow replica behind the search incident
                iowait = np.where(in_incident, 0.35, iowait)
        iowait = np.minimum(iowait, 0.99 - u)
        fractions = {"user": 0.7 * u, "system": 0.3 * u, "iowait": iowait}
        fractions["idle"] = 1.0 - fractions["user"] - fractions["system"] - iowait
        for mode, frac in fractions.items():
            init = round(uptime * (0.8 if mode == "idle" else 0.2 / 3), 2)
            vals = np.round(_counter(frac * step, [], init), 2)
            out.add("node_cpu_seconds_total", {**base, "cpu": str(cpu), "mode": mode}, vals, off)
    load1 = np.round(busy * ncpu * (1 + 0.15 * rng.standard_normal(n)).clip(0.2), 2)
    if svc.postgres and inst.k == 1:
        load1 = np.where(in_incident, load1 + 3.5, load1)
    out.add("node_load1", base, load1, off)
    total_mem = float(svc.memory_gib * GIB)
    other = (svc.other_memory_gib - 0.25) * GIB
    used = other + app["mem"] + 0.25 * GIB * np.exp(_ar1(rng, n, 0.2, tl.steps(3600)))
    out.add("node_memory_MemTotal_bytes", base, np.full(n, total_mem), off)
    out.add("node_memory_MemAvailable_bytes", base, np.round((total_mem - used) / 4096) * 4096, off)
    disks = [("/dev/vda1", "/", 40 * GIB, 11 * GIB + 0.004 * GIB * (tl.ts - tl.ts[0]) / DAY_MS)]
    if svc.name == "api-gateway":
        # access logs grow with traffic; logrotate deletes old files daily at 00:00 UTC
        written = np.cumsum(app["requests"] * 420.0)
        day_no = (tl.ts - _LOG_ROTATION_HOUR * HOUR_MS) // DAY_MS
        first_of_day = np.searchsorted(day_no, day_no)
        since_rotation = written - np.where(first_of_day > 0, written[first_of_day - 1], 0.0)
        disks.append(("/dev/vdb", "/var/log", 50 * GIB, 3.5 * GIB + since_rotation))
    if svc.postgres:
        # the data disk fills steadily (faster in business hours), about 2.4 % a day
        size = 500 * GIB
        per_day = 0.024 * size * (1.0 if inst.k == 0 else 0.99)
        growth = np.cumsum(app["load"])
        growth = growth / growth[-1] * per_day * tl.days
        start_used = max(0.87 * size - per_day * tl.days, 0.1 * size)
        disks.append(("/dev/vdc", "/var/lib/postgresql", size, start_used + growth))
    for device, mount, size, used_bytes in disks:
        labels = {**base, "device": device, "fstype": "ext4", "mountpoint": mount}
        jitter = np.round(rng.normal(0, 2 * MIB, n))
        avail = np.clip(np.round((size - used_bytes + jitter) / 4096) * 4096, 0, size)
        out.add("node_filesystem_avail_bytes", labels, avail, off)
        out.add("node_filesystem_size_bytes", labels, np.full(n, float(size)), off)
        if mount == "/var/lib/postgresql":
            app["db_bytes"] = np.asarray(used_bytes - 6 * GIB)


def _postgres_series(
    out: _Series, sc: _Scenario, inst: _Instance, tx_rps: np.ndarray, seed: int
) -> dict[str, np.ndarray]:
    tl = sc.tl
    n, step = tl.n, tl.step_s
    name = f"{inst.host}:9187"
    rng = _rng(seed, "pg:" + name)
    base = {"service": "postgres", "instance": name, "job": "postgres"}
    off = _target_offset(seed, name, step)
    commits = rng.poisson(tx_rps * step).astype(np.float64)
    init = float(np.round(commits.mean() * rng.uniform(10, 40) * 86_400 / step))
    out.add("pg_up", base, np.ones(n), off)
    out.add(
        "pg_stat_database_xact_commit_total",
        {**base, "datname": "shop"},
        _counter(commits, [], init),
        off,
    )
    active = 2.0 + 0.004 * tx_rps
    if inst.k == 1:
        active = np.where(
            (np.arange(n) >= sc.incident[0]) & (np.arange(n) < sc.incident[1]), active * 7, active
        )
    out.add(
        "pg_stat_activity_count",
        {**base, "datname": "shop", "state": "active"},
        rng.poisson(active).astype(np.float64),
        off,
    )
    cores = 0.5 + tx_rps * 0.013
    return {"cores": cores, "mem": np.full(n, 16.0 * GIB), "requests": commits}


def _build(
    end_ms: int, days: float, step_s: int, seed: int
) -> tuple[_Timeline, _Series, _Scenario]:
    tl = _Timeline(end_ms, days, step_s)
    sc = _Scenario(tl)
    out = _Series(tl)
    load = _load(tl)
    rps_by_service: dict[str, np.ndarray] = {}
    pg: list[_Instance] = []
    for inst in sc.instances:
        if inst.service.postgres:
            pg.append(inst)
            continue
        app = _app_series(out, sc, inst, load, seed)
        app["load"] = load
        rps_by_service[inst.service.name] = rps_by_service.get(inst.service.name, 0) + app["rps"]
        _node_series(out, sc, inst, app, seed)
    writes = (
        1.8 * (rps_by_service["checkout"] + rps_by_service["payments"])
        + 0.2 * rps_by_service["auth"]
    )
    reads = 1.2 * rps_by_service["search"]
    for inst in pg:
        tx = writes + 0.1 * reads if inst.k == 0 else reads
        app = _postgres_series(out, sc, inst, tx, seed)
        app["load"] = load
        _node_series(out, sc, inst, app, seed)
        db = np.round(app["db_bytes"] / 8192) * 8192
        out.add(
            "pg_database_size_bytes",
            {
                "service": "postgres",
                "instance": f"{inst.host}:9187",
                "job": "postgres",
                "datname": "shop",
            },
            db,
            _target_offset(seed, f"{inst.host}:9187", step_s),
        )
    return tl, out, sc


def demo_events(*, end_ms: int, days: float = 14, step_s: int = 60) -> list[DemoEvent]:
    """The scenario's events for the same arguments as ``generate_demo`` (seed-independent)."""
    return list(_Scenario(_Timeline(end_ms, days, step_s)).events)


def demo_tour(events: list[DemoEvent]) -> list[tuple[str, list[str]]]:
    """What to look at in the demo data: (what it shows, ``perfintel`` arguments that show it).

    The incident's root cause is asked ten minutes into it, over the services it
    touches; a regressing deploy's impact is read from its ``deploy_info`` annotation.
    """
    from datetime import UTC, datetime

    def rfc3339(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    tour: list[tuple[str, list[str]]] = []
    for e in events:
        if e.kind == "incident":
            scope = "|".join(_INCIDENT_SCOPE)
            at = min(e.start_ms + 10 * 60_000, e.end_ms)
            tour.append(
                (
                    f"why {e.service} failed at {rfc3339(e.start_ms)}",
                    ["analyze", "root-cause", f'{{service=~"{scope}"}}', "--time", rfc3339(at)],
                )
            )
        elif e.kind == "deploy" and e.service == _REGRESSION[0] and _REGRESSION[1] in e.detail:
            tour.append(
                (
                    f"what {e.service}'s {e.detail.removeprefix('rolling ')} did to its latency",
                    [
                        "analyze",
                        "change-impact",
                        # the mean latency: the sum alone moves with traffic as much
                        f'rate(http_request_duration_seconds_sum{{service="{e.service}"}}[5m])'
                        f' / rate(http_request_duration_seconds_count{{service="{e.service}"}}[5m])',
                        "--annotation",
                        f'deploy_info{{service="{e.service}"}}',
                    ],
                )
            )
    tour.append(("over- and under-sized hosts, leaks, a filling disk", ["analyze", "recommend"]))
    return tour


def generate_demo(
    *, end_ms: int, days: float = 14, step_s: int = 60, seed: int = 0, batch_hours: float = 6
) -> Iterator[SampleBatch]:
    """Yield the demo data set in time order, one batch per ``batch_hours`` of data.

    Every batch holds all series that have samples in its window; samples are
    grouped by series and in timestamp order within each series. Timestamps are
    at most ``end_ms``.

    >>> batches = list(generate_demo(end_ms=1_700_000_000_000, days=0.5, step_s=300))
    >>> sum(len(b) for b in batches) > 50_000
    True
    """
    tl, out, _ = _build(end_ms, days, step_s, seed)
    values = np.stack(out.values)
    present = np.stack([np.ones(tl.n, bool) if m is None else m for m in out.masks])
    offsets = np.asarray(out.offsets, dtype=np.int64)
    chunk = max(1, int(batch_hours * 3600 // step_s))
    for a in range(0, tl.n, chunk):
        b = min(a + chunk, tl.n)
        mask = present[:, a:b]
        keep = np.flatnonzero(mask.any(axis=1))
        m = mask[keep].ravel()
        width = b - a
        idx = np.repeat(np.arange(len(keep), dtype=np.int32), width)[m]
        ts = (tl.ts[a:b][None, :] + offsets[keep][:, None]).ravel()[m]
        yield SampleBatch([out.labels[i] for i in keep], idx, ts, values[keep, a:b].ravel()[m])


#: Help texts of the demo's metric families (node_* ones come from the host collector's table)
DEMO_HELP = {
    "http_requests_total": "Total HTTP requests served, by status code and method.",
    "http_request_duration_seconds": "Time spent serving HTTP requests.",
    "app_errors_total": "Application errors, by kind.",
    "process_cpu_seconds_total": "Total user and system CPU time spent in seconds.",
    "process_resident_memory_bytes": "Resident memory size in bytes.",
    "process_start_time_seconds": "Start time of the process since unix epoch in seconds.",
    "up": "Whether the target was reachable at the last scrape.",
    "deploy_info": "The version running (1 while it runs).",
    "worker_queue_depth": "Jobs waiting in the worker queue.",
    "pg_up": "Whether the last scrape of the database was able to connect.",
    "pg_stat_database_xact_commit_total": "Number of transactions in this database committed.",
    "pg_stat_activity_count": "Number of connections in this state.",
    "pg_database_size_bytes": "Disk space used by the database.",
}


def demo_metadata(batch: SampleBatch) -> dict[str, MetricMetadata]:
    """Type and help of the metric families in ``batch``, sent with the demo's remote writes
    (as Prometheus sends metadata) so ``/api/v1/metadata`` describes them."""
    from perfintel.collect.host import HELP as NODE_HELP

    names = {dict(ls)["__name__"] for ls in batch.series}
    return conventional_metadata(names, {**NODE_HELP, **DEMO_HELP})
