"""Evaluating a rule group at one time: PromQL and kinds in, series and alert updates out.

:class:`GroupRuntime` holds a group's rules and their state (the active
alerts of each alerting rule). :meth:`GroupRuntime.evaluate` runs every rule
in order at ``now``, as Prometheus's ``Group.Eval``:

* recording rules: the expression's result, renamed and relabelled (group
  ``labels``, then the rule's), appended to the store; a rule later in the
  group that reads the name sees it;
* alerting rules (Prometheus's and perfintel's kinds): results become alert
  label sets (the series' labels without ``__name__``, the group's and the
  rule's labels expanded as templates, ``alertname``), annotations are
  expanded, and :func:`.lifecycle.advance` moves the alerts along;
* ``ALERTS{alertstate=...}`` and ``ALERTS_FOR_STATE`` series are written for
  pending and firing alerts, staleness markers for series that went away;
* alert updates are handed to the sink (:func:`.lifecycle.to_send`), and
  changed alert states to the state store.

A failing rule records its error (``health="err"``) and the others still run.
The clock is a parameter: the service passes wall-clock time, the backtest
and ``rules test`` a simulated one. Not thread-safe: a group is evaluated by
one thread at a time (its scheduler).
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from perfintel.alerting.model import AlertSink
from perfintel.alerting.rules import lifecycle
from perfintel.alerting.rules.kinds import KindContext, kinds
from perfintel.alerting.rules.lifecycle import ActiveAlert, FlapSettings, Result
from perfintel.alerting.rules.metrics import RuleMetrics
from perfintel.alerting.rules.plan import ThresholdPlan, reads, threshold_plan
from perfintel.alerting.rules.reader import RoundReader
from perfintel.alerting.rules.spec import ALERT, RECORD, GroupSpec, RuleSpec
from perfintel.alerting.rules.template import RuleTemplate, TemplateError, template_data
from perfintel.batch import SampleBatch
from perfintel.errors import LeaseLostError, PerfintelError, QueryError
from perfintel.model import METRIC_NAME, STALE_NAN, LabelSet, label_set
from perfintel.query.promql.engine import Engine
from perfintel.query.settings import QuerySettings
from perfintel.storage.base import Store

log = logging.getLogger(__name__)

ALERTS_METRIC = "ALERTS"
ALERTS_FOR_STATE_METRIC = "ALERTS_FOR_STATE"


class AlertStateStore(Protocol):
    """Where alert states survive restarts (SQL in the service; a dict in tests)."""

    def load(self, group_key: str) -> dict[str, list[ActiveAlert]]:
        """Active alerts of the group's rules, by rule name."""
        ...

    def save(
        self,
        group_key: str,
        updates: Mapping[str, tuple[Sequence[ActiveAlert], Sequence[LabelSet]]],
    ) -> None:
        """Per rule name: the alerts to write (insert or replace) and the label sets to delete."""
        ...

    def drop_group(self, group_key: str) -> None: ...


class MemoryAlertState:
    """An ``AlertStateStore`` in a dict (tests and the backtest)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict[LabelSet, ActiveAlert]] = {}

    def load(self, group_key: str) -> dict[str, list[ActiveAlert]]:
        out: dict[str, list[ActiveAlert]] = {}
        for (g, rule), alerts in self.rows.items():
            if g == group_key:
                out[rule] = [_copy(a) for a in alerts.values()]
        return out

    def save(
        self,
        group_key: str,
        updates: Mapping[str, tuple[Sequence[ActiveAlert], Sequence[LabelSet]]],
    ) -> None:
        for rule_name, (changed, deleted) in updates.items():
            rows = self.rows.setdefault((group_key, rule_name), {})
            for a in changed:
                rows[a.labels] = _copy(a)
            for key in deleted:
                rows.pop(key, None)

    def drop_group(self, group_key: str) -> None:
        for k in [k for k in self.rows if k[0] == group_key]:
            del self.rows[k]


def _copy(a: ActiveAlert) -> ActiveAlert:
    import dataclasses

    return dataclasses.replace(a, changes=list(a.changes), dirty=False)


@dataclass
class EvalOptions:
    """What every group's evaluation shares (from ``alerting.*`` settings)."""

    default_interval_s: float = 60.0
    resend_delay_s: float = 60.0
    external_url: str = ""
    external_labels: Mapping[str, str] = field(default_factory=dict)
    flap: FlapSettings = field(default_factory=FlapSettings)
    query: QuerySettings = field(default_factory=QuerySettings)
    write_alerts_series: bool = True


