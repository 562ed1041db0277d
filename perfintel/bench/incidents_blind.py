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

from dataclasses import dataclass, field, replace

import numpy as np

from perfintel.analysis.signals import SeriesInput
from perfintel.bench.blind_shop import (
    SHAPES,
    Exported,
    Fault,
    Service,
    ShopState,
    build_services,
    call_graph,
    make_nodes,
    observe,
    service_rates,
    simulate,
    size_limits,
    traffic,
)
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


# -- the alert, the background, the assembly -------------------------------------------------


def _alert_within_s(fault: Fault, step_s: int) -> int:
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
    obs: list[Exported], services: list[Service], onset: int, step_s: int, within_s: int
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
    obs: list[Exported],
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


def _assemble(o: Exported, n: int) -> np.ndarray:
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
    services: list[Service],
    callees: list[list[int]],
    onset: int,
    step_s: int,
) -> Fault:
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
    return Fault(
        kind, service, int(rng.integers(0, len(svc.pods))), metric, onset, length, float(size)
    )


def _moved(
    obs: list[Exported], state: ShopState, calm: ShopState, onset: int, alert: int
) -> set[int]:
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
    callees = call_graph(rng, n_apps, shape, bool(rng.random() < 0.6))
    nodes = make_nodes(rng, int(rng.integers(3, 7)))
    services = build_services(rng, callees, n_apps, len(nodes))
    for svc in services:  # callee latency reaches a caller 0-2 minutes later
        svc.lag = {
            c: lag * max(1, 60 // step_s) // 2 + int(rng.integers(0, 2))
            for c, lag in svc.lag.items()
        }
    rates = service_rates(services, callees, traffic(rng, ts_ms, step_s))
    size_limits(rng, services, callees, rates)
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
            state = simulate(services, callees, rates, fault, step_s)
            obs = observe(
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
                calm = simulate(services, callees, rates, replace(fault, size=0.0), step_s)
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
    obs: list[Exported],
    moved: set[int],
    services: list[Service],
    callees: list[list[int]],
    fault: Fault,
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
