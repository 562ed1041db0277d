"""Generated microservice incidents with known root causes (for root-cause benchmarks).

:func:`generate_incident` builds, from a seed and an :class:`IncidentProfile`,
a small system of services and what its metrics looked like around a fault:

* a **dependency graph** (``layered``: tiers of services calling deeper tiers;
  ``tree``: every service has one caller; ``mesh``: a random DAG with shared
  backends), service 0 being the front end;
* per instance of each service: ``requests_total``, ``errors_total`` and
  ``cpu_seconds_total`` (counters), ``request_latency_seconds``,
  ``memory_bytes`` and ``pool_in_use`` (gauges);
* a **structural model** of one-minute steps: front-end traffic with a daily
  and a weekly cycle and its own AR(1) noise flows down the graph (each call
  edge with its fan-out); a service's CPU follows its traffic, its own latency
  grows with its CPU utilisation and its pool occupancy, and its observed
  latency adds the latency of its callees seen ``lag`` steps earlier (each
  edge: a lag and the fraction of requests that wait on that callee, which
  attenuates a fault as it travels up); pool occupancy is traffic × latency
  (Little's law) capped at the pool size; errors follow timeouts and the
  callees' errors; memory drifts slowly; every metric has multiplicative AR(1)
  noise;
* one **fault** at a root series: ``level_shift`` (CPU burnt by a runaway
  task, or the service's own latency stepping up), ``spike`` (a few minutes of
  very slow requests or a CPU burst), ``leak`` (memory growing steadily,
  slowing the service as it goes) or ``saturation`` (the pool fills to its cap
  and requests queue for it). The fault enters the structural model, so it
  reaches the root service's other metrics and its callers' latency and errors
  through the same equations as normal traffic does;
* **background anomalies** that do not propagate, at random times around the
  incident: a step, a spike or a ramp in a series of a service the fault does
  not reach (a batch job, a cron, a noisy neighbour).

The alert time (``time_ms``) is when the front end's latency first exceeds
its pre-fault median by five robust sigmas, or ``lead_steps`` (drawn) after
the onset when the fault never reaches it; the data goes on for
``after_steps`` (drawn) after that. Everything is a pure function of
``(seed, profile)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy.signal import lfilter

from perfintel.analysis.signals import SeriesInput
from perfintel.model import label_set

FAULT_KINDS = ("level_shift", "spike", "leak", "saturation")
METRICS = (
    "requests_total",
    "errors_total",
    "cpu_seconds_total",
    "request_latency_seconds",
    "memory_bytes",
    "pool_in_use",
)
DAY_STEPS = 1440
EPOCH_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@dataclass(frozen=True)
class IncidentProfile:
    """The ranges a generated incident draws from (a second profile is a second generator)."""

    name: str = "default"
    graph: str = "layered"  # layered | tree | mesh
    services: tuple[int, int] = (8, 16)
    instances: tuple[int, int] = (1, 3)
    step_s: int = 60
    span_steps: int = 360
    #: propagation lag per call edge, in steps (inclusive range)
    edge_lag: tuple[int, int] = (1, 3)
    #: lag from a service's resources (CPU, pool, memory) to its own latency and errors
    inner_lag: tuple[int, int] = (1, 2)
    #: fraction of a caller's requests that wait on a callee
    wait_share: tuple[float, float] = (0.4, 0.9)
    noise: tuple[float, float] = (0.02, 0.07)
    noise_tau: tuple[float, float] = (1.0, 8.0)
    heavy_tails: bool = False
    background: tuple[int, int] = (1, 3)
    #: fault onset, steps before the alert at the earliest/latest
    lead_steps: tuple[int, int] = (3, 20)
    #: steps of data after the alert time
    after_steps: tuple[int, int] = (0, 10)
    missing_fraction: float = 0.0


DEFAULT_PROFILE = IncidentProfile()
#: a second generator: other graph shapes, longer and more varied lags, heavier noise
VARIANT_PROFILE = IncidentProfile(
    name="variant",
    graph="mesh",
    services=(6, 24),
    instances=(1, 4),
    edge_lag=(0, 5),
    inner_lag=(0, 3),
    wait_share=(0.25, 0.95),
    noise=(0.03, 0.12),
    noise_tau=(1.0, 20.0),
    heavy_tails=True,
    background=(2, 5),
    lead_steps=(2, 25),
    after_steps=(0, 20),
    missing_fraction=0.01,
)


#: the variant without zero lags: separates the harder noise and shapes from the ambiguity
#: of a cause and its effect moving in the same step
VARIANT_LAGGED_PROFILE = replace(
    VARIANT_PROFILE, name="variant-lagged", edge_lag=(1, 5), inner_lag=(1, 3)
)
PROFILES = {p.name: p for p in (DEFAULT_PROFILE, VARIANT_PROFILE, VARIANT_LAGGED_PROFILE)}


@dataclass
class Incident:
    """One generated incident: the series on a grid and the ground truth.

    ``series[i].values`` has one value per step of ``start_ms + step_ms * k``.
    ``root`` indexes the faulty series, ``affected`` the root and the latency
    series of every service the fault can reach (its callers, transitively),
    ``background`` the series with unrelated anomalies. ``callees[s]`` lists the services that service ``s`` calls
    (``services[s]`` is its name).
    """

    seed: int
    profile: str
    kind: str
    start_ms: int
    step_ms: int
    series: list[SeriesInput]
    root: int
    onset_ms: int
    time_ms: int
    services: list[str]
    callees: list[list[int]]
    affected: list[int] = field(default_factory=list)
    background: list[int] = field(default_factory=list)

    @property
    def timestamps(self) -> np.ndarray:
        n = len(self.series[0].values) if self.series else 0
        return self.start_ms + self.step_ms * np.arange(n, dtype=np.int64)


# -- structure ---------------------------------------------------------------------------


def _graph(rng: np.random.Generator, n: int, shape: str) -> list[list[int]]:
    """Callees of each service; callees always have a larger index (a DAG, 0 = front end)."""
    callees: list[list[int]] = [[] for _ in range(n)]
    if shape == "tree":
        for j in range(1, n):
            callees[int(rng.integers(0, j))].append(j)
    elif shape == "mesh":
        for j in range(1, n):
            callers = rng.choice(j, size=min(j, int(rng.integers(1, 4))), replace=False)
            for i in callers:
                callees[int(i)].append(j)
    else:  # layered tiers, each calling one to three services of deeper tiers
        layers = max(3, min(5, n // 3))
        cuts = np.sort(rng.choice(np.arange(2, n), size=layers - 2, replace=False))
        tier = 1 + np.searchsorted(cuts, np.arange(n), side="right")
        tier[0] = 0
        for j in range(1, n):
            shallower = np.flatnonzero(tier < tier[j])
            callers = rng.choice(
                shallower, size=min(shallower.size, int(rng.integers(1, 3))), replace=False
            )
            for i in callers:
                callees[int(i)].append(j)
    return [sorted(set(c)) for c in callees]


def _noise(rng: np.random.Generator, n: int, sd: float, tau: float, heavy: bool) -> np.ndarray:
    """Stationary AR(1) noise (Student-t innovations with 3 dof when ``heavy``)."""
    phi = float(np.exp(-1.0 / max(tau, 1e-6)))
    eps = rng.standard_t(3, n) / np.sqrt(3.0) if heavy else rng.standard_normal(n)
    return np.asarray(lfilter([1.0], [1.0, -phi], eps * sd * np.sqrt(1 - phi * phi)))


def _shift(x: np.ndarray, lag: int) -> np.ndarray:
    """``x`` seen ``lag`` steps later (the first values repeated)."""
    if lag <= 0:
        return x
    return np.r_[np.full(lag, x[0]), x[:-lag]]


@dataclass
class _Fault:
    kind: str
    service: int
    instance: int
    metric: str
    onset: int
    size: float
    duration: int

    def profile(self, n: int) -> np.ndarray:
        """The fault's time course, 0 before the onset (shape per kind, scaled by ``size``)."""
        t = np.arange(n) - self.onset
        out = np.zeros(n)
        on = t >= 0
        if self.kind == "spike":
            out[on & (t < self.duration)] = self.size
        elif self.kind == "leak":
            out[on] = self.size * t[on] / max(self.duration, 1)
        elif self.kind == "saturation":
            out[on] = self.size * np.minimum(1.0, (t[on] + 1) / max(self.duration, 1))
        else:
            out[on] = self.size
        return out


