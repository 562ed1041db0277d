"""Replaying rules over stored history: how many alerts (and notifications) they would have produced.

:func:`backtest` evaluates every group at its own interval from ``start`` to
``end`` on a simulated clock, exactly as the service would have (same
engine, same lifecycle, flap control included), against a store that holds
the history. Writes of the replay (recording rules, ``ALERTS``) go to an
overlay in memory, never into the store read (:class:`OverlayStore`).

Alerts go to a sink. Any ``AlertSink`` works; one that also has
``tick(now)`` is told the simulated time before every evaluation round (a
notification pipeline run on the simulated clock, so its ``group_wait``,
``repeat_interval`` and escalation timers run as they would have), and one
with ``summary()`` adds its own counts (e.g. notifications) to the report.
The default :class:`CountingSink` counts alert updates.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from perfintel.alerting.model import Alert, AlertSink
from perfintel.alerting.rules.group import EvalOptions, GroupRuntime
from perfintel.alerting.rules.plan import reads
from perfintel.alerting.rules.reader import RoundReader
from perfintel.alerting.rules.spec import GroupSpec, RuleSpec
from perfintel.batch import SampleBatch
from perfintel.model import LabelSet, Selector
from perfintel.storage.base import (
    AppendResult,
    FlushReport,
    QueryLimits,
    SampleReader,
    SeriesRollup,
    SeriesSamples,
    StoreSize,
    StoreStats,
)
from perfintel.storage.memory import MemoryStore
from perfintel.storage.samples import dedupe_last_wins


@runtime_checkable
class ClockedSink(Protocol):
    """A sink that runs on the backtest's simulated clock."""

    def send(self, alerts: Sequence[Alert]) -> None: ...

    def tick(self, now: float) -> None: ...


