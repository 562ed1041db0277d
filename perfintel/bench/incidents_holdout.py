"""A third incident generator, written apart from :mod:`perfintel.bench.incidents`, held out.

Nothing in :mod:`perfintel.analysis.rootcause` is chosen on it: it exists so
the root-cause benchmark can show how the method does on incidents shaped by
code its constants never saw. It shares only the :class:`Incident` container
with the other generator; the system, the metrics, the noise and the faults
are built differently:

* **topology**: ``chain`` (a request pipeline), ``star`` (a gateway over many
  backends), ``bipartite`` (front ends over shared backends, then stores) or
  ``deep`` (a random tree up to six levels); services run one to three
  containers placed on two to six hosts, so the labels carry
  ``service`` → ``host`` → ``container``;
* **metrics** per container: ``container_cpu_usage_seconds_total``,
  ``http_server_requests_total``, ``http_server_errors_total`` (counters,
  scraped as cumulative values, one of them possibly restarting from zero),
  ``http_server_duration_p99_seconds`` and
  ``container_memory_working_set_bytes`` (gauges), ``db_pool_active`` for
  the services that are data stores; per host ``node_cpu_busy_seconds_total``
  (counter) and ``node_memory_used_bytes``;
* **seasonality and noise**: 30-second steps, a daily cycle of random phase
  and amplitude plus an hourly "cron" harmonic; noise is multiplicative
  Laplace (heavy-ish tails) plus a slow random walk, and one series in fifty
  has occasional isolated outliers;
* **propagation**: a latency increase travels from callee to caller with a
  lag drawn from a geometric law that is zero a third of the time, attenuated
  by a per-edge factor (0.3–1.0); errors follow when latency passes a timeout;
  within a container, CPU and pool pressure reach latency after 0–2 steps;
  host CPU steal reaches every container on that host;
* **faults** (the root is one series): ``level_shift`` (a container's CPU
  stepping up over 0–2 steps, a bad deploy raising a service's own latency, or
  a noisy neighbour on a host's CPU), ``spike`` (an exponentially decaying
  burst of latency or CPU), ``leak`` (memory growing linearly or accelerating,
  slowing requests only past a pressure point, so the effect starts later) and
  ``saturation`` (a data store's pool filling to its cap along a logistic
  curve);
* **background**: two to four anomalies in series of services and hosts the
  fault does not reach (a step, a decaying burst or a ramp, either sign), and
  half a percent of scrapes missing plus, sometimes, a two-to-four-step outage
  of one series.

The alert time is when any service's latency first exceeds its pre-fault
median by six robust sigmas (at least two steps after the onset), else three
to twenty steps after the onset. Deterministic in the seed.
"""

from __future__ import annotations

import numpy as np

from perfintel.analysis.signals import SeriesInput
from perfintel.model import label_set

from .incidents import EPOCH_MS, FAULT_KINDS, Incident

PROFILE_NAME = "holdout"
STEP_S = 30
SPAN = 480  # 4 hours of 30-second steps
DAY = 86_400 // STEP_S