@dataclass
class RuleRuntime:
    """One rule and what Prometheus reports about it."""

    spec: RuleSpec
    health: str = "unknown"
    last_error: str = ""
    last_evaluation: float | None = None
    evaluation_time: float = 0.0
    #: alert label set -> alert (alerting rules only)
    active: dict[LabelSet, ActiveAlert] = field(default_factory=dict)
    label_templates: dict[str, RuleTemplate] = field(default_factory=dict)
    annotation_templates: dict[str, RuleTemplate] = field(default_factory=dict)
    #: labels of a recording rule (not templates)
    plain_labels: dict[str, str] = field(default_factory=dict)
    #: alert label sets the state store holds
    persisted: set[LabelSet] = field(default_factory=set)
    #: a plain threshold rule, evaluated without the PromQL engine
    plan: ThresholdPlan | None = None

    @property
    def state(self) -> str:
        """The rule's state: the most advanced of its alerts' (inactive < pending < firing)."""
        states = {a.reported_state for a in self.active.values()}
        for s in ("firing", "pending"):
            if s in states:
                return s
        return "inactive"

    def active_alerts(self) -> list[ActiveAlert]:
        """Pending and firing alerts (what ``/api/v1/alerts`` lists)."""
        return [a for a in self.active.values() if a.reported_state != "inactive"]


@dataclass
class GroupReport:
    alerts_sent: int = 0
    samples_written: int = 0
    failures: int = 0


