"""Optimisation recommendations over stored metrics: resources from the usual exporters, rules run.

:func:`collect_resources` reads, for the analysis window on an hourly grid
(from the 1-hour rollup tier when it covers the window), one read per metric:

=================  ==========  ===============================================================
resource           level       from
=================  ==========  ===============================================================
CPU                node        ``node_cpu_seconds_total{mode="idle"}``: capacity = number of
                               ``cpu`` values, used cores = capacity - idle seconds per second
memory             node        ``node_memory_MemTotal_bytes`` - ``node_memory_MemAvailable_bytes``
                               (peak: the bucket's lowest available)
disk               node        ``node_filesystem_size_bytes`` - ``node_filesystem_avail_bytes``
                               per mountpoint (not tmpfs, overlay, squashfs)
CPU                container   ``container_cpu_usage_seconds_total``; capacity
                               ``container_spec_cpu_quota / container_spec_cpu_period``
memory             container   ``container_memory_working_set_bytes``; capacity
                               ``container_spec_memory_limit_bytes`` (0: no limit)
memory             process     ``process_resident_memory_bytes`` (no capacity)
=================  ==========  ===============================================================

Counters are differenced per bucket (``last`` of each bucket; a drop is a
restart: that bucket is left out). The rules (:mod:`perfintel.analysis.recommend`)
then run on the context with the configured :class:`CostModel`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from perfintel.analysis.recommend import (
    CostModel,
    Recommendation,
    RecommendationContext,
    Resource,
    Usage,
    load_rules,
    run_rules,
)
from perfintel.analysis.recommend.registry import RuleFailure
from perfintel.analysis.recommend.rightsizing import MIN_COVERAGE
from perfintel.analysis.signals import Grid
from perfintel.model import METRIC_NAME, LabelSet, parse_selector
from perfintel.performance.fetch import BucketSet, fetch_buckets, grid_for
from perfintel.storage.base import SampleReader

HOUR_MS = 3_600_000
#: most series one metric may contribute (200 hosts of 64 cores, with room)
MAX_SERIES_PER_METRIC = 20_000
_SKIP_FS = '{fstype!~"tmpfs|overlay|squashfs|ramfs|devtmpfs|nsfs"}'
#: labels that tell apart series of one resource but not resources
_PARTS = frozenset({METRIC_NAME, "cpu", "mode"})


@dataclass
class RecommendationsReport:
    grid: Grid
    resources: int
    recommendations: list[Recommendation]
    failures: list[RuleFailure]
    skipped_rules: list[str]
    #: how far back the resources' data reaches in the window (hours; 0: none)
    history_hours: float = 0.0

    @property
    def note(self) -> str | None:
        """Why there may be little to say, in words (``None`` when the window is covered):
        on a new install the table is empty for days, and should say so."""
        window_h = self.grid.size * self.grid.step_ms / HOUR_MS
        if not self.resources:
            return (
                "no usage of the usual exporters' resources (node_exporter, cAdvisor, process "
                f"metrics) in the {window_h:g} whole hours of the window (the hour in progress"
                " is read once it ends)"
            )
        if self.history_hours >= MIN_COVERAGE * window_h:
            return None
        return (
            f"the data reaches back {self.history_hours:g} h of the {window_h:g} h window: a "
            f"resource is sized once its usage covers {MIN_COVERAGE:.0%} of it "
            f"({MIN_COVERAGE * window_h:g} h)"
        )


def _key(labels: LabelSet, drop: frozenset[str] = _PARTS) -> LabelSet:
    return tuple((k, v) for k, v in labels if k not in drop)


def _rates(last: np.ndarray, step_s: float) -> np.ndarray:
    """Per-second increase of counters in each bucket from the buckets' last values."""
    out = np.full(last.shape, np.nan)
    d = np.diff(last, axis=1)
    d[d < 0] = np.nan  # a restart inside the bucket: its increase is unknown
    out[:, 1:] = d / step_s
    return out


def _group_sum(
    keys: list[LabelSet], rows: np.ndarray
) -> tuple[list[LabelSet], np.ndarray, np.ndarray]:
    """Sum rows per key: ``(keys, sums, number of rows per key)``; a bucket with any NaN is NaN."""
    uniq = sorted(set(keys))
    pos = {k: i for i, k in enumerate(uniq)}
    idx = np.array([pos[k] for k in keys], dtype=np.int64)
    sums = np.zeros((len(uniq), rows.shape[1]))
    np.add.at(sums, idx, rows)
    return uniq, sums, np.bincount(idx, minlength=len(uniq))


def _by_key(bs: BucketSet, agg: str) -> dict[LabelSet, np.ndarray]:
    return {_key(ls): row for ls, row in zip(bs.labels, bs.aggs[agg], strict=True)}


def _last_finite(row: np.ndarray) -> float | None:
    ok = np.flatnonzero(np.isfinite(row))
    return float(row[ok[-1]]) if ok.size else None


Fetch = Callable[[str, tuple[str, ...]], BucketSet]


