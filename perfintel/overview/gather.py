"""What the overview shows, read from a store: health signals, top anomalies, capacity risks.

Each function reads through the query engine or the analysis orchestrators
(never SQL), bounded by the query limits, and returns plain data; the
``OverviewState`` runs them on a worker thread and keeps the results.

Entities: a *service* is a value of the ``service`` label; a *host* is the
``instance`` label of node-exporter series (``node_*``) without its port,
which is how app series on the same machine (``instance="web-1:8080"``) and
its node exporter (``"web-1:9100"``) meet.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from perfintel.analysis.anomaly.result import SEVERITIES
from perfintel.analysis.anomaly.seasonal import WARMUP_MS
from perfintel.analysis.capacity import Scenario
from perfintel.errors import PerfintelError
from perfintel.model import METRIC_NAME, LabelSet, Matcher, MatchOp, Selector, parse_selector
from perfintel.overview.health import Signals
from perfintel.performance import anomalies as an
from perfintel.performance import capacity as cap
from perfintel.performance.history import DAY_MS, MINUTE_MS, choose_window
from perfintel.query.promql.engine import Engine
from perfintel.storage.base import QueryLimits, SampleReader

_PORT = re.compile(r":\d+$")
_PSEUDO_FS = 'fstype!~"tmpfs|ramfs|devtmpfs|overlay|squashfs|nsfs|proc|sysfs|autofs|fuse.*"'

#: (signal, PromQL per entity label) — ``{by}`` is ``service`` or ``instance``.
SIGNAL_QUERIES: tuple[tuple[str, str], ...] = (
    ("down_share", "1 - avg by ({by}) (up)"),
    (
        "error_share",
        'sum by ({by}) (rate(http_requests_total{{code=~"5.."}}[5m])) '
        "/ (sum by ({by}) (rate(http_requests_total[5m])) > 0)",
    ),
    (
        "cpu",
        'max by ({by}) (1 - avg by ({by}, instance) (rate(node_cpu_seconds_total{{mode="idle"}}[5m])))',
    ),
    (
        "memory",
        "max by ({by}) (1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes)",
    ),
    (
        "disk",
        f"max by ({{by}}) (1 - node_filesystem_avail_bytes{{{{{_PSEUDO_FS}}}}} "
        f"/ node_filesystem_size_bytes{{{{{_PSEUDO_FS}}}}})",
    ),
    (
        "network",
        "max by ({by}) ((rate(node_network_receive_drop_total[5m]) "
        "+ rate(node_network_receive_errs_total[5m])) "
        "/ (rate(node_network_receive_packets_total[5m]) > 0))",
    ),
)

#: The resources the overview plans: (name, usage selector, capacity selector), all "available".
CAPACITY_RESOURCES: tuple[tuple[str, str, str], ...] = (
    ("disk", f"node_filesystem_avail_bytes{{{_PSEUDO_FS}}}", "node_filesystem_size_bytes"),
    ("memory", "node_memory_MemAvailable_bytes", "node_memory_MemTotal_bytes"),
)


def host_of(instance: str) -> str:
    return _PORT.sub("", instance)


def _entity_keys(labels: LabelSet) -> tuple[str | None, str | None]:
    d = dict(labels)
    inst = d.get("instance")
    return d.get("service"), host_of(inst) if inst else None


@dataclass
class EntitySignals:
    services: dict[str, Signals] = field(default_factory=dict)
    hosts: dict[str, Signals] = field(default_factory=dict)
    host_service: dict[str, str] = field(default_factory=dict)


def _worse(old: float | None, new: float) -> float:
    return new if old is None else max(old, new)


def gather_signals(engine: Engine, now_ms: int) -> EntitySignals:
    """Saturation, error and availability signals per service and host (PromQL, instant)."""
    out = EntitySignals()
    for signal, template in SIGNAL_QUERIES:
        for by, table in (("service", out.services), ("instance", out.hosts)):
            try:
                res = engine.instant(template.format(by=by), now_ms)
            except PerfintelError:
                continue
            for s in res.series:
                key = dict(s.labels).get(by)
                v = float(s.values[0])
                if not key or not math.isfinite(v):
                    continue
                if by == "instance":
                    key = host_of(key)
                sig = table.setdefault(key, Signals())
                setattr(sig, signal, _worse(getattr(sig, signal), min(1.0, max(0.0, v))))
    try:
        res = engine.instant("count by (service, instance) (node_load1)", now_ms)
        for s in res.series:
            d = dict(s.labels)
            if d.get("service") and d.get("instance"):
                out.host_service[host_of(d["instance"])] = d["service"]
    except PerfintelError:
        pass
    return out


@dataclass
class Candidate:
    """A series whose online anomaly score crossed 1 in the window."""

    source: LabelSet
    peak_score: float
    peak_ms: int


@dataclass
class WarmUp:
    """The analysed series still in the detector's warm-up (no score before their history
    spans ``WARMUP_MS``), per service (``None``: all series): ``[analysed, warming, the
    time the first warming one gets scores (ms, 0 if none)]``."""

    by_service: dict[str | None, list[int]] = field(default_factory=dict)

    def add(self, service: str | None, ready_ms: int | None) -> None:
        for key in {None, service}:
            c = self.by_service.setdefault(key, [0, 0, 0])
            c[0] += 1
            if ready_ms is not None:
                c[1] += 1
                c[2] = ready_ms if not c[2] else min(c[2], ready_ms)

    def doc(self, service: str | None) -> dict[str, Any]:
        analysed, warming, ready = self.by_service.get(service, [0, 0, 0])
        return {
            "seconds": WARMUP_MS / 1000,
            "series": analysed,
            "warming": warming,
            "first_ready": ready or None,
        }


def anomaly_shares(
    store: SampleReader,
    start_ms: int,
    end_ms: int,
    limits: QueryLimits,
    signals: EntitySignals,
    warmup: WarmUp | None = None,
) -> list[Candidate]:
    """Fill ``anomaly_share`` per entity from the stored ``anomaly_score`` series; return
    the series that crossed 1, highest peak first. ``warmup``, if given, counts the series
    still warming up: the first stored score in the window is taken as the series' first
    sample when it is later than the window's start (a minute of slack; with the window
    at least ``WARMUP_MS`` long, as by default, a series still warming always is)."""
    sel = parse_selector("anomaly_score")
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    candidates = []
    for s in store.select(sel, start_ms, end_ms, limits=limits):
        finite = np.isfinite(s.values)
        v = s.values[finite]
        if not len(v):
            continue
        first = int(s.timestamps[0])
        ready = first + WARMUP_MS
        born = first > start_ms + MINUTE_MS  # first scored inside the window: a new series
        if warmup is not None:
            warmup.add(dict(s.labels).get("service"), ready if born and ready > end_ms else None)
        over = int((v > 1.0).sum())
        # the share counts scored points: a new series' warm-up hour is stored as 0s, which
        # are no evidence that it behaved (they diluted a new host's share for three hours)
        scored = s.values[finite & (s.timestamps >= ready)] if born else v
        service, host = _entity_keys(s.labels)
        for kind, key in (("service", service), ("host", host)):
            if key:
                c = counts[(kind, key)]
                c[0] += int((scored > 1.0).sum())
                c[1] += len(scored)
        if over:
            i = int(np.nanargmax(np.where(np.isfinite(s.values), s.values, -np.inf)))
            source = _source_labels(s.labels)
            if source is not None:
                candidates.append(Candidate(source, float(s.values[i]), int(s.timestamps[i])))
    for (kind, key), (over, total) in counts.items():
        table = signals.services if kind == "service" else signals.hosts
        table.setdefault(key, Signals()).anomaly_share = over / total if total else 0.0
    candidates.sort(key=lambda c: -c.peak_score)
    return candidates


def _source_labels(labels: LabelSet) -> LabelSet | None:
    d = dict(labels)
    name = d.pop("for", None)
    if not name:
        return None
    d[METRIC_NAME] = name
    return tuple(sorted(d.items()))


def exact_selector(labels: LabelSet) -> Selector:
    return Selector(tuple(Matcher(k, MatchOp.EQ, v) for k, v in labels))


def _sparkline(ts: np.ndarray, values: np.ndarray, points: int = 60) -> dict[str, Any]:
    """At most ``points`` means of equal runs of samples, to 4 significant digits, with the
    span they cover (a sparkline needs the shape, not every timestamp)."""
    n = len(ts)
    if not n:
        return {"start": None, "end": None, "values": []}
    edges = np.linspace(0, n, min(n, points) + 1).astype(int)
    out: list[float | None] = []
    for a, b in itertools.pairwise(edges.tolist()):
        chunk = values[a:b]
        ok = chunk[np.isfinite(chunk)]
        out.append(float(f"{float(ok.mean()):.4g}") if len(ok) else None)
    return {"start": int(ts[0]), "end": int(ts[-1]), "values": out}


def explain_anomalies(
    store: SampleReader,
    candidates: list[Candidate],
    start_ms: int,
    end_ms: int,
    *,
    top: int,
    max_samples: int | None,
) -> list[dict[str, Any]]:
    """The top candidates explained by the detect orchestration (the same detector as online,
    with a day of warm-up), each with a sparkline of the window: those it confirms first, by
    severity, then by online score (a series the online detector had seen for a few samples
    can score 1e16 on its first move; the orchestration, with its day of warm-up, tells)."""
    out: list[dict[str, Any]] = []
    options = an.DetectOptions(
        threshold=an.threshold_of("medium"),
        warmup_ms=DAY_MS,
        max_series=1,
        max_samples=max_samples,
        engine="lockstep",
    )
    rank = {name: k for k, name in enumerate(SEVERITIES)}
    for c in candidates[: 3 * top]:
        try:
            report = an.detect(store, exact_selector(c.source), start_ms, end_ms, options)
        except PerfintelError:
            continue
        if not report.series:
            continue
        s = report.series[0]
        # the worst event first: a critical shift's NAB score may be 0 (alarms rest after an
        # earlier one), so its score alone would show a low blip before it instead
        events = sorted(s.events, key=lambda e: (-rank.get(e.severity, 0), -e.peak_score))
        d = dict(c.source)
        item: dict[str, Any] = {
            "labels": d,
            "metric": d.get(METRIC_NAME, ""),
            "service": d.get("service"),
            "host": host_of(d["instance"]) if d.get("instance") else None,
            "online_peak_score": c.peak_score,
            "sparkline": _sparkline(s.timestamps, s.values),
        }
        if events:
            e = events[0]
            item.update(
                start=e.start_ms,
                end=e.end_ms,
                peak_time=e.peak_ms,
                peak_score=e.peak_score,
                value=_num(e.peak_value),
                expected=_num(e.expected),
                expected_lower=_num(e.expected_lower),
                expected_upper=_num(e.expected_upper),
                severity=e.severity,
                detector=e.detector,
                explanation=e.explanation,
            )
        else:
            item.update(
                start=c.peak_ms,
                end=c.peak_ms,
                peak_time=c.peak_ms,
                peak_score=None,
                severity="low",
                detector="online",
                explanation=(
                    f"outside its expected band (online anomaly score {c.peak_score:.3g}); "
                    "not confirmed by the detector with a day of warm-up"
                ),
            )
        out.append(item)
    out.sort(
        key=lambda a: (
            a["peak_score"] is None,
            -rank.get(a["severity"], 0),
            -a["online_peak_score"],
        )
    )
    return out[:top]


def _num(v: float) -> float | None:
    return v if math.isfinite(v) else None


def capacity_risks(
    store: SampleReader, now_ms: int, *, horizon_days: float, max_samples: int | None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Exhaustion times of the disks and memory of every host, soonest first; and errors."""
    window = choose_window(
        round(horizon_days * DAY_MS), step_ms=5 * MINUTE_MS, history_ms=7 * DAY_MS
    )
    risks: list[dict[str, Any]] = []
    problems: list[str] = []
    for resource, usage, capacity in CAPACITY_RESOURCES:
        try:
            analysis = cap.analyze(
                store,
                parse_selector(usage),
                parse_selector(capacity),
                window,
                scenarios=(Scenario("baseline"),),
                usage_kind="available",
                resource=resource,
                end_ms=now_ms,
                max_samples=max_samples,
            )
        except PerfintelError as exc:
            problems.append(f"capacity of {resource}: {exc}")
            continue
        for p in analysis.resources:
            b = p.report.baseline
            d = dict(p.labels)
            risks.append(
                {
                    "resource": resource,
                    "labels": d,
                    "service": d.get("service"),
                    "host": host_of(d["instance"]) if d.get("instance") else None,
                    "utilisation_now": _num(p.report.utilisation_now),
                    "days_p10": b.days_p10,
                    "days_p50": b.days_p50,
                    "days_p90": b.days_p90,
                    "probability": b.probability,
                    "summary": p.report.summary,
                    "history_days": p.report.history_days,
                    # listed once the history is longer (``analysis.capacity.SHORT_HISTORY_DAYS``)
                    "beyond_history": p.report.beyond_history,
                }
            )
    risks.sort(key=lambda r: (r["days_p50"] is None, r["days_p50"] or 0.0, r["days_p10"] or 0.0))
    return risks, problems