# -- the model ---------------------------------------------------------------------------


def generate_incident(seed: int, profile: IncidentProfile = DEFAULT_PROFILE) -> Incident:
    """One incident (see the module docstring); deterministic in ``(seed, profile)``."""
    rng = np.random.default_rng([seed, sum(map(ord, profile.name))])
    n_svc = int(rng.integers(profile.services[0], profile.services[1] + 1))
    callees = _graph(rng, n_svc, profile.graph)
    callers: list[list[int]] = [[] for _ in range(n_svc)]
    for i, cs in enumerate(callees):
        for j in cs:
            callers[j].append(i)
    n = profile.span_steps
    step_ms = profile.step_s * 1000
    day_steps = round(86_400 / profile.step_s)
    t0 = int(rng.integers(0, 7 * day_steps))  # position in the week of the first step
    tt = np.arange(t0, t0 + n)
    phase = 2 * np.pi * tt / day_steps
    daily = 1.0 + 0.45 * np.sin(phase - 2.0) + 0.12 * np.sin(2 * phase + 0.5)
    weekday = (tt // day_steps) % 7
    curve = daily * np.where(weekday >= 5, 0.7, 1.0)
    instances = [
        int(rng.integers(profile.instances[0], profile.instances[1] + 1)) for _ in range(n_svc)
    ]

    def noise(sd_scale: float = 1.0) -> np.ndarray:
        sd = float(rng.uniform(*profile.noise)) * sd_scale
        tau = float(rng.uniform(*profile.noise_tau))
        return _noise(rng, n, sd, tau, profile.heavy_tails)

    # traffic flows down the graph (callers first)
    rate = [np.zeros(n) for _ in range(n_svc)]
    rate[0] = float(rng.uniform(50, 400)) * curve * np.exp(noise())
    fanout = {(i, j): float(rng.uniform(0.3, 1.5)) for i in range(n_svc) for j in callees[i]}
    for j in range(1, n_svc):
        rate[j] = sum((rate[i] * fanout[(i, j)] for i in callers[j]), np.zeros(n)) * np.exp(
            noise(0.5)
        )
    lag = {
        (i, j): int(rng.integers(profile.edge_lag[0], profile.edge_lag[1] + 1)) for (i, j) in fanout
    }
    wait = {(i, j): float(rng.uniform(*profile.wait_share)) for (i, j) in fanout}

    # the fault
    kind = FAULT_KINDS[int(rng.integers(0, len(FAULT_KINDS)))]
    root_svc = int(rng.integers(0, n_svc))
    root_inst = int(rng.integers(0, instances[root_svc]))
    lead = int(rng.integers(profile.lead_steps[0], profile.lead_steps[1] + 1))
    after = int(rng.integers(profile.after_steps[0], profile.after_steps[1] + 1))
    alert_guess = n - 1 - after
    onset = alert_guess - lead
    metric = {
        "level_shift": ("cpu_seconds_total", "request_latency_seconds")[int(rng.integers(0, 2))],
        "spike": ("cpu_seconds_total", "request_latency_seconds")[int(rng.integers(0, 2))],
        "leak": "memory_bytes",
        "saturation": "pool_in_use",
    }[kind]
    size = {
        "level_shift": float(rng.uniform(0.6, 2.5)),
        "spike": float(rng.uniform(2.0, 8.0)),
        "leak": float(rng.uniform(0.3, 1.2)),
        "saturation": 1.0,
        # sizes are relative: to CPU use, own latency, memory, pool headroom
    }[kind]
    duration = {
        "spike": int(rng.integers(1, 5)),
        "leak": max(lead, 10),
        "saturation": int(rng.integers(1, 4)),
    }.get(kind, 0)
    fault = _Fault(kind, root_svc, root_inst, metric, onset, size, duration)
    fault_course = fault.profile(n)
    inner = {
        s: int(rng.integers(profile.inner_lag[0], profile.inner_lag[1] + 1)) for s in range(n_svc)
    }

    # per instance: CPU, pool, memory, own latency; observed latency bottom-up
    base_latency = [float(rng.uniform(0.005, 0.08)) for _ in range(n_svc)]
    latency = [[np.zeros(n)] * instances[s] for s in range(n_svc)]
    errors_rate = [[np.zeros(n)] * instances[s] for s in range(n_svc)]
    out: dict[tuple[int, int, str], np.ndarray] = {}
    for s in range(n_svc - 1, -1, -1):
        cores = float(rng.choice([2, 4, 8, 16]))
        per_req_cpu = (
            float(rng.uniform(0.3, 0.7))
            * cores
            / max(float(np.max(rate[s])), 1e-9)
            / max(instances[s], 1)
        )
        pool_size = float(rng.choice([20, 50, 100, 200]))
        mem_base = float(rng.uniform(0.2, 4.0)) * 2**30
        lats = []
        errs = []
        for k in range(instances[s]):
            share = rate[s] / instances[s] * np.exp(noise(0.3))
            is_root = s == root_svc and k == root_inst
            cpu = (0.05 * cores + per_req_cpu * share) * np.exp(noise())
            if is_root and metric == "cpu_seconds_total":
                cpu = cpu + float(np.mean(cpu)) * fault_course
            util = np.minimum(cpu / cores, 0.999)
            mem = mem_base * (1 + 0.02 * (tt - t0) / n) * np.exp(noise(0.3))
            mem_pressure = np.zeros(n)
            if is_root and kind == "leak":
                mem = mem + mem_base * fault_course
                mem_pressure = fault_course
            own = base_latency[s] * (1 + 2.0 * _shift(util, inner[s]) ** 3) * np.exp(noise())
            own = own * (1 + 1.5 * _shift(mem_pressure, inner[s]))
            if is_root and metric == "request_latency_seconds":
                own = own * (1 + fault_course)
            if is_root and metric == "cpu_seconds_total":
                own = own * (1 + 0.6 * _shift(fault_course, inner[s]) * (1 + 2 * util))
            total = own.copy()
            err = 0.002 * np.exp(noise())
            for c in callees[s]:
                lc = np.mean(latency[c], axis=0)
                total = total + wait[(s, c)] * _shift(lc, lag[(s, c)])
                err = err + 0.5 * wait[(s, c)] * _shift(
                    np.mean(errors_rate[c], axis=0), lag[(s, c)]
                )
            # what the service's own metrics see of its latency comes one inner lag later
            seen = _shift(total, inner[s])
            typical = float(np.median(share * seen))
            pool = np.minimum(pool_size, share * seen * pool_size * 0.3 / max(typical, 1e-12))
            if is_root and kind == "saturation":
                headroom = np.maximum(pool_size - pool, 0.0)
                pool = pool + headroom * fault_course
                wait_extra = 4.0 * base_latency[s] * _shift(fault_course, inner[s])
                total = total + wait_extra
            saturated = _shift((pool >= 0.98 * pool_size).astype(np.float64), inner[s])
            err = err + 0.05 * saturated
            slow = _shift(total, inner[s]) / (np.median(total) + 1e-12)
            err = err + 0.01 * np.maximum(slow - 2.0, 0.0)
            pool = np.minimum(pool * np.exp(noise(0.5)), pool_size)
            lats.append(total)
            errs.append(err)
            out[(s, k, "requests_total")] = share
            out[(s, k, "errors_total")] = share * np.minimum(err, 1.0)
            out[(s, k, "cpu_seconds_total")] = cpu
            out[(s, k, "request_latency_seconds")] = total
            out[(s, k, "memory_bytes")] = mem
            out[(s, k, "pool_in_use")] = np.round(pool)
        latency[s] = lats
        errors_rate[s] = errs

    # which series did the fault move: compare with a fault-free twin would double the cost;
    # the services whose latency depends on the root's (callers, transitively) and the root's own
    reached = {root_svc}
    frontier = [root_svc]
    while frontier:
        c = frontier.pop()
        for i in callers[c]:
            if i not in reached:
                reached.add(i)
                frontier.append(i)

    # the alert: when the front end's latency first leaves its pre-fault range
    fe = np.mean(latency[0], axis=0)
    pre = fe[: max(onset, 10)]
    med = float(np.median(pre))
    mad = 1.4826 * float(np.median(np.abs(pre - med))) + 1e-12
    hit = np.flatnonzero((np.arange(n) >= onset) & (fe > med + 5 * mad))
    alert = int(hit[0]) if 0 in reached and hit.size and hit[0] <= alert_guess else alert_guess
    alert = max(alert, onset + profile.lead_steps[0])

    # series, labels, counters
    names = [f"svc-{s:02d}" for s in range(n_svc)]
    series: list[SeriesInput] = []
    index: dict[tuple[int, int, str], int] = {}
    for s in range(n_svc):
        for k in range(instances[s]):
            for m in METRICS:
                v = out[(s, k, m)]
                counter = m.endswith("_total")
                if counter:
                    per_step = np.maximum(v, 0) * profile.step_s
                    if m != "cpu_seconds_total":
                        per_step = rng.poisson(per_step).astype(np.float64)
                    v = float(rng.uniform(1e3, 1e6)) + np.cumsum(per_step)
                labels = label_set(
                    {"__name__": m, "service": names[s], "instance": f"{names[s]}-{k}:9100"}
                )
                index[(s, k, m)] = len(series)
                series.append(SeriesInput(labels, v, counter))

    root = index[(root_svc, root_inst, metric)]
    affected = sorted(
        {root}
        | {index[(s, k, "request_latency_seconds")] for s in reached for k in range(instances[s])}
    )

    # background anomalies, outside the services the fault reaches
    bg_candidates = [
        i for i, si in enumerate(series) if _service_of(si) not in {names[s] for s in reached}
    ]
    n_bg = int(rng.integers(profile.background[0], profile.background[1] + 1))
    background: list[int] = []
    if bg_candidates:
        for i in rng.choice(bg_candidates, size=min(n_bg, len(bg_candidates)), replace=False):
            i = int(i)
            background.append(i)
            series[i] = _with_background(rng, series[i], n, alert, profile)

    if profile.missing_fraction > 0:
        for i, si in enumerate(series):
            v = si.values.copy()
            gone = rng.random(n) < profile.missing_fraction
            gone[[0, -1]] = False
            v[gone] = np.nan
            series[i] = SeriesInput(si.labels, v, si.counter)

    start_ms = EPOCH_MS + t0 * step_ms
    return Incident(
        seed,
        profile.name,
        kind,
        start_ms,
        step_ms,
        series,
        root,
        start_ms + onset * step_ms,
        start_ms + alert * step_ms,
        names,
        callees,
        affected,
        sorted(background),
    )


def _service_of(s: SeriesInput) -> str:
    return dict(s.labels).get("service", "")


def _with_background(
    rng: np.random.Generator, s: SeriesInput, n: int, alert: int, profile: IncidentProfile
) -> SeriesInput:
    """``s`` with an unrelated anomaly (step, spike or ramp) starting near the incident."""
    lo = max(1, alert - profile.lead_steps[1] - 15)
    start = int(rng.integers(lo, min(n - 1, alert + 5)))
    shape = ("step", "spike", "ramp")[int(rng.integers(0, 3))]
    v = s.values.copy()
    level = np.diff(v) if s.counter else v
    base = level[: max(start - 1, 5)]
    spread = float(np.std(np.diff(base))) / np.sqrt(2) + 1e-9 * (abs(float(np.mean(base))) + 1)
    size = float(rng.uniform(6, 25)) * spread * (1 if rng.random() < 0.7 else -1)
    t = np.arange(level.size) - start
    if shape == "step":
        bump = np.where(t >= 0, size, 0.0)
    elif shape == "spike":
        bump = np.where((t >= 0) & (t < int(rng.integers(1, 4))), size * 2, 0.0)
    else:
        bump = np.where(t >= 0, size * t / 10, 0.0)
    if s.counter:
        inc = np.maximum(np.diff(v) + bump, 0)
        v = np.r_[v[0], v[0] + np.cumsum(inc)]
    else:
        v = v + bump
        if np.all(s.values >= 0):
            v = np.maximum(v, 0)
    return SeriesInput(s.labels, v, s.counter)


def generate_incidents(
    seeds: range | list[int], profile: IncidentProfile = DEFAULT_PROFILE
) -> list[Incident]:
    return [generate_incident(s, profile) for s in seeds]