class CountingSink:
    """Counts what the rules send (a ``ClockedSink``): updates, firing alerts and resolutions.

    A firing alert is counted once per label set and start; an update whose
    ``ends_at`` is not after the simulated now is a resolution.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self.updates = 0
        self._firing: set[tuple[str, float]] = set()
        self._resolved: set[tuple[str, float]] = set()

    def tick(self, now: float) -> None:
        self.now = now

    def send(self, alerts: Sequence[Alert]) -> None:
        for a in alerts:
            self.updates += 1
            key = (a.fingerprint, a.starts_at)
            if a.resolved(self.now):
                self._resolved.add(key)
            else:
                self._firing.add(key)

    def summary(self) -> dict[str, int]:
        return {
            "alert updates sent": self.updates,
            "firing alerts sent": len(self._firing),
            "resolutions sent": len(self._resolved),
        }


class OverlayStore:
    """Reads ``base`` and an in-memory overlay together; writes go to the overlay only."""

    def __init__(self, base: SampleReader) -> None:
        self.base = base
        self.overlay = MemoryStore()

    def append(self, batch: SampleBatch) -> AppendResult:
        return self.overlay.append(batch)

    def select(
        self, selector: Selector, start_ms: int, end_ms: int, *, limits: QueryLimits | None = None
    ) -> list[SeriesSamples]:
        a = self.base.select(selector, start_ms, end_ms, limits=limits)
        b = self.overlay.select(selector, start_ms, end_ms, limits=limits)
        if not b:
            return a
        merged: dict[LabelSet, SeriesSamples] = {s.labels: s for s in a}
        for s in b:
            prev = merged.get(s.labels)
            if prev is None:
                merged[s.labels] = s
            else:
                ts, vals = dedupe_last_wins(
                    np.concatenate([prev.timestamps, s.timestamps]),
                    np.concatenate([prev.values, s.values]),
                )
                merged[s.labels] = SeriesSamples(s.labels, ts, vals)
        return [merged[k] for k in sorted(merged)]

    def select_rollup(
        self,
        selector: Selector,
        start_ms: int,
        end_ms: int,
        resolution_ms: int,
        *,
        limits: QueryLimits | None = None,
    ) -> list[SeriesRollup] | None:
        return None  # raw samples only: exact, and the overlay has no tiers

    def series(
        self, selectors: Sequence[Selector], start_ms: int, end_ms: int, *, limit: int | None = None
    ) -> list[LabelSet]:
        out = set(self.base.series(selectors, start_ms, end_ms, limit=limit))
        out.update(self.overlay.series(selectors, start_ms, end_ms, limit=limit))
        return sorted(out)[:limit] if limit else sorted(out)

    def label_names(self, selectors: Sequence[Selector], start_ms: int, end_ms: int) -> list[str]:
        return sorted(
            set(self.base.label_names(selectors, start_ms, end_ms))
            | set(self.overlay.label_names(selectors, start_ms, end_ms))
        )

    def label_values(
        self, name: str, selectors: Sequence[Selector], start_ms: int, end_ms: int
    ) -> list[str]:
        return sorted(
            set(self.base.label_values(name, selectors, start_ms, end_ms))
            | set(self.overlay.label_values(name, selectors, start_ms, end_ms))
        )

    def stats(self) -> StoreStats:
        return self.overlay.stats()

    def size(self) -> StoreSize:
        return self.overlay.size()

    def flush(self, *, compact: bool = False) -> FlushReport:
        return self.overlay.flush(compact=compact)

    def close(self) -> None:
        self.overlay.close()


@dataclass
class RuleCount:
    group: str
    rule: str
    kind: str
    alerts: int = 0  # firing spells (distinct label set and start)
    series: int = 0  # distinct label sets that fired
    firing_seconds: float = 0.0
    errors: int = 0
    last_error: str = ""


@dataclass
class BacktestReport:
    start: float
    end: float
    evaluations: int
    rules: list[RuleCount]
    sink: dict[str, int] = field(default_factory=dict)

    @property
    def alerts(self) -> int:
        return sum(r.alerts for r in self.rules)


def backtest(
    specs: Sequence[GroupSpec],
    store: OverlayStore | MemoryStore,
    start: float,
    end: float,
    *,
    options: EvalOptions | None = None,
    sink: AlertSink | None = None,
) -> BacktestReport:
    """Evaluate ``specs`` from ``start`` to ``end`` (Unix seconds) and count what happened."""
    options = options or EvalOptions()
    sink = sink if sink is not None else CountingSink()
    groups = [GroupRuntime(g, options) for g in specs]
    counts: dict[tuple[str, str], RuleCount] = {}
    fired: dict[tuple[str, str], set[tuple[LabelSet, float]]] = {}
    for g in groups:
        for r in g.rules:
            if r.spec.is_alerting:
                counts[(g.spec.key, r.spec.name)] = RuleCount(g.spec.key, r.spec.name, r.spec.kind)
                fired[(g.spec.key, r.spec.name)] = set()
    queue = [(start, i) for i in range(len(groups))]
    heapq.heapify(queue)
    evaluations = 0
    last_round: float | None = None
    reader: RoundReader | None = None
    while queue and queue[0][0] <= end:
        now, i = heapq.heappop(queue)
        g = groups[i]
        if now != last_round:  # one read cache per simulated instant, shared by its groups
            reader, last_round = RoundReader(store), now
            if isinstance(sink, ClockedSink):
                sink.tick(now)
        assert reader is not None
        g.evaluate(now, store, sink, reader=reader)
        evaluations += 1
        for r in g.rules:
            if not r.spec.is_alerting:
                continue
            c = counts[(g.spec.key, r.spec.name)]
            if r.health == "err":
                c.errors += 1
                c.last_error = r.last_error
            seen = fired[(g.spec.key, r.spec.name)]
            for a in r.active.values():
                if a.reported_state == "firing":
                    c.firing_seconds += g.interval_s
                    spell = (a.labels, a.reported_starts_at)
                    if spell not in seen:
                        seen.add(spell)
                        c.alerts += 1
        heapq.heappush(queue, (now + g.interval_s, i))
    for key, seen in fired.items():
        counts[key].series = len({labels for labels, _ in seen})
    summary: dict[str, int] = {}
    get = getattr(sink, "summary", None)
    if callable(get):
        summary = dict(get())
    return BacktestReport(start, end, evaluations, list(counts.values()), summary)


def _texts(specs: Sequence[GroupSpec]) -> list[tuple[GroupSpec, RuleSpec, str]]:
    from perfintel.alerting.rules.kinds import kinds

    out: list[tuple[GroupSpec, RuleSpec, str]] = []
    for g in specs:
        for r in g.rules:
            texts = [t for t in (r.expr, r.keep_firing_while) if t]
            if r.params is not None:
                kind = kinds().get(r.kind)
                if kind is not None:
                    texts = [t for _, t in kind.expressions(r.params)]
            out.extend((g, r, t) for t in texts)
    return out


def history_margin(specs: Sequence[GroupSpec], lookback_s: float = 300.0) -> float:
    """How much history before ``start`` the rules read (ranges, offsets, kinds' histories)."""
    margin = 0.0
    for g, r, text in _texts(specs):
        for read in reads(text, int(lookback_s * 1000)):
            margin = max(margin, read.back_ms / 1000 + g.query_offset_s)
        if r.params is not None:
            margin = max(margin, _params_span(r.params) + lookback_s)
    return margin


def _params_span(params: object) -> float:
    total = 0.0
    for name in ("history", "baseline", "window", "period"):
        v = getattr(params, name, None)
        if isinstance(v, int | float):
            total += float(v)
    windows = getattr(params, "windows", None)
    if windows:
        total += max(float(w.long) for w in windows)
    return total


def selectors_of(specs: Sequence[GroupSpec]) -> list[str]:
    """Every series selector the rules read (to fetch the history of a backtest)."""
    out: dict[str, None] = {}
    for _g, _r, text in _texts(specs):
        for read in reads(text, 0):
            out[str(read.selector)] = None
    return list(out)


def summary_lines(report: BacktestReport) -> list[str]:
    hours = (report.end - report.start) / 3600
    lines = [
        f"{report.evaluations} group evaluations over {hours:.1f} h: "
        f"{report.alerts} alerts from {sum(1 for r in report.rules if r.alerts)} rules"
    ]
    for k, v in report.sink.items():
        lines.append(f"{k}: {v}")
    return lines