def collect_resources(
    reader: SampleReader, grid: Grid, *, max_samples: int | None = None
) -> list[Resource]:
    """The resources of the usual exporters on ``grid`` (see the module docstring)."""

    def get(sel: str, aggs: tuple[str, ...]) -> BucketSet:
        return fetch_buckets(
            reader,
            parse_selector(sel),
            grid,
            aggs,
            max_series=MAX_SERIES_PER_METRIC,
            max_samples=max_samples,
        )

    step_s = grid.step_ms / 1000
    out: list[Resource] = []
    # node CPU
    idle = get('node_cpu_seconds_total{mode="idle"}', ("last",))
    if idle.labels:
        keys = [_key(ls) for ls in idle.labels]
        uniq, idle_cores, ncpu = _group_sum(keys, _rates(idle.aggs["last"], step_s))
        for k, cores_idle, n in zip(uniq, idle_cores, ncpu, strict=True):
            used = np.clip(n - cores_idle, 0.0, n)
            series = (((METRIC_NAME, "node_cpu_seconds_total"), *k),)
            out.append(Resource("cpu", "node", k, Usage(used, used), float(n), series))
    # node memory
    total = _by_key(get("node_memory_MemTotal_bytes", ("max",)), "max")
    avail = get("node_memory_MemAvailable_bytes", ("avg", "min"))
    for ls, mean, low in zip(avail.labels, avail.aggs["avg"], avail.aggs["min"], strict=True):
        k = _key(ls)
        cap = _last_finite(total.get(k, np.full(1, np.nan)))
        if cap is None:
            continue
        names = (
            (METRIC_NAME, "node_memory_MemTotal_bytes"),
            (METRIC_NAME, "node_memory_MemAvailable_bytes"),
        )
        out.append(
            Resource(
                "memory",
                "node",
                k,
                Usage(cap - mean, cap - low),
                cap,
                tuple((n, *k) for n in names),
            )
        )
    # node filesystems
    size = _by_key(get("node_filesystem_size_bytes" + _SKIP_FS, ("max",)), "max")
    free = get("node_filesystem_avail_bytes" + _SKIP_FS, ("avg", "min"))
    for ls, mean, low in zip(free.labels, free.aggs["avg"], free.aggs["min"], strict=True):
        k = _key(ls)
        cap = _last_finite(size.get(k, np.full(1, np.nan)))
        if cap is None or not cap > 0:
            continue
        out.append(Resource("disk", "node", k, Usage(cap - mean, cap - low), cap, (ls,)))
    out.extend(_containers(get, step_s))
    # process memory
    rss = get("process_resident_memory_bytes", ("avg", "max"))
    for ls, mean, peak in zip(rss.labels, rss.aggs["avg"], rss.aggs["max"], strict=True):
        out.append(Resource("memory", "process", _key(ls), Usage(mean, peak), None, (ls,)))
    return out


def _containers(get: Fetch, step_s: float) -> list[Resource]:
    """Container CPU and memory from cAdvisor's metrics (limits where set)."""
    out: list[Resource] = []
    usage = get("container_cpu_usage_seconds_total", ("last",))
    if usage.labels:
        quota = _by_key(get("container_spec_cpu_quota", ("last",)), "last")
        period = _by_key(get("container_spec_cpu_period", ("last",)), "last")
        keys = [_key(ls) for ls in usage.labels]
        uniq, cores, _ = _group_sum(keys, _rates(usage.aggs["last"], step_s))
        for k, used in zip(uniq, cores, strict=True):
            q = _last_finite(quota.get(k, np.full(1, np.nan)))
            p = _last_finite(period.get(k, np.full(1, np.nan)))
            cap = q / p if q and p and q > 0 and p > 0 else None
            series = ((METRIC_NAME, "container_cpu_usage_seconds_total"), *k)
            out.append(Resource("cpu", "container", k, Usage(used, used), cap, (series,)))
    ws = get("container_memory_working_set_bytes", ("avg", "max"))
    if ws.labels:
        limit = _by_key(get("container_spec_memory_limit_bytes", ("last",)), "last")
        for ls, mean, peak in zip(ws.labels, ws.aggs["avg"], ws.aggs["max"], strict=True):
            k = _key(ls)
            lim = _last_finite(limit.get(k, np.full(1, np.nan)))
            cap = lim if lim and lim > 0 else None
            out.append(Resource("memory", "container", k, Usage(mean, peak), cap, (ls,)))
    return out


def recommend(
    reader: SampleReader,
    end_ms: int,
    days: float,
    cost: CostModel,
    *,
    kinds: Sequence[str] | None = None,
    max_samples: int | None = None,
) -> RecommendationsReport:
    """Run the registered rules (all, or ``kinds``) over the last ``days`` before ``end_ms``."""
    rules = load_rules(kinds)
    last = end_ms - end_ms % HOUR_MS - HOUR_MS  # the last whole hour
    start = last - round(days * 24 - 1) * HOUR_MS
    grid = grid_for(start, last, HOUR_MS)
    resources = collect_resources(reader, grid, max_samples=max_samples)
    ctx = RecommendationContext(grid.start_ms, grid.step_ms, grid.size, cost, resources)
    recs, failures, skipped = run_rules(rules, ctx)
    return RecommendationsReport(
        grid, len(resources), recs, failures, skipped, _history_hours(resources, grid)
    )


def _history_hours(resources: Sequence[Resource], grid: Grid) -> float:
    """Hours from the earliest bucket any resource has usage in to the window's end."""
    firsts = [
        int(ok[0]) for r in resources if (ok := np.flatnonzero(np.isfinite(r.usage.mean))).size
    ]
    return (grid.size - min(firsts)) * grid.step_ms / HOUR_MS if firsts else 0.0