def _topology(rng: np.random.Generator, n: int, shape: str) -> list[list[int]]:
    """Callees per service (callees have larger indices; 0 is the entry point)."""
    callees: list[list[int]] = [[] for _ in range(n)]
    if shape == "chain":
        for j in range(1, n):
            callees[j - 1].append(j)
            if j >= 2 and rng.random() < 0.2:  # an occasional skip
                callees[j - 2].append(j)
    elif shape == "star":
        for j in range(1, n):
            parent = 0 if rng.random() < 0.75 else int(rng.integers(1, j)) if j > 1 else 0
            callees[parent].append(j)
    elif shape == "bipartite":
        fronts = max(1, n // 3)
        stores = max(1, n // 4)
        mids = list(range(fronts, n - stores))
        for f in range(1, fronts):
            callees[0].append(f)
        for f in range(fronts):
            for m in rng.choice(mids, size=min(len(mids), int(rng.integers(1, 4))), replace=False):
                callees[f].append(int(m))
        for m in mids:
            for s in rng.choice(
                np.arange(n - stores, n), size=int(rng.integers(1, stores + 1)), replace=False
            ):
                callees[m].append(int(s))
    else:  # deep: a random tree with a depth bias
        depth = [0] * n
        for j in range(1, n):
            weights = np.array([1.0 + (depth[i] < 6) * depth[i] for i in range(j)])
            parent = int(rng.choice(j, p=weights / weights.sum()))
            callees[parent].append(j)
            depth[j] = depth[parent] + 1
    return [sorted(set(c)) for c in callees]


def _lag(rng: np.random.Generator) -> int:
    """Zero a third of the time, otherwise geometric (mean about 2.5 steps), at most 8."""
    if rng.random() < 1 / 3:
        return 0
    return int(min(8, rng.geometric(0.4)))


def _delay(x: np.ndarray, k: int) -> np.ndarray:
    return x if k <= 0 else np.concatenate([np.full(k, x[0]), x[:-k]])


def _fault_course(rng: np.random.Generator, kind: str, n: int, onset: int) -> np.ndarray:
    """0 before the onset, rising to about 1 (spikes: a decaying burst)."""
    t = np.arange(n, dtype=np.float64) - onset
    out = np.zeros(n)
    on = t >= 0
    if kind == "level_shift":
        rise = int(rng.integers(0, 3))
        out[on] = np.minimum(1.0, (t[on] + 1) / (rise + 1))
    elif kind == "spike":
        tau = float(rng.uniform(1.0, 4.0))
        out[on] = np.exp(-t[on] / tau)
    elif kind == "leak":
        length = float(rng.uniform(15, 40))
        power = float(rng.choice([1.0, 1.6]))
        out[on] = (t[on] / length) ** power
    else:  # saturation: logistic fill
        mid = float(rng.uniform(1.0, 4.0))
        out[on] = 1 / (1 + np.exp(-(t[on] - mid) * 1.5))
        out[on] = (out[on] - out[on][0]) / (1 - out[on][0])
    return out


def generate_holdout_incident(seed: int) -> Incident:
    """One incident of the held-out generator (see the module docstring)."""
    rng = np.random.default_rng([seed, 7_777_331])
    shape = ("chain", "star", "bipartite", "deep")[int(rng.integers(0, 4))]
    n_svc = int(rng.integers(5, 21))
    callees = _topology(rng, n_svc, shape)
    callers: list[list[int]] = [[] for _ in range(n_svc)]
    for i, cs in enumerate(callees):
        for j in cs:
            callers[j].append(i)
    n = SPAN
    t0 = int(rng.integers(0, 7 * DAY))
    tt = np.arange(t0, t0 + n, dtype=np.float64)
    daily = 1 + float(rng.uniform(0.2, 0.6)) * np.sin(
        2 * np.pi * tt / DAY + float(rng.uniform(0, 2 * np.pi))
    )
    hourly = 1 + float(rng.uniform(0.03, 0.12)) * np.sin(2 * np.pi * tt / 120)

    def noise(scale: float) -> np.ndarray:
        """Multiplicative: Laplace white noise and a slow random walk."""
        white = rng.laplace(0, scale / np.sqrt(2), n)
        walk = np.cumsum(rng.normal(0, scale * 0.05, n))
        return np.exp(white + walk - walk.mean())

    n_hosts = int(rng.integers(2, 7))
    containers = [int(rng.integers(1, 4)) for _ in range(n_svc)]
    host_of = {
        (s, k): int(rng.integers(0, n_hosts)) for s in range(n_svc) for k in range(containers[s])
    }
    stores = {s for s in range(n_svc) if not callees[s] and rng.random() < 0.6}
    attenuation = {(i, j): float(rng.uniform(0.3, 1.0)) for i in range(n_svc) for j in callees[i]}
    lag = {e: _lag(rng) for e in attenuation}
    inner = {s: min(2, _lag(rng)) for s in range(n_svc)}

    # traffic: the entry point's, split down the graph
    traffic = [np.zeros(n) for _ in range(n_svc)]
    traffic[0] = float(rng.uniform(20, 300)) * daily * hourly * noise(0.03)
    for j in range(1, n_svc):
        if not callers[j]:  # nobody calls it: a batch or internal service with its own load
            traffic[j] = float(rng.uniform(5, 50)) * daily * noise(0.04)
            continue
        traffic[j] = sum(
            (traffic[i] * float(rng.uniform(0.5, 2.0)) for i in callers[j]), np.zeros(n)
        ) * noise(0.02)

    # the fault
    kind = FAULT_KINDS[int(rng.integers(0, 4))]
    after = int(rng.integers(0, 16))
    lead_guess = int(rng.integers(3, 21)) if kind != "leak" else int(rng.integers(15, 36))
    onset = n - 1 - after - lead_guess
    course = _fault_course(rng, kind, n, onset)
    if kind == "saturation":
        if not stores:
            stores.add(n_svc - 1)
        root_svc = int(rng.choice(sorted(stores)))
        target = "pool"
    elif kind == "leak":
        root_svc = int(rng.integers(0, n_svc))
        target = "memory"
    else:
        target = ("cpu", "latency", "host")[int(rng.integers(0, 3))]
        root_svc = int(rng.integers(0, n_svc))
    root_ctr = int(rng.integers(0, containers[root_svc]))
    root_host = host_of[(root_svc, root_ctr)]
    size = {
        "level_shift": float(rng.uniform(0.5, 2.0)),
        "spike": float(rng.uniform(2.0, 6.0)),
        "leak": float(rng.uniform(0.4, 1.5)),
        "saturation": 1.0,
    }[kind]

    # host CPU (busy cores): the containers' CPU plus other tenants; a noisy neighbour adds steal
    host_cores = [float(rng.choice([8, 16, 32])) for _ in range(n_hosts)]
    host_other = [c * float(rng.uniform(0.1, 0.3)) * daily * noise(0.04) for c in host_cores]
    steal = [np.zeros(n) for _ in range(n_hosts)]
    if target == "host" and kind in ("level_shift", "spike"):
        extra = host_cores[root_host] * 0.3 * size * course
        host_other[root_host] = host_other[root_host] + extra
        steal[root_host] = 0.4 * size * course

    vals: dict[tuple[str, int, int], np.ndarray] = {}
    latency_of: list[np.ndarray] = [np.zeros(n)] * n_svc
    errors_of: list[np.ndarray] = [np.zeros(n)] * n_svc
    host_busy = [h.copy() for h in host_other]
    for s in range(n_svc - 1, -1, -1):
        base = float(rng.uniform(0.01, 0.3))
        timeout = base * float(rng.uniform(4, 10))
        cap = float(rng.choice([16, 32, 64]))
        lats, errs = [], []
        for k in range(containers[s]):
            h = host_of[(s, k)]
            root_here = s == root_svc and k == root_ctr
            share = traffic[s] / containers[s] * noise(0.02)
            cpu = (0.05 + float(rng.uniform(0.2, 1.0)) * share / traffic[s].max()) * noise(0.05)
            mem = float(rng.uniform(0.1, 2.0)) * 2**30 * noise(0.01)
            pressure = np.zeros(n)
            if root_here and target == "cpu" and kind in ("level_shift", "spike"):
                cpu = cpu + float(cpu.mean()) * size * course
                pressure = pressure + 0.7 * size * course
            if root_here and kind == "leak":
                mem = mem * (1 + size * course)
                # GC pressure only once the heap is 30 % above its usual size
                pressure = pressure + 2.0 * np.maximum(size * course - 0.3, 0.0)
            pool = np.zeros(n)
            if s in stores:
                pool = np.minimum(cap, cap * float(rng.uniform(0.1, 0.4)) * share / share.mean())
                pool = np.minimum(cap, np.round(pool * noise(0.05)))
                if root_here and kind == "saturation":
                    pool = np.round(pool + (cap - pool) * course)
                    pressure = pressure + 3.0 * course
                vals[("db_pool_active", s, k)] = pool
            own = base * (1 + _delay(pressure + steal[h], inner[s])) * noise(0.06)
            if root_here and target == "latency" and kind in ("level_shift", "spike"):
                own = own * (1 + size * course)
            total = own.copy()
            for c in callees[s]:
                extra = latency_of[c] - float(np.median(latency_of[c][: onset - 5]))
                total = total + attenuation[(s, c)] * _delay(np.maximum(extra, 0), lag[(s, c)])
                total = total + 0.3 * float(np.median(latency_of[c][: onset - 5]))
            err_rate = 0.001 * noise(0.3) + 0.3 * np.clip(total / timeout - 1, 0, 1)
            for c in callees[s]:
                err_rate = err_rate + 0.5 * attenuation[(s, c)] * _delay(errors_of[c], lag[(s, c)])
            err_rate = np.minimum(err_rate, 1.0)
            host_busy[h] = host_busy[h] + cpu
            lats.append(total)
            errs.append(err_rate)
            vals[("container_cpu_usage_seconds_total", s, k)] = cpu
            vals[("http_server_requests_total", s, k)] = share
            vals[("http_server_errors_total", s, k)] = share * err_rate
            vals[("http_server_duration_p99_seconds", s, k)] = total
            vals[("container_memory_working_set_bytes", s, k)] = mem
        latency_of[s] = np.mean(lats, axis=0)
        errors_of[s] = np.mean(errs, axis=0)

    # what the fault reaches: the root's service, its callers transitively, and for a noisy
    # neighbour every service with a container on that host
    reached = {root_svc}
    if target == "host" and kind in ("level_shift", "spike"):
        reached |= {s for (s, k), h in host_of.items() if h == root_host}
    todo = list(reached)
    while todo:
        c = todo.pop()
        for i in callers[c]:
            if i not in reached:
                reached.add(i)
                todo.append(i)

    # the alert: the first service latency six robust sigmas above its pre-fault median
    alert = None
    for s in sorted(reached):
        pre = latency_of[s][:onset]
        med = float(np.median(pre))
        mad = 1.4826 * float(np.median(np.abs(pre - med))) + 1e-12
        hit = np.flatnonzero((np.arange(n) > onset) & (latency_of[s] > med + 6 * mad))
        if hit.size and hit[0] <= n - 1 - after:
            alert = int(hit[0]) if alert is None else min(alert, int(hit[0]))
    if alert is None:
        alert = onset + lead_guess
    alert = max(alert, onset + 2)
    if kind == "leak":  # nobody is paged for a heap a few percent above normal
        visible = np.flatnonzero(size * course >= 0.1)
        alert = max(alert, int(visible[0]) if visible.size else onset + lead_guess)
    alert = min(alert, n - 1)

    # series (labels service / host / container), counters as cumulative scrapes
    names = [f"app-{s:02d}" for s in range(n_svc)]
    hosts = [f"node-{h}" for h in range(n_hosts)]
    series: list[SeriesInput] = []
    index: dict[tuple[str, int, int], int] = {}
    for (metric, s, k), v in sorted(vals.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        labels = {
            "__name__": metric,
            "service": names[s],
            "host": hosts[host_of[(s, k)]],
            "container": f"{names[s]}-{k}",
        }
        index[(metric, s, k)] = len(series)
        series.append(_scraped(rng, labels, v, metric.endswith("_total")))
    node_mem = [
        float(rng.uniform(8, 64)) * 2**30 * (0.5 + 0.1 * daily) * noise(0.01)
        for _ in range(n_hosts)
    ]
    for h in range(n_hosts):
        index[("node_cpu_busy_seconds_total", -1, h)] = len(series)
        series.append(
            _scraped(
                rng,
                {"__name__": "node_cpu_busy_seconds_total", "host": hosts[h]},
                host_busy[h],
                True,
            )
        )
        series.append(
            _scraped(
                rng, {"__name__": "node_memory_used_bytes", "host": hosts[h]}, node_mem[h], False
            )
        )

    if target == "host" and kind in ("level_shift", "spike"):
        root = index[("node_cpu_busy_seconds_total", -1, root_host)]
    else:
        metric = {
            "cpu": "container_cpu_usage_seconds_total",
            "latency": "http_server_duration_p99_seconds",
            "memory": "container_memory_working_set_bytes",
            "pool": "db_pool_active",
        }[target]
        root = index[(metric, root_svc, root_ctr)]
    affected = sorted(
        {root}
        | {
            index[("http_server_duration_p99_seconds", s, k)]
            for s in reached
            for k in range(containers[s])
        }
    )

    # background anomalies in what the fault does not reach
    reached_hosts = {root_host} if target == "host" else set()
    free = [
        i
        for i, si in enumerate(series)
        if dict(si.labels).get("service", "") not in {names[s] for s in reached}
        and not (
            "service" not in dict(si.labels)
            and hosts.index(dict(si.labels)["host"]) in reached_hosts
        )
    ]
    background: list[int] = []
    for i in (
        rng.choice(free, size=min(len(free), int(rng.integers(2, 5))), replace=False)
        if free
        else []
    ):
        background.append(int(i))
        series[int(i)] = _background(rng, series[int(i)], onset, alert)

    # missing scrapes, and sometimes an outage of one series
    for i, si in enumerate(series):
        v = si.values.copy()
        gone = rng.random(n) < 0.005
        gone[[0, -1]] = False
        v[gone] = np.nan
        series[i] = SeriesInput(si.labels, v, si.counter)
    if rng.random() < 0.5:
        i = int(rng.integers(0, len(series)))
        at = int(rng.integers(10, n - 10))
        v = series[i].values.copy()
        v[at : at + int(rng.integers(2, 5))] = np.nan
        series[i] = SeriesInput(series[i].labels, v, series[i].counter)

    start_ms = EPOCH_MS + t0 * STEP_S * 1000
    return Incident(
        seed,
        PROFILE_NAME,
        kind,
        start_ms,
        STEP_S * 1000,
        series,
        root,
        start_ms + onset * STEP_S * 1000,
        start_ms + alert * STEP_S * 1000,
        names,
        callees,
        affected,
        sorted(background),
    )


def _scraped(
    rng: np.random.Generator, labels: dict[str, str], rate: np.ndarray, counter: bool
) -> SeriesInput:
    """A gauge as is (one in fifty with isolated outliers); a counter as cumulative scrapes."""
    v = np.asarray(rate, dtype=np.float64)
    if not counter and rng.random() < 0.02:
        v = v.copy()
        hits = rng.random(v.size) < 0.01
        v[hits] *= rng.uniform(1.5, 3.0, int(hits.sum()))
    if counter:
        inc = np.maximum(v, 0) * STEP_S
        v = float(rng.uniform(0, 1e5)) + np.cumsum(inc)
        if rng.random() < 0.05:  # a restart: the counter starts again from zero
            at = int(rng.integers(20, v.size - 20))
            v[at:] = np.cumsum(inc[at:])
    return SeriesInput(label_set(labels), v, counter)


def _background(rng: np.random.Generator, s: SeriesInput, onset: int, alert: int) -> SeriesInput:
    """``s`` with an unrelated step, decaying burst or ramp beginning near the incident."""
    n = s.values.size
    start = int(rng.integers(max(5, onset - 40), min(n - 2, alert + 4)))
    level = np.diff(s.values) if s.counter else s.values.copy()
    if s.counter:
        level = np.where(level < 0, 0, level)
    ref = level[: max(start - 1, 10)]
    ref = ref[np.isfinite(ref)]
    spread = float(np.median(np.abs(np.diff(ref)))) * 1.4826 / np.sqrt(2) + 1e-9 * (
        abs(float(np.median(ref))) + 1
    )
    size = float(rng.uniform(5, 30)) * spread * (1 if rng.random() < 0.6 else -1)
    t = np.arange(level.size, dtype=np.float64) - start
    form = int(rng.integers(0, 3))
    if form == 0:
        bump = np.where(t >= 0, size, 0.0)
    elif form == 1:
        bump = np.where(t >= 0, 2 * size * np.exp(-np.maximum(t, 0) / 2), 0.0)
    else:
        bump = np.where(t >= 0, size * t / 12, 0.0)
    if s.counter:
        inc = np.maximum(level + bump, 0)
        v = np.concatenate([[s.values[0]], s.values[0] + np.cumsum(inc)])
    else:
        v = np.maximum(level + bump, 0) if np.all(level >= 0) else level + bump
    return SeriesInput(s.labels, v, s.counter)


def generate_holdout_incidents(seeds: range | list[int]) -> list[Incident]:
    return [generate_holdout_incident(s) for s in seeds]