class GroupRuntime:
    """A loaded group: its spec, its rules' state, its evaluation."""

    def __init__(
        self,
        spec: GroupSpec,
        options: EvalOptions,
        *,
        state: AlertStateStore | None = None,
        metrics: RuleMetrics | None = None,
    ) -> None:
        self.spec = spec
        self.options = options
        self.state = state
        self.metrics = metrics
        self.interval_s = spec.interval_s or options.default_interval_s
        self.last_evaluation: float | None = None
        self.evaluation_time = 0.0
        self._previous_series: set[LabelSet] = set()
        self._may_write: Callable[[], bool] | None = None
        self.rules = [self._runtime(r) for r in spec.rules]
        self._windows = self._prefetch_windows()
        # names written by recording rules that a later rule of the group reads
        self._read_later: set[str] = set()
        for i, r in enumerate(spec.rules):
            if r.kind == RECORD and any(r.name in later.expr for later in spec.rules[i + 1 :]):
                self._read_later.add(r.name)
        if metrics is not None:
            metrics.group_rules.labels(spec.key).set(len(self.rules))
            metrics.group_interval.labels(spec.key).set(self.interval_s)
        #: what the API shows: replaced (never mutated) after every change
        self.status = group_status(self)

    def _runtime(self, r: RuleSpec) -> RuleRuntime:
        tmpl_name = f"__alert_{r.name}"
        url = self.options.external_url
        labels = {**self.spec.labels, **r.labels}
        if r.kind == RECORD:
            return RuleRuntime(r, plain_labels=labels)
        return RuleRuntime(
            r,
            label_templates={k: RuleTemplate(v, tmpl_name, url) for k, v in labels.items()},
            annotation_templates={
                k: RuleTemplate(v, tmpl_name, url) for k, v in r.annotations.items()
            },
            plan=threshold_plan(r.expr) if r.kind == ALERT else None,
        )

    def _prefetch_windows(self) -> dict[str, int]:
        """Metric name -> how far back (ms) the group's PromQL rules read it."""
        lookback = self.options.query.lookback_ms
        out: dict[str, int] = {}
        for r in self.spec.rules:
            for text in (r.expr, r.keep_firing_while):
                if not text or r.kind not in (RECORD, ALERT):
                    continue
                for read in reads(text, lookback):
                    if read.name is not None and not read.pinned:
                        out[read.name] = max(out.get(read.name, 0), read.back_ms)
        return out

    def _check_write(self) -> None:
        if self._may_write is not None and not self._may_write():
            raise LeaseLostError(f"rule group {self.spec.key}: its shard's lease is not ours now")

    # -- state across reloads and restarts --

    def adopt(self, old: GroupRuntime) -> None:
        """Take over the alerts of the same rules from the group this one replaces (a reload)."""
        by_name = {(r.spec.name, r.spec.kind): r for r in old.rules}
        for r in self.rules:
            prev = by_name.get((r.spec.name, r.spec.kind))
            if prev is not None and r.spec.is_alerting:
                r.active = prev.active
        self._previous_series = old._previous_series
        self.last_evaluation = old.last_evaluation
        self.status = group_status(self)

    def restore(self, *, reset: bool = False) -> int:
        """Load alert states saved by an earlier process; the number of alerts restored.
        ``reset``: forget the alerts held in memory first (another process evaluated the
        group meanwhile: the database has its latest states, ``for`` timers included)."""
        if self.state is None:
            return 0
        if reset:
            for r in self.rules:
                r.active.clear()
                r.persisted.clear()
        saved = self.state.load(self.spec.key)
        n = 0
        for r in self.rules:
            for a in saved.get(r.spec.name, []):
                a.dirty = False
                r.active[a.labels] = a
                r.persisted.add(a.labels)
                n += 1
        if reset and self.options.write_alerts_series:
            # the ALERTS series the other process wrote last: marked stale once they go away
            self._previous_series = {ls for r in self.rules for ls, _ in _alert_series(r)}
        self.status = group_status(self)
        return n

    # -- evaluation --

    def evaluate(
        self,
        now: float,
        store: Store,
        sink: AlertSink | None,
        *,
        reader: RoundReader | None = None,
        may_write: Callable[[], bool] | None = None,
    ) -> GroupReport:
        """Evaluate every rule at ``now`` (Unix seconds); ``reader`` may be shared by a round.

        ``may_write``: asked before each write to the store and before sending (the rule
        shard's lease, ``perfintel.alerting.rules.shards``); when it says no, nothing more
        is written or sent and ``LeaseLostError`` is raised."""
        t0 = time.perf_counter()
        key = self.spec.key
        reader = reader or RoundReader(store)
        engine = Engine(reader, self.options.query)
        query_ms = round((now - self.spec.query_offset_s) * 1000)
        report = GroupReport()
        reader.prefetch(self._windows, query_ms)
        self._may_write = may_write
        series_batch: list[tuple[LabelSet, float]] = []
        written_now: set[LabelSet] = set()
        alerts_series: list[tuple[LabelSet, float]] = []
        to_send: list[lifecycle.Alert] = []
        for rule in self.rules:
            r0 = time.perf_counter()
            try:
                if rule.spec.kind == RECORD:
                    out = self._record(rule, engine, query_ms)
                    if rule.spec.name in self._read_later:
                        report.samples_written += self._append(store, out, query_ms)
                        reader.forget(rule.spec.name)
                        written_now.update(ls for ls, _ in out)
                    else:
                        series_batch.extend(out)
                else:
                    self._alert(rule, engine, reader, now, query_ms)
                    to_send.extend(self._send(rule, now))
                    if self.options.write_alerts_series:
                        alerts_series.extend(_alert_series(rule))
                rule.health, rule.last_error = "ok", ""
            except (PerfintelError, TemplateError) as exc:
                rule.health, rule.last_error = "err", str(exc)
                report.failures += 1
                log.warning("rule %s in group %s failed: %s", rule.spec.name, key, exc)
            except Exception as exc:  # a bug in one rule must not stop the group
                rule.health, rule.last_error = "err", f"internal error: {exc}"
                report.failures += 1
                log.exception("rule %s in group %s failed", rule.spec.name, key)
            rule.last_evaluation = now
            rule.evaluation_time = time.perf_counter() - r0
            if self.metrics is not None:
                self.metrics.evaluation_duration.observe(rule.evaluation_time)
        written = series_batch + alerts_series
        current = {ls for ls, _ in written} | written_now
        stale = [(ls, STALE_NAN) for ls in self._previous_series - current]
        self._previous_series = current
        report.samples_written += self._append(store, written + stale, query_ms)
        if to_send and sink is not None:
            self._check_write()
            try:
                sink.send(to_send)
                report.alerts_sent = len(to_send)
            except Exception:
                log.exception("the alert sink refused %d alerts of %s", len(to_send), key)
                if self.metrics is not None:
                    self.metrics.sink_errors.inc(len(to_send))
                for rule in self.rules:  # send them again next time
                    for a in rule.active.values():
                        if a.last_sent_at == now:
                            a.last_sent_at = None
        self._persist()
        self.last_evaluation = now
        self.evaluation_time = time.perf_counter() - t0
        self.status = group_status(self)
        if self.metrics is not None:
            m = self.metrics
            m.evaluations.labels(key).inc(len(self.rules))
            if report.failures:
                m.failures.labels(key).inc(report.failures)
            m.group_duration.observe(self.evaluation_time)
            m.group_last_duration.labels(key).set(self.evaluation_time)
            m.group_last_evaluation.labels(key).set(now)
            m.alerts_sent.inc(report.alerts_sent)
        return report

    def _append(self, store: Store, samples: Sequence[tuple[LabelSet, float]], t_ms: int) -> int:
        if not samples:
            return 0
        self._check_write()
        batch = SampleBatch(
            [ls for ls, _ in samples],
            np.arange(len(samples), dtype=np.int32),
            np.full(len(samples), t_ms, dtype=np.int64),
            np.array([v for _, v in samples], dtype=np.float64),
        )
        return store.append(batch).accepted

    def _record(self, rule: RuleRuntime, engine: Engine, t_ms: int) -> list[tuple[LabelSet, float]]:
        out: list[tuple[LabelSet, float]] = []
        seen: set[LabelSet] = set()
        for labels, value in _vector(engine, rule.spec.expr, t_ms):
            d = dict(labels)
            d.update(rule.plain_labels)
            d[METRIC_NAME] = rule.spec.name
            ls = label_set(d)
            if ls in seen:
                raise QueryError(
                    "vector contains metrics with the same labelset after applying rule labels"
                )
            seen.add(ls)
            out.append((ls, value))
        if self.spec.limit and len(out) > self.spec.limit:
            raise QueryError(f"exceeded limit of {self.spec.limit} with {len(out)} series")
        return out

    def _alert(
        self, rule: RuleRuntime, engine: Engine, reader: RoundReader, now: float, t_ms: int
    ) -> None:
        spec = rule.spec
        results: dict[LabelSet, Result] = {}
        if spec.kind == ALERT:
            found = (
                rule.plan.evaluate(reader, t_ms, self.options.query.lookback_ms)
                if rule.plan is not None
                else _vector(engine, spec.expr, t_ms)
            )
            for labels, value in found:
                self._add_result(rule, results, labels, value, {}, {}, held=False)
            missing = [
                k for k, a in rule.active.items() if a.state != "inactive" and k not in results
            ]
            if spec.keep_firing_while and missing:
                held: dict[LabelSet, Result] = {}
                for labels, value in _vector(engine, spec.keep_firing_while, t_ms):
                    self._add_result(rule, held, labels, value, {}, {}, held=True)
                for k in missing:
                    if k in held:
                        results[k] = held[k]
        else:
            kind = kinds()[spec.kind]
            ctx = KindContext(reader, engine, t_ms)
            by_labels: dict[LabelSet, Result] = {}
            for f in kind.evaluate(spec.params, ctx):
                if not (f.trigger or f.held):
                    continue
                held_only = f.held and not f.trigger
                self._add_result(
                    rule,
                    by_labels,
                    tuple(sorted(f.labels.items())),
                    f.value,
                    f.explanation,
                    f.annotations,
                    held=held_only,
                )
            results = by_labels
        lifecycle.advance(
            rule.active,
            results,
            now,
            for_s=spec.for_s,
            keep_firing_for_s=spec.keep_firing_for_s,
            flap=self.options.flap,
        )
        if self.spec.limit:
            n = sum(1 for a in rule.active.values() if a.state != "inactive")
            if n > self.spec.limit:
                deleted = list(rule.active)
                rule.active.clear()
                if self.state is not None:
                    self.state.save(self.spec.key, {spec.name: ([], deleted)})
                    rule.persisted.difference_update(deleted)
                raise QueryError(f"exceeded limit of {self.spec.limit} with {n} alerts")

    def _add_result(
        self,
        rule: RuleRuntime,
        results: dict[LabelSet, Result],
        labels: LabelSet,
        value: float,
        explanation: Mapping[str, object],
        default_annotations: Mapping[str, str],
        *,
        held: bool,
    ) -> None:
        sample = dict(labels)
        data = template_data(
            sample, value, self.options.external_labels, self.options.external_url, explanation
        )
        out = {k: v for k, v in labels if k != METRIC_NAME}
        for k, tmpl in rule.label_templates.items():
            text = _expand(tmpl, data)
            if text:
                out[k] = text
            else:
                out.pop(k, None)
        out["alertname"] = rule.spec.name
        key = label_set(out)
        if key in results:
            raise QueryError(
                "vector contains metrics with the same labelset after applying alert labels"
            )
        annotations = dict(default_annotations)
        for k, tmpl in rule.annotation_templates.items():
            annotations[k] = _expand(tmpl, data)
        results[key] = Result(key, annotations, value, held, explanation)

    def _send(self, rule: RuleRuntime, now: float) -> list[lifecycle.Alert]:
        return lifecycle.to_send(
            rule.active,
            now,
            interval_s=self.interval_s,
            resend_delay_s=self.options.resend_delay_s,
            generator_url=self._generator_url(rule.spec),
            external_labels=self.options.external_labels,
        )

    def _generator_url(self, spec: RuleSpec) -> str:
        base = self.options.external_url.rstrip("/")
        if not base:
            return ""
        if spec.kind == ALERT:
            q = urllib.parse.quote_plus(spec.expr)
            return f"{base}/graph?g0.expr={q}&g0.tab=1"
        q = urllib.parse.quote_plus(spec.name)
        return f"{base}/alerts?rule={q}"

    def _persist(self) -> None:
        """Write the alerts that changed in this evaluation (one transaction for the group)."""
        if self.state is None:
            return
        updates: dict[str, tuple[list[ActiveAlert], list[LabelSet]]] = {}
        for rule in self.rules:
            if not rule.spec.is_alerting:
                continue
            changed = [a for a in rule.active.values() if a.dirty]
            deleted = [k for k in rule.persisted if k not in rule.active]
            if changed or deleted:
                updates[rule.spec.name] = (changed, deleted)
        if not updates:
            return
        try:
            self.state.save(self.spec.key, updates)
        except PerfintelError:
            log.exception("cannot save the alert states of group %s", self.spec.key)
            if self.metrics is not None:
                self.metrics.state_errors.inc()
            return  # still dirty: written with the next evaluation
        for rule in self.rules:
            if rule.spec.name in updates:
                changed, deleted = updates[rule.spec.name]
                for a in changed:
                    a.dirty = False
                rule.persisted.difference_update(deleted)
                rule.persisted.update(a.labels for a in changed)


