"""The benchmark workload: many series of realistic counters and gauges, seeded.

Series come in groups of six per host, three counters and three gauges, so
a workload is half counters and half gauges:

=========================  =======  ===============================================
metric                     type     values
=========================  =======  ===============================================
``bench_requests_total``   counter  integer increments (Poisson, daily cycle)
``bench_errors_total``     counter  integer increments, rare
``bench_bytes_sent_total`` counter  integer bytes (requests x response size)
``bench_cpu_usage``        gauge    percent with two decimals
``bench_memory_bytes``     gauge    integer bytes, multiples of 4096, slow drift
``bench_latency_seconds``  gauge    seconds with millisecond precision
=========================  =======  ===============================================

The six series of a host share its traffic curve and each comes from its own
exporter, so labels are ``service`` (20 services, ``svc-00`` … ``svc-19``),
``instance`` (``host-00000:9100`` … ``host-00000:9105``, one per series) and
``job="bench"``. Because ``instance`` alone tells series apart, a selector over
every series, such as ``avg_over_time({job="bench"}[5m])``, stays valid PromQL
once the metric name is dropped. Each instance has its own constant phase
inside the scrape step, like Prometheus spreading its scrapes, and every
series has one sample per step.

Layout of the returned batch: *series-major*. Series ``i`` holds samples
``i * n_steps … (i + 1) * n_steps - 1`` in timestamp order, so
``values.reshape(n_series, n_steps)`` is the matrix of the workload;
``request_batches`` relies on that.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import lfilter

from perfintel.batch import SampleBatch
from perfintel.model import LabelSet, label_set

__all__ = ["METRICS", "N_SERVICES", "generate_workload", "request_batches", "workload_shape"]

N_SERVICES = 20
METRICS = (
    "bench_requests_total",
    "bench_errors_total",
    "bench_bytes_sent_total",
    "bench_cpu_usage",
    "bench_memory_bytes",
    "bench_latency_seconds",
)
_DAY_MS = 86_400_000


def _labels(i: int) -> LabelSet:
    host, k = divmod(i, len(METRICS))
    return label_set(
        {
            "__name__": METRICS[k],
            "service": f"svc-{host % N_SERVICES:02d}",
            "instance": f"host-{host:05d}:{9100 + k}",
            "job": "bench",
        }
    )


def _ar1(rng: np.random.Generator, shape: tuple[int, int], std: float, tau: float) -> np.ndarray:
    """Stationary AR(1) noise along axis 1 (time constant ``tau`` steps)."""
    phi = math.exp(-1.0 / tau)
    eps = rng.normal(0.0, std * math.sqrt(1 - phi * phi), shape)
    eps[:, 0] = rng.normal(0.0, std, shape[0])
    return np.asarray(lfilter([1.0], [1.0, -phi], eps, axis=1))


def workload_shape(batch: SampleBatch) -> tuple[int, int]:
    """``(n_series, n_steps)`` of a batch made by ``generate_workload``."""
    n_series = len(batch.series)
    if n_series == 0 or len(batch) % n_series:
        raise ValueError("not a workload batch: every series must have the same number of samples")
    return n_series, len(batch) // n_series


def generate_workload(
    *, n_series: int = 1000, hours: float = 24, step_s: int = 10, seed: int = 0, start_ms: int
) -> SampleBatch:
    """``n_series`` series × ``hours`` of samples every ``step_s`` seconds from ``start_ms``.

    >>> w = generate_workload(n_series=12, hours=1, start_ms=1_700_000_000_000)
    >>> len(w), workload_shape(w)
    (4320, (12, 360))
    """
    if n_series <= 0 or hours <= 0 or step_s <= 0:
        raise ValueError("n_series, hours and step_s must be positive")
    n_steps = int(hours * 3600 // step_s)
    n_targets = -(-n_series // len(METRICS))
    rng = np.random.default_rng(seed)
    step_ms = step_s * 1000
    offsets = rng.integers(0, step_ms, n_targets * len(METRICS))  # scrape phase per instance
    grid = start_ms + step_ms * np.arange(n_steps, dtype=np.int64)
    # one traffic curve per target: daily cycle (peak ~14:00 UTC) × level × slow noise
    hour = ((grid % _DAY_MS) / 3_600_000)[None, :]
    phase = rng.normal(0.0, 1.0, (n_targets, 1))
    daily = 0.55 + 0.45 * np.cos(2 * math.pi * (hour - 14.0 - phase) / 24)
    level = rng.lognormal(math.log(20.0), 1.0, (n_targets, 1))
    rps = level * daily * np.exp(_ar1(rng, (n_targets, n_steps), 0.08, 60))

    values = np.empty((n_targets, len(METRICS), n_steps))
    req = rng.poisson(rps * step_s).astype(np.float64)
    values[:, 0] = np.cumsum(req, axis=1) + rng.integers(0, 10**7, (n_targets, 1))
    err = rng.poisson(rps * step_s * rng.uniform(0.0002, 0.01, (n_targets, 1)))
    values[:, 1] = np.cumsum(err, axis=1) + rng.integers(0, 10**4, (n_targets, 1))
    size = rng.lognormal(math.log(4000.0), 0.8, (n_targets, 1))
    sent = np.round(req * size * (1 + 0.05 * rng.standard_normal(req.shape)).clip(0.5))
    values[:, 2] = np.cumsum(sent, axis=1) + rng.integers(0, 10**11, (n_targets, 1))
    busy = 0.02 + rps / level * rng.uniform(0.05, 0.6, (n_targets, 1))
    cpu = busy * np.exp(_ar1(rng, req.shape, 0.1, 6)) * 100
    values[:, 3] = np.round(np.clip(cpu, 0.0, 100.0), 2)
    mem = rng.lognormal(math.log(600e6), 0.7, (n_targets, 1)) * np.exp(
        _ar1(rng, req.shape, 0.05, 360)
    )
    values[:, 4] = np.round(mem / 4096) * 4096
    lat = rng.lognormal(math.log(0.05), 0.6, (n_targets, 1)) * (0.7 + 0.6 * daily)
    values[:, 5] = np.round(lat * np.exp(_ar1(rng, req.shape, 0.2, 3)), 3)

    flat = values.reshape(n_targets * len(METRICS), n_steps)[:n_series]
    ts = (grid[None, :] + offsets[:n_series, None]).ravel()
    return SampleBatch(
        [_labels(i) for i in range(n_series)],
        np.repeat(np.arange(n_series, dtype=np.int32), n_steps),
        ts,
        np.ascontiguousarray(flat).ravel(),
    )


def request_batches(
    workload: SampleBatch,
    *,
    shards: int = 1,
    samples_per_request: int = 10_000,
    max_samples: int | None = None,
) -> list[list[SampleBatch]]:
    """Split a workload the way a sharded remote-write sender would.

    Series are dealt round-robin to ``shards``; each shard's requests cover
    all its series over consecutive time windows (``samples_per_request //
    shard size`` steps each, at least one), in time order, so each series'
    samples arrive in order. ``max_samples`` keeps only the first time windows
    holding at most that many samples in total.
    """
    n_series, n_steps = workload_shape(workload)
    shards = max(1, min(shards, n_series))
    ts = workload.timestamps.reshape(n_series, n_steps)
    vals = workload.values.reshape(n_series, n_steps)
    steps_total = n_steps if max_samples is None else max(1, min(n_steps, max_samples // n_series))
    out: list[list[SampleBatch]] = []
    for s in range(shards):
        rows = np.arange(s, n_series, shards)
        width = max(1, samples_per_request // len(rows))
        series = [workload.series[i] for i in rows]
        reqs = []
        for a in range(0, steps_total, width):
            b = min(a + width, steps_total)
            reqs.append(
                SampleBatch(
                    series,
                    np.repeat(np.arange(len(rows), dtype=np.int32), b - a),
                    np.ascontiguousarray(ts[rows, a:b]).ravel(),
                    np.ascontiguousarray(vals[rows, a:b]).ravel(),
                )
            )
        out.append(reqs)
    return out
