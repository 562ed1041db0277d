"""Capacity plans of stored resources: histories → ``plan_capacity`` per resource.

The request names the *usage* series by a selector and the *capacity* either
as a number (the same for every resource) or as a second selector. A
capacity series belongs to the usage series with the same labels, the metric
name aside — e.g. ``node_filesystem_size_bytes{device="sda1",mountpoint="/"}``
to ``node_filesystem_avail_bytes{device="sda1",mountpoint="/"}``. ``match_on``
restricts the comparison to the listed labels (as PromQL's ``on(...)``);
``match_on=[]`` gives every usage series the one capacity series selected.

Used or available
-----------------
Exporters often publish what is *free* rather than what is used (node
exporter: ``node_filesystem_avail_bytes`` and ``node_filesystem_size_bytes``).
With ``usage_kind="available"`` the selected series is the free amount and
usage is ``capacity − available`` point by point (the capacity series is
carried forward and backward over its own gaps), so no expression language
is needed. ``usage_kind="used"`` (the default) takes the series as usage.

Usage series without a capacity partner (or with several), or without two
usable samples, are reported in :attr:`CapacityAnalysis.skipped` with the
reason; the others still get their plan.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np

from perfintel.analysis.capacity import (
    DEFAULT_SCENARIOS,
    CapacityReport,
    Scenario,
    plan_capacity,
)
from perfintel.errors import BadInputError
from perfintel.model import METRIC_NAME, LabelSet, format_series, metric_name
from perfintel.performance.expression import AnalysisQuery
from perfintel.performance.history import (
    MAX_SERIES,
    History,
    HistorySet,
    Window,
    load_history,
)
from perfintel.query.settings import QuerySettings
from perfintel.storage.base import SampleReader

UsageKind = Literal["used", "available"]

#: the API's default what-ifs: as is, and 30 % more traffic (growth 30 % faster)
TRAFFIC_SCENARIOS: tuple[Scenario, ...] = (
    DEFAULT_SCENARIOS[0],
    Scenario("+30% traffic", growth=1.3),
)


@dataclass
class ResourcePlan:
    """One resource: its grid (``timestamps``, int64 ms), usage and capacity on that grid,
    and the plan. ``capacity_labels`` is ``None`` when the capacity was a number."""

    labels: LabelSet
    capacity_labels: LabelSet | None
    resource: str
    timestamps: np.ndarray
    usage: np.ndarray
    capacity: np.ndarray
    report: CapacityReport


@dataclass(frozen=True)
class Skipped:
    labels: LabelSet
    reason: str


@dataclass
class CapacityAnalysis:
    window: Window
    source: str
    resources: list[ResourcePlan]
    skipped: list[Skipped]


#: resources of one request are planned on this many threads at most (numpy releases
#: the GIL in the simulation), shared by all requests so concurrent ones stay bounded
PLAN_THREADS = max(1, min(4, os.cpu_count() or 1))
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _planning_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(PLAN_THREADS, thread_name_prefix="perfintel-capacity")
        return _pool


def match_key(labels: LabelSet, match_on: Sequence[str] | None) -> LabelSet:
    """The labels two series must share to belong together."""
    if match_on is None:
        return tuple((k, v) for k, v in labels if k != METRIC_NAME)
    on = set(match_on)
    return tuple((k, v) for k, v in labels if k in on)


def resource_name(labels: LabelSet, resource: str | None) -> str:
    """``resource`` (default: the metric name) with the series' other labels, if any."""
    rest = tuple((k, v) for k, v in labels if k != METRIC_NAME)
    base = resource or metric_name(labels) or "resource"
    if not rest:
        return base
    return base + format_series(((METRIC_NAME, ""), *rest))


def _fill(values: np.ndarray) -> np.ndarray:
    """Carry the last finite value forward, and the first one backward."""
    ok = np.isfinite(values)
    if not ok.any():
        return values
    idx = np.where(ok, np.arange(values.size), 0)
    np.maximum.accumulate(idx, out=idx)
    out = values[idx]
    first = int(np.argmax(ok))
    out[:first] = values[first]
    return out


def _align(cap: History, grid: np.ndarray, step_ms: int) -> np.ndarray:
    out = np.full(grid.size, np.nan)
    pos = (cap.timestamps - grid[0]) // step_ms
    keep = (pos >= 0) & (pos < grid.size)
    out[pos[keep]] = cap.values[keep]
    return out


