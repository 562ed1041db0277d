"""Root cause of an alerting incident: its time and scope from its alerts, then the ranking.

The alerting package never imports this module: ``perfintel.api.app`` builds an
:class:`IncidentAnalyzer` over the store and hands its bound methods to the
notification pipeline as hooks (``causes``, ``root_cause``, ``related``), and
the root-cause API uses :func:`incident_scope` for ``{"incident": id}``.

An incident's alerts are given as ``(labels, starts_at)`` pairs. Its time is
when its first alert started; its scope is a selector over the values of the
alerts' scope labels (``service`` first, widened by the declared dependencies
of those services; else ``host``/``node``, ``instance``, ``pod``, ``job``).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from perfintel.analysis.rootcause import Cause, DependencyGraph
from perfintel.errors import BadInputError, PerfintelError
from perfintel.model import LabelSet, metric_name, parse_selector
from perfintel.storage.base import SampleReader

from . import rca

log = logging.getLogger(__name__)

#: labels that scope an incident's analysis, widest useful first
SCOPE_LABELS = ("service", "host", "node", "instance", "pod", "job")
#: causes attached to an incident when it opens
ATTACHED_CAUSES = 5
#: analyses remembered (one per distinct set of alerts)
CACHE_SIZE = 64

AlertScope = tuple[Mapping[str, str], float]  # (labels, starts_at in Unix seconds)


@dataclass(frozen=True)
class IncidentScope:
    time_ms: int
    selector: str
    graph: DependencyGraph | None


def incident_scope(
    alerts: Sequence[AlertScope], dependencies: Mapping[str, Sequence[str]] | None = None
) -> IncidentScope:
    """The time and candidate selector of an incident from its alerts (see the module doc).

    Raises ``BadInputError`` when the alerts carry none of :data:`SCOPE_LABELS`.
    """
    if not alerts:
        raise BadInputError("the incident has no alerts")
    starts = [s for _, s in alerts if s > 0]
    at = min(starts) if starts else time.time()
    deps = {k: list(v) for k, v in (dependencies or {}).items()}
    for name in SCOPE_LABELS:
        values = {str(labels[name]) for labels, _ in alerts if labels.get(name)}
        if not values:
            continue
        graph = None
        if name == "service" and deps:
            # a fault in a callee reaches its callers: the services the alerts' services call
            # (transitively) are candidates too
            todo = list(values)
            while todo:
                for callee in deps.get(todo.pop(), ()):
                    if callee not in values:
                        values.add(callee)
                        todo.append(callee)
            graph = DependencyGraph.from_edges([(a, b) for a, bs in deps.items() for b in bs])
        # a regex of the literal values, written as a PromQL string (backslashes and quotes
        # escaped once more)
        regex = "|".join(re.escape(v) for v in sorted(values))
        alternatives = regex.replace("\\", "\\\\").replace('"', '\\"')
        return IncidentScope(int(at * 1000), f'{{{name}=~"{alternatives}"}}', graph)
    raise BadInputError(
        "the incident's alerts carry none of the labels that scope a root-cause analysis: "
        + ", ".join(SCOPE_LABELS)
    )


def moved_with(causes: Sequence[Cause], limit: int = 10) -> dict[int, list[int]]:
    """Per cause (by series index): what followed it, directly or through its followers, in
    the order they began (breadth first)."""
    by_index = {c.index: c for c in causes}
    out: dict[int, list[int]] = {}
    for c in causes:
        seen = {c.index}
        order: list[int] = []
        todo = [f.index for f in c.followers]
        while todo and len(order) < limit:
            j = todo.pop(0)
            if j in seen:
                continue
            seen.add(j)
            order.append(j)
            if j in by_index:
                todo.extend(f.index for f in by_index[j].followers)
        out[c.index] = order
    return out


def cause_summary(
    cause: Cause, labels: Sequence[LabelSet], followed: Sequence[int]
) -> dict[str, Any]:
    """What an incident keeps of one cause: JSON-able, small."""
    return {
        "labels": dict(cause.labels),
        "series": _series_name(dict(cause.labels)),
        "score": round(float(cause.score), 4),
        "onset": datetime.fromtimestamp(cause.onset_ms / 1000, UTC).isoformat(),
        "sigma": round(float(cause.sigma), 2),
        "shape": cause.shape,
        "explanation": cause.explanation,
        "moved_with": [_series_name(dict(labels[j])) for j in followed],
    }


def _series_name(labels: Mapping[str, str]) -> str:
    rest = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{metric_name(tuple(sorted(labels.items())))}{{{rest}}}"


class IncidentAnalyzer:
    """Root-cause analyses of incidents over a store, remembered per set of alerts.

    Thread-safe: the pipeline's dispatcher thread and request workers may call
    it at once; the cache is guarded, analyses run outside the lock.
    """

    def __init__(
        self,
        reader: SampleReader,
        *,
        dependencies: Mapping[str, Sequence[str]] | None = None,
        window_ms: int = 30 * 60_000,
        baseline_ms: int = 3 * 3_600_000,
        step_ms: int | None = None,
        max_samples: int | None = None,
    ) -> None:
        self.reader = reader
        self.dependencies = dict(dependencies or {})
        self.window_ms = window_ms
        self.baseline_ms = baseline_ms
        self.step_ms = step_ms
        self.max_samples = max_samples
        self._cache: OrderedDict[tuple[Any, ...], list[dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(alerts: Sequence[AlertScope]) -> tuple[Any, ...]:
        return tuple(sorted((tuple(sorted(labels.items())), s) for labels, s in alerts))

    def known(self, alerts: Sequence[AlertScope]) -> list[dict[str, Any]]:
        """The causes of the largest already-analysed subset of ``alerts`` (the analysis made
        when their incident opened), without analysing anything: cheap enough to ask on every
        alert that joins."""
        mine = set(self._key(alerts))
        with self._lock:
            found = [(len(k), v) for k, v in self._cache.items() if set(k) <= mine]
        return max(found, key=lambda kv: kv[0])[1] if found else []

    def causes(self, alerts: Sequence[AlertScope]) -> list[dict[str, Any]]:
        """The incident's likely causes (at most :data:`ATTACHED_CAUSES`), most likely first.

        An empty list when there is nothing to analyse (no scope labels, no data):
        alerting goes on without a guess rather than failing.
        """
        key = self._key(alerts)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        try:
            scope = incident_scope(alerts, self.dependencies)
            rep = rca.root_causes(
                self.reader,
                parse_selector(scope.selector),
                scope.time_ms,
                window_ms=self.window_ms,
                baseline_ms=self.baseline_ms,
                step_ms=self.step_ms,
                limit=None,
                graph=scope.graph,
                max_samples=self.max_samples,
            )
            cone = moved_with(rep.ranked)
            top = rep.causes[:ATTACHED_CAUSES]
            out = [cause_summary(c, rep.labels, cone[c.index]) for c in top]
        except PerfintelError as exc:
            log.info("no root-cause analysis for the incident: %s", exc)
            out = []
        with self._lock:
            self._cache[key] = out
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return out

    def root_alert(self, alerts: Sequence[tuple[str, Mapping[str, str], float]]) -> str | None:
        """The fingerprint of the alert on the entity of the top cause, if any alert is on it
        (from the analysis made when the incident opened)."""
        causes = self.known([(labels, s) for _, labels, s in alerts])
        for cause in causes:
            where = {k: v for k, v in cause["labels"].items() if k in SCOPE_LABELS}
            best = max(
                alerts,
                key=lambda a: sum(1 for k, v in where.items() if a[1].get(k) == v),
                default=None,
            )
            if best is not None and any(best[1].get(k) == v for k, v in where.items()):
                return best[0]
        return None

    def related(self, alert: AlertScope, members: Sequence[AlertScope]) -> bool:
        """Whether the new alert's entity moved with the incident (is among its causes or
        what followed them, as analysed when the incident opened)."""
        labels = alert[0]
        mine = {(k, v) for k, v in labels.items() if k in SCOPE_LABELS and v}
        if not mine or not members:
            return False
        for cause in self.known(members):
            seen = {(k, v) for k, v in cause["labels"].items() if k in SCOPE_LABELS}
            if mine & seen:
                return True
            for name in cause["moved_with"]:
                if any(f'{k}="{v}"' in name for k, v in mine):
                    return True
        return False


def pipeline_hooks(analyzer: IncidentAnalyzer) -> dict[str, Any]:
    """The notification pipeline's analysis hooks (``causes``, ``root_cause``, ``related``)
    over ``analyzer``; they take the pipeline's alerts (``labels``, ``starts_at``,
    ``fingerprint``) without this module importing the alerting package."""

    def scope(a: Any) -> AlertScope:
        return dict(a.labels), float(a.starts_at)

    return {
        "causes": lambda alerts: analyzer.causes([scope(a) for a in alerts]),
        "root_cause": lambda alerts: analyzer.root_alert(
            [(a.fingerprint, dict(a.labels), float(a.starts_at)) for a in alerts]
        ),
        "related": lambda alert, members: analyzer.related(
            scope(alert), [scope(m) for m in members]
        ),
    }