def _expand(tmpl: RuleTemplate, data: Mapping[str, object]) -> str:
    try:
        return tmpl.render(data)
    except TemplateError as exc:
        log.warning("expanding alert template failed: %s", exc)
        return f"<error expanding template: {exc}>"


def _vector(engine: Engine, expr: str, t_ms: int) -> list[tuple[LabelSet, float]]:
    res = engine.instant(expr, t_ms)
    if res.result_type == "scalar" and res.scalar is not None:
        return [((), float(res.scalar[1]))]
    if res.result_type != "vector":
        raise QueryError(f"rule result is not a vector or scalar (got {res.result_type})")
    return [(s.labels, float(s.values[0])) for s in res.series]


def _alert_series(rule: RuleRuntime) -> list[tuple[LabelSet, float]]:
    out: list[tuple[LabelSet, float]] = []
    for a in rule.active.values():
        state = a.reported_state
        if state == "inactive":
            continue
        base = dict(a.labels)
        out.append((label_set({**base, METRIC_NAME: ALERTS_METRIC, "alertstate": state}), 1.0))
        out.append((label_set({**base, METRIC_NAME: ALERTS_FOR_STATE_METRIC}), a.active_at))
    return out


# --- status for the API -----------------------------------------------------------------


@dataclass(frozen=True)
class AlertStatus:
    labels: LabelSet
    annotations: Mapping[str, str]
    state: str
    active_at: float
    value: float
    keep_firing_since: float | None
    fired_at: float | None
    flapping: bool
    explanation: Mapping[str, object]


@dataclass(frozen=True)
class RuleStatus:
    spec: RuleSpec
    health: str
    last_error: str
    last_evaluation: float | None
    evaluation_time: float
    state: str
    alerts: tuple[AlertStatus, ...]


@dataclass(frozen=True)
class GroupStatus:
    spec: GroupSpec
    interval_s: float
    last_evaluation: float | None
    evaluation_time: float
    rules: tuple[RuleStatus, ...]


def group_status(g: GroupRuntime) -> GroupStatus:
    """An immutable copy of what the API shows (taken by the evaluating thread)."""
    rules = []
    for r in g.rules:
        alerts = tuple(
            AlertStatus(
                a.labels,
                dict(a.annotations),
                a.reported_state,
                a.active_at,
                a.value,
                a.keep_firing_since,
                a.fired_at,
                a.flapping,
                dict(a.explanation),
            )
            for a in r.active_alerts()
        )
        rules.append(
            RuleStatus(
                r.spec,
                r.health,
                r.last_error,
                r.last_evaluation,
                r.evaluation_time,
                r.state,
                alerts,
            )
        )
    return GroupStatus(g.spec, g.interval_s, g.last_evaluation, g.evaluation_time, tuple(rules))