def analyze(
    reader: SampleReader,
    usage: AnalysisQuery,
    capacity: float | AnalysisQuery,
    window: Window,
    *,
    scenarios: Sequence[Scenario] = TRAFFIC_SCENARIOS,
    target_utilisation: float = 0.8,
    usage_kind: UsageKind = "used",
    match_on: Sequence[str] | None = None,
    resource: str | None = None,
    end_ms: int | None = None,
    max_series: int = MAX_SERIES,
    max_samples: int | None = None,
    settings: QuerySettings | None = None,
    projection: bool = False,
) -> CapacityAnalysis:
    """Plan every resource of ``usage`` (a selector or any PromQL expression) over
    ``window`` (history ending at ``end_ms``). ``projection``: each report also carries the
    baseline's projected usage (:attr:`CapacityReport.projection`), for a chart."""
    end = int(time.time() * 1000) if end_ms is None else int(end_ms)
    hist = load_history(
        reader,
        usage,
        end,
        window,
        max_series=max_series,
        max_samples=max_samples,
        what="usage",
        settings=settings,
    )
    cap_arg: float | HistorySet
    if isinstance(capacity, float | int):
        if not capacity > 0:
            raise BadInputError("invalid parameter 'capacity': must be a positive number")
        cap_arg = float(capacity)
    else:
        cap_arg = load_history(
            reader,
            capacity,
            end,
            window,
            max_series=max_series,
            max_samples=max_samples,
            what="capacity",
            settings=settings,
        )
    return plan_histories(
        hist,
        cap_arg,
        window,
        scenarios=scenarios,
        target_utilisation=target_utilisation,
        usage_kind=usage_kind,
        match_on=match_on,
        resource=resource,
        projection=projection,
    )


def plan_histories(
    hist: HistorySet,
    capacity: float | HistorySet,
    window: Window,
    *,
    scenarios: Sequence[Scenario] = TRAFFIC_SCENARIOS,
    target_utilisation: float = 0.8,
    usage_kind: UsageKind = "used",
    match_on: Sequence[str] | None = None,
    resource: str | None = None,
    projection: bool = False,
) -> CapacityAnalysis:
    """The pure half of :func:`analyze`: plans of already loaded histories."""
    step = hist.step_ms
    by_key: dict[LabelSet, list[History]] = {}
    if isinstance(capacity, HistorySet):
        for c in capacity.series:
            by_key.setdefault(match_key(c.labels, match_on), []).append(c)
    # each resource: a reason to skip it, or what to plan (in the order of the series)
    jobs: list[Skipped | tuple[History, LabelSet | None, np.ndarray, np.ndarray]] = []
    for s in hist.series:
        cap_labels: LabelSet | None = None
        if isinstance(capacity, HistorySet):
            key = match_key(s.labels, match_on)
            partners = by_key.get(key, [])
            if len(partners) != 1:
                what = "no capacity series" if not partners else f"{len(partners)} capacity series"
                jobs.append(
                    Skipped(
                        s.labels, f"{what} with labels {format_series(((METRIC_NAME, ''), *key))}"
                    )
                )
                continue
            cap_labels = partners[0].labels
            cap = _fill(_align(partners[0], s.timestamps, step))
        else:
            cap = np.full(s.values.size, float(capacity))
        used = cap - s.values if usage_kind == "available" else s.values
        jobs.append((s, cap_labels, cap, used))

    def plan(
        job: tuple[History, LabelSet | None, np.ndarray, np.ndarray],
    ) -> ResourcePlan | Skipped:
        s, cap_labels, cap, used = job
        try:
            report = plan_capacity(
                s.timestamps / 1000.0,
                used,
                cap,
                horizon_days=window.horizon_ms / 86_400_000,
                scenarios=scenarios,
                target_utilisation=target_utilisation,
                resource=resource_name(s.labels, resource),
                step_seconds=step / 1000,
                projection=projection,
            )
        except BadInputError as exc:
            return Skipped(s.labels, str(exc))
        return ResourcePlan(
            s.labels, cap_labels, resource_name(s.labels, resource), s.timestamps, used, cap, report
        )

    todo = [j for j in jobs if not isinstance(j, Skipped)]
    done = iter(_planning_pool().map(plan, todo) if len(todo) > 1 else map(plan, todo))
    plans: list[ResourcePlan] = []
    skipped: list[Skipped] = []
    for j in jobs:
        r = j if isinstance(j, Skipped) else next(done)
        if isinstance(r, Skipped):
            skipped.append(r)
        else:
            plans.append(r)
    return CapacityAnalysis(window, hist.source, plans, skipped)
