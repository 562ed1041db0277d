"""A fifth root-cause incident generator (``fresh``), written blind to the ranking and to the
other generators: a Kubernetes shop as Prometheus would have scraped it.

The system (:mod:`perfintel.bench.fresh_system`) is an ingress-nginx or HAProxy load balancer
in front of 3-8 HTTP services calling each other (a DAG), often a Kafka topic fed by some of
them and drained by 1-2 consumer groups, sometimes a cron job, PostgreSQL databases and Redis
caches (a service reading a cache falls back to its database on a miss), their pods spread
over 3-6 nodes (so pods share CPUs and disks). Its latent state comes from queueing-style
equations: load flows down the call graph (retries on a callee's errors amplify it, cache
misses reach the database), latencies and errors flow back up with per-edge lags of 0-45 s
and the share of requests that wait on each callee; connection pools follow Little's law and
queue when full; GC time grows as a heap fills; consumers lag when they drain slower than the
producers write; a node's CPU contention slows every pod on it.

How it differs from the other generators: scrape steps of 15 s (some seeds 10 s or 30 s);
6-8 hours of history; series named as real exporters name them
(:mod:`perfintel.bench.fresh_render`: ingress-nginx, HAProxy, Micrometer/JVM, Go, Python,
HikariCP, OTel, cAdvisor, kube-state-metrics, postgres/redis/kafka exporters,
node_exporter), request latency as a real
Prometheus histogram (cumulative ``le`` buckets, ``_sum``, ``_count``), a summary with
``quantile`` series or a millisecond gauge by service; counters cumulative with Poisson counts
(some, as those exporters do, without ``_total``), the cron job's pods new series each run;
pod-level infrastructure series without a ``service`` label in a quarter of the seeds.

The fault (kind ``seed % 4``) is at one single series, never a bucket: ``level_shift`` (a
runaway CPU hog in a pod, a noisy neighbour's CPU on a shared node, a cache's hit ratio
falling, exclusive locks held in a database, a slow disk under a database), ``spike`` (a GC
storm, a neighbour's or a database's CPU burst, a lock storm, a disk burst, 2-8 minutes),
``leak`` (a heap or working set growing, pool connections leaking, goroutines leaking) or
``saturation`` (a pod's pool held longer until it sits at its cap, a disk at 100 % busy, a
pod's CPU at its limit). Background: 1-5 unrelated anomalies in other services (a CPU burst
of a pod without limits, a traffic surge to one service, a heap step, a deploy-like restart
resetting a pod's counters), seasonality with random phases, heavy-tailed noise in some
seeds, rare missed scrapes. The alert time is when the user-facing SLI would page: the load
balancer's p99 (or HAProxy's average) or its 5xx ratio for 2 minutes, or a consumer group's
lag for 5 minutes, above a threshold above anything the 3 hours before the onset reached; a
fault too weak to page is made stronger (up to 4x), then the page is on the root itself.
``affected`` is the series that moved because of the fault, judged noise-free against the
same simulation without it; ``background`` those moved by the background anomalies.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from perfintel.analysis.signals import SeriesInput
from perfintel.bench.fresh_render import Meta, Rendered, make_look, render
from perfintel.bench.fresh_system import Perturbation, State, System, build_system, calibrate
from perfintel.bench.fresh_system import simulate as run
from perfintel.bench.incidents import FAULT_KINDS, Incident
from perfintel.model import label_set

EPOCH_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MINUTE_S = 60


@dataclass
class Fault:
    kind: str
    mechanism: str
    root: Meta
    pert: Perturbation


def _step(n: int, at: int, size: float) -> np.ndarray:
    return np.where(np.arange(n) >= at, size, 0.0)


def _pulse(n: int, at: int, length: int, size: float) -> np.ndarray:
    k = np.arange(n)
    return np.where((k >= at) & (k < at + max(1, length)), size, 0.0)


def _ramp(n: int, at: int, length: int, size: float, cap: bool = False) -> np.ndarray:
    r = np.clip(np.arange(n) - at + 1, 0, None) / max(1, length)
    return size * (np.minimum(r, 1.0) if cap else r)


def _pods(
    system: System, kinds: tuple[str, ...], runtimes: tuple[str, ...] = ()
) -> list[tuple[int, int]]:
    return [
        (i, p)
        for i, s in enumerate(system.services)
        if s.kind in kinds and (not runtimes or s.runtime in runtimes)
        for p in range(s.pods)
    ]


def make_fault(
    rng: np.random.Generator,
    system: System,
    clean: State,
    kind: str,
    onset: int,
    n: int,
    scale: float,
) -> Fault:
    """One fault of ``kind`` at ``onset``, its strength times ``scale``; the mechanism drawn
    among those this system has (the draws do not depend on ``scale``)."""
    minute = MINUTE_S // system.step_s
    svcs = system.services
    dbs = system.of_kind("db")
    caches = system.of_kind("cache")
    apps = _pods(system, ("api", "worker"))
    gc_pods = _pods(system, ("api", "worker"), ("jvm", "go"))
    go_pods = _pods(system, ("api", "worker"), ("go",))
    db_users = {e.src for e in system.edges if svcs[e.dst].kind == "db"}
    pool_pods = [(i, p) for i, p in apps if svcs[i].pool_max and i in db_users]
    neighbours = _neighbours(system)
    options = {
        "level_shift": ["cpu_hog", "neighbour", "cache_miss", "db_locks", "slow_disk"],
        "spike": ["gc_storm", "neighbour", "db_cpu", "db_locks", "slow_disk"],
        "leak": ["memory", "connections", "goroutines"],
        "saturation": ["pool", "disk", "cpu_limit"],
    }[kind]
    have = {
        "cpu_hog": bool(apps), "neighbour": bool(neighbours), "cache_miss": bool(caches),
        "db_locks": bool(dbs), "slow_disk": bool(dbs), "gc_storm": bool(gc_pods),
        "db_cpu": bool(dbs), "memory": bool(gc_pods), "connections": bool(pool_pods),
        "goroutines": bool(go_pods), "pool": bool(pool_pods), "disk": bool(dbs),
        "cpu_limit": bool(apps),
    }  # fmt: skip
    mech = str(rng.choice([o for o in options if have[o]]))
    u = float(rng.uniform(0.0, 1.0))  # the strength within its range
    pick = int(rng.integers(0, 1 << 30))
    length = int(np.rint((2 + 6 * float(rng.random())) * minute))  # a spike's
    grow = int(np.rint((8 + 17 * float(rng.random())) * minute))  # a leak's time to do harm
    fill = int(np.rint((1 + 2 * float(rng.random())) * minute))  # a saturation's climb

    def shape(size: float) -> np.ndarray:
        if kind == "spike":
            return _pulse(n, onset, length, size)
        if kind == "leak":
            return _ramp(n, onset, grow, size)
        if kind == "saturation":
            return _ramp(n, onset, fill, size, cap=True)
        return _step(n, onset, size)

    pert = Perturbation()
    if mech in ("cpu_hog", "cpu_limit"):
        i, p = apps[pick % len(apps)]
        s = svcs[i]
        if mech == "cpu_hog":
            pert.add(("cpu", i, p), shape(s.cores * (0.5 + 0.5 * u) * scale))
        else:  # the per-request cost grows until the pod needs 1.3-2x its limit
            need = float(np.mean(clean.cpu[i][p, :onset]))
            factor = s.cores * (1.3 + 0.7 * u) * scale / max(need, 1e-3)
            pert.arrays[("cost", i, p)] = 1.0 + shape(factor - 1.0)
        return Fault(kind, mech, Meta(i, p, s.nodes[p], "cpu"), pert)
    if mech == "neighbour":
        j, q = neighbours[pick % len(neighbours)]
        k = svcs[j].nodes[q]
        pert.add(("burst", j, q), shape(system.node_cores[k] * (0.55 + 0.35 * u) * scale))
        return Fault(kind, mech, Meta(j, q, k, "cpu"), pert)
    if mech == "cache_miss":
        c = caches[pick % len(caches)]
        h = system.hit_ratio[c]
        pert.add(("miss", c), shape(min(h - 0.05, (0.25 + 0.25 * u) * scale)))
        return Fault(kind, mech, Meta(c, -1, svcs[c].nodes[0], "misses"), pert)
    if mech == "db_locks":
        d = dbs[pick % len(dbs)]
        pert.add(("locks", d), shape((4.0 + 8.0 * u) * scale))
        return Fault(kind, mech, Meta(d, -1, svcs[d].nodes[0], "locks"), pert)
    if mech in ("slow_disk", "disk"):
        d = dbs[pick % len(dbs)]
        k = svcs[d].nodes[0]
        size = 1.0 if mech == "disk" else (0.45 + 0.25 * u) * scale
        pert.add(("disk", k), shape(size))
        return Fault(kind, mech, Meta(-1, -1, k, "disk"), pert)
    if mech == "db_cpu":
        d = dbs[pick % len(dbs)]
        pert.add(("cpu", d, 0), shape(svcs[d].cores * (0.7 + 0.4 * u) * scale))
        return Fault(kind, mech, Meta(d, 0, svcs[d].nodes[0], "cpu"), pert)
    if mech == "gc_storm":
        i, p = gc_pods[pick % len(gc_pods)]
        pert.add(("gc", i, p), shape((0.15 + 0.25 * u) * scale))
        return Fault(kind, mech, Meta(i, p, svcs[i].nodes[p], "gc"), pert)
    if mech == "memory":  # the heap (JVM) or working set (Go) grows
        i, p = gc_pods[pick % len(gc_pods)]
        pert.add(("heap", i, p), shape((0.4 + 0.15 * u) * scale))
        tag = "heap" if svcs[i].runtime == "jvm" else "memory"
        return Fault(kind, mech, Meta(i, p, svcs[i].nodes[p], tag), pert)
    if mech == "goroutines":
        i, p = go_pods[pick % len(go_pods)]
        pert.add(("goroutines", i, p), shape((15_000 + 20_000 * u) * scale))
        return Fault(kind, mech, Meta(i, p, svcs[i].nodes[p], "goroutines"), pert)
    i, p = pool_pods[pick % len(pool_pods)]
    s = svcs[i]
    if mech == "connections":  # leaked connections, a pool's worth in ``grow`` steps
        pert.add(("conns", i, p), shape(s.pool_max * (1.0 + 0.5 * u) * scale))
    else:  # each connection held longer until 1.5-3x the pool would be needed
        used = float(np.mean(clean.pool_used[i][p, :onset]))
        factor = s.pool_max * (1.5 + 1.5 * u) * scale / max(used, 0.5)
        pert.arrays[("hold", i, p)] = 1.0 + shape(factor - 1.0)
    return Fault(kind, mech, Meta(i, p, s.nodes[p], "pool"), pert)


def _neighbours(system: System) -> list[tuple[int, int]]:
    """Pods (of any service but the LB, Kafka and the cron job) sharing a node with a pod of another
    service that serves requests: a CPU hog there slows its neighbours."""
    svcs = system.services
    serving = {
        (s.nodes[p], i)
        for i, s in enumerate(svcs)
        if s.kind in ("api", "db", "worker")
        for p in range(s.pods)
    }
    out = []
    for j, s in enumerate(svcs):
        if s.kind in ("lb", "queue", "batch"):  # a cron's pods are new series every run
            continue
        for q in range(s.pods):
            if any(k == s.nodes[q] and i != j for k, i in serving):
                out.append((j, q))
    return out


@dataclass
class Background:
    pert: Perturbation
    restarts: list[tuple[int, int, int]]  # (service, pod, step)


def make_background(
    rng: np.random.Generator, system: System, onset: int, n: int, avoid: int, strength: float
) -> Background:
    """1-5 unrelated anomalies in services other than the LB, the front end and ``avoid``
    (the root's service), between two hours before the onset and the end."""
    minute = MINUTE_S // system.step_s
    svcs = system.services
    pert = Perturbation()
    restarts: list[tuple[int, int, int]] = []
    pods = [
        (i, p)
        for i, p in _pods(system, ("api", "worker", "db", "cache", "batch"))
        if i not in (1, avoid)
    ]
    for _ in range(int(rng.integers(1, 6))):
        what = str(rng.choice(["burst", "traffic", "heap", "restart"], p=[0.35, 0.25, 0.2, 0.2]))
        at = int(rng.integers(max(1, onset - 120 * minute), n - 2))
        shape = str(rng.choice(["step", "spike", "ramp"]))
        long = int(rng.integers(10, 60)) * minute
        if shape == "step":
            unit = _pulse(n, at, long, 1.0)
        elif shape == "spike":
            unit = _pulse(n, at, int(rng.integers(1, 6)) * minute, 1.0)
        else:
            unit = _ramp(n, at, int(rng.integers(5, 20)) * minute, 1.0, cap=True) * _pulse(
                n, at, long, 1.0
            )
        if not pods:
            break
        i, p = pods[int(rng.integers(0, len(pods)))]
        s = svcs[i]
        if what == "burst":
            pert.add(("burst", i, p), unit * s.cores * float(rng.uniform(0.5, 1.5)) * strength)
        elif what == "traffic" and s.kind == "api":
            factor = float(rng.uniform(1.4, 2.5))
            pert.arrays[("traffic", i)] = 1.0 + unit * (factor - 1.0) * strength
        elif what == "heap":
            pert.add(("heap", i, p), unit * float(rng.uniform(0.1, 0.2)) * strength)
        elif s.kind in ("api", "worker"):
            restarts.append((i, p, at))
    return Background(pert, restarts)


def _rolling_min(x: np.ndarray, k: int) -> np.ndarray:
    out = x.copy()
    for j in range(1, k):
        out[j:] = np.minimum(out[j:], x[:-j])
        out[:j] = -np.inf
    return out


def _increase(x: np.ndarray, window: int) -> np.ndarray:
    """What ``increase(x[window])`` would say at each step (0 before the window fills)."""
    d = np.diff(x, prepend=x[0])
    d = np.where(d < 0, x, d)  # a restart
    c = np.cumsum(np.nan_to_num(d))
    out = np.zeros_like(c)
    out[window:] = c[window:] - c[:-window]
    return out


def slis(system: System, r: Rendered, window: int) -> list[tuple[np.ndarray, int, float]]:
    """The pages' signals: (signal per step, ``for`` in steps, floor of its threshold)."""
    minute = MINUTE_S // system.step_s
    out = []
    lb = [i for i, m in enumerate(r.meta) if m.svc == 0]
    tags = {r.meta[i].tag: [] for i in lb}  # type: dict[str, list[int]]
    for i in lb:
        tags[r.meta[i].tag].append(i)
    ok = sum(_increase(r.values[i], window) for i in tags["ok"])
    bad = sum(_increase(r.values[i], window) for i in tags["errors"])
    out.append((bad / np.maximum(ok + bad, 1.0), 2 * minute, 0.005))
    if "latency" in tags:
        out.append((np.mean([r.values[i] for i in tags["latency"]], axis=0), 2 * minute, 0.0))
    else:
        les = sorted((t for t in tags if t.startswith("le=")), key=lambda t: float(t[3:]))
        cum = np.stack([sum(_increase(r.values[i], window) for i in tags[t]) for t in les])
        out.append((_quantile(0.99, [float(t[3:]) for t in les], cum), 2 * minute, 0.0))
    for i, m in enumerate(r.meta):
        if m.tag == "lag":
            floor = (
                60.0 * float(np.nanmean(_increase(r.values[_offsets(r)[0]], 1))) / system.step_s * 3
            )
            out.append((r.values[i], 5 * minute, floor))
    return out


def _offsets(r: Rendered) -> list[int]:
    return [i for i, m in enumerate(r.meta) if m.tag.startswith("offset")]


def _quantile(q: float, les: list[float], cum: np.ndarray) -> np.ndarray:
    """``histogram_quantile``: linear within the bucket, the last finite bound past it."""
    total = cum[-1]
    rank = q * total
    out = np.full(cum.shape[1], np.nan)
    lo = np.zeros(cum.shape[1])
    for j, le in enumerate(les):
        prev = cum[j - 1] if j else np.zeros(cum.shape[1])
        here = (rank <= cum[j]) & np.isnan(out) & (total > 0)
        if np.isinf(le):
            out[here] = les[-2]
            break
        frac = (rank - prev) / np.maximum(cum[j] - prev, 1e-9)
        out[here] = (lo + (le - lo) * frac)[here]
        lo = np.full(cum.shape[1], le)
    return out


def first_page(
    sigs: list[tuple[np.ndarray, int, float]],
    onset: int,
    limit: int,
    margins: list[float],
    hour: int,
) -> int | None:
    """The first step in ``[onset, limit)`` at which a signal has stayed above its threshold
    for its ``for`` (threshold: above what the 3 hours before the onset reached)."""
    best = None
    for (x, k, floor), margin in zip(sigs, margins, strict=True):
        held = _rolling_min(np.nan_to_num(x, nan=-np.inf), k)
        before = held[max(0, onset - 3 * hour) : onset]
        thr = max(float(np.max(before[np.isfinite(before)], initial=0.0)) * margin, floor)
        hit = np.flatnonzero(held[onset:limit] > thr)
        if hit.size and (best is None or onset + hit[0] < best):
            best = onset + int(hit[0])
    return best


def _root_page(
    x: np.ndarray, counter: bool, onset: int, limit: int, k: int, window: int
) -> int | None:
    y = _increase(x, window) if counter else np.nan_to_num(x)
    held = _rolling_min(y, k)
    thr = float(np.max(held[max(window, onset - 720) : onset], initial=0.0)) * 1.05
    hit = np.flatnonzero(held[onset:limit] > thr)
    return onset + int(hit[0]) if hit.size else None


def moved(a: Rendered, b: Rendered, noisy: Rendered, lo: int, onset: int, n: int) -> list[int]:
    """Series whose noise-free values differ between ``a`` and ``b`` in ``[lo, n)`` by more
    than 3 noise sigmas (estimated before ``onset`` as noisy minus ``b``) and 1 % of level,
    for at least two steps (counters compared by their increase per step)."""
    x, y, z = (np.stack([v[:n] for v in r.values]) for r in (a, b, noisy))
    c = np.asarray(a.counter)
    for m in (x, y, z):
        m[c] = np.diff(m[c], axis=1, prepend=m[c][:, :1])
    d = np.abs(x - y)[:, lo:]
    d = np.where(np.isfinite(d), d, 0.0)
    e = (z - y)[:, : max(onset, 2)]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: a cron's run pods
        sd = 1.4826 * np.nanmedian(np.abs(e - np.nanmedian(e, axis=1, keepdims=True)), axis=1)
        level = np.nanmedian(np.abs(y[:, : max(onset, 2)]), axis=1)
    sd, level = np.nan_to_num(sd), np.nan_to_num(level)
    second = np.sort(d, axis=1)[:, -2] if d.shape[1] >= 2 else np.zeros(len(d))
    return np.flatnonzero(second > np.maximum(np.maximum(3.0 * sd, 0.01 * level), 1e-9)).tolist()


def _damage(r: Rendered, rng: np.random.Generator, bg: Background, n: int) -> list[int]:
    """Deploy-like restarts (counters from 0, memory low, a missed scrape) and missed scrapes;
    the series a restart touched."""
    touched = []
    for i, p, at in bg.restarts:
        if at >= n - 1:
            continue
        for j, m in enumerate(r.meta):
            if (m.svc, m.pod) != (i, p):
                continue
            x = r.values[j]
            if m.tag == "restarts":
                x[at:] += 1.0
            elif r.counter[j]:
                x[at:] = x[at:] - x[at - 1] + np.maximum(x[at] - x[at - 1], 0.0) * 0.5
            elif m.tag in ("memory", "heap", "goroutines", "threads"):
                x[at:] = x[at:] * (
                    1.0 - 0.5 * np.exp(-np.arange(len(x) - at) / (20.0 * rng.uniform(1, 4)))
                )
            x[at] = np.nan
            touched.append(j)
    if rng.random() < 0.5:  # a target missed 1-4 scrapes (all its series at once), 1-4 times
        for _ in range(int(rng.integers(1, 5))):
            j = int(rng.integers(0, len(r.meta)))
            key = (r.meta[j].svc, r.meta[j].pod, r.meta[j].node)
            at, k = int(rng.integers(1, n - 1)), int(rng.integers(1, 5))
            for q, m in enumerate(r.meta):
                if (m.svc, m.pod, m.node) == key:
                    r.values[q][at : at + k] = np.nan
    return touched


@dataclass
class FreshCase:
    """An incident with how it was made: the fault's mechanism, what paged, the onset step and
    the noise-free renders with and without the fault (the background in both)."""

    incident: Incident
    mechanism: str
    paged_by: str  # sli | root | none
    onset: int
    with_fault: Rendered
    without_fault: Rendered
    restarts: list[tuple[int, int, int]]


def generate_fresh_incident(seed: int) -> Incident:
    """The ``fresh`` incident of ``seed`` (deterministic)."""
    return fresh_case(seed).incident


def fresh_case(seed: int) -> FreshCase:
    """:func:`generate_fresh_incident` with how the incident was made."""
    rng = np.random.default_rng([seed, 13])
    step_s = int(rng.choice([15, 10, 30], p=[0.6, 0.15, 0.25]))
    minute = MINUTE_S // step_s
    onset = int(rng.integers(330, 440)) * minute  # history before the fault
    n_sim = onset + 40 * minute
    start_s = float(rng.integers(0, 7 * 86400 // step_s)) * step_s  # into the week
    system = build_system(rng, step_s, start_s)
    calibrate(system, n_sim, rng)
    look = make_look(rng, system)
    phi = float(rng.uniform(0.9, 0.99))
    noise = lfilter([np.sqrt(1 - phi * phi)], [1.0, -phi], rng.standard_normal(n_sim))
    noise = noise * float(rng.uniform(0.02, 0.06))
    clean = run(system, Perturbation(), n_sim, None)
    kind = FAULT_KINDS[seed % len(FAULT_KINDS)]
    fault_seed = int(rng.integers(0, 1 << 30))
    draws = int(rng.integers(0, 1 << 30))
    root_svc = -1
    margins = [float(x) for x in rng.uniform(1.1, 1.3, size=8)]
    window = max(1, minute)  # rate[1m]
    limit = onset + 28 * minute
    after = int(rng.integers(0, 11)) * minute
    noise_seed = int(rng.integers(0, 1 << 30))
    layout = int(rng.integers(0, 1 << 30))
    page, fault, bg = None, None, None
    bg_pages: dict[tuple[int, float], int | None] = {}
    for scale in (1.0, 1.6, 2.5, 4.0):
        fault = make_fault(
            np.random.default_rng(fault_seed), system, clean, kind, onset, n_sim, scale
        )
        root_svc = fault.root.svc
        for strength in (1.0, 0.5, 0.0):
            bg = make_background(
                np.random.default_rng([draws, 1]), system, onset, n_sim, root_svc, strength
            )
            full = run(system, fault.pert.merged(bg.pert), n_sim, noise)
            noisy = render(system, full, look, n_sim, np.random.default_rng(noise_seed), layout)
            sigs = slis(system, noisy, window)
            page = first_page(sigs, onset, limit, margins[: len(sigs)], 60 * minute)
            # honest: the background alone must not page before the fault's page (the same
            # background at every scale: its page is computed once)
            if (root_svc, strength) not in bg_pages:
                only_bg = render(system, run(system, bg.pert, n_sim, noise), look, n_sim,
                                 np.random.default_rng(noise_seed), layout)  # fmt: skip
                bg_pages[root_svc, strength] = first_page(
                    slis(system, only_bg, window), onset, limit, margins[: len(sigs)], 60 * minute
                )
            bg_page = bg_pages[root_svc, strength]
            if bg_page is None or (page is not None and page < bg_page):
                break
        if page is not None:
            break
    assert fault is not None and bg is not None
    paged_by = "sli"
    if page is None:  # nothing user-facing paged: the page is on the root itself
        root = noisy.find(fault.root.svc, fault.root.pod, fault.root.node, fault.root.tag)
        page = _root_page(noisy.values[root], noisy.counter[root], onset, limit, 2 * minute, window)
        paged_by = "root" if page is not None else "none"
        page = page if page is not None else onset + 10 * minute
    n = min(n_sim, page + after + 1)
    pure_bg = run(system, bg.pert, n_sim, None)
    pure_full = run(system, fault.pert.merged(bg.pert), n_sim, None)
    r_clean = render(system, clean, look, n_sim, None, layout)
    r_bg = render(system, pure_bg, look, n_sim, None, layout)
    r_full = render(system, pure_full, look, n_sim, None, layout)
    root = noisy.find(fault.root.svc, fault.root.pod, fault.root.node, fault.root.tag)
    affected = sorted({root, *moved(r_full, r_bg, noisy, onset, onset, n)})
    noisy.values = [v[:n].copy() for v in noisy.values]
    touched = _damage(noisy, np.random.default_rng([draws, 2]), bg, n)
    background = sorted(
        (set(moved(r_bg, r_clean, noisy, 0, onset, n)) | set(touched)) - set(affected)
    )
    series = [
        SeriesInput(label_set(lab), np.asarray(v, dtype=np.float64), c)
        for lab, v, c in zip(noisy.labels, noisy.values, noisy.counter, strict=True)
    ]
    start_ms = EPOCH_MS + int(start_s) * 1000
    step_ms = step_s * 1000
    incident = Incident(
        seed=seed,
        profile="fresh",
        kind=kind,
        start_ms=start_ms,
        step_ms=step_ms,
        series=series,
        root=root,
        onset_ms=start_ms + onset * step_ms,
        time_ms=start_ms + page * step_ms,
        services=[s.name for s in system.services],
        callees=system.callees(),
        affected=affected,
        background=background,
    )
    return FreshCase(incident, fault.mechanism, paged_by, onset, r_full, r_bg, bg.restarts)
