"""The notification core: alerts in, notification decisions out, as a function of the clock.

``NotifyCore`` holds the state (alerts by fingerprint, incidents, silences, the
learned dependency graph) and never touches SQL, HTTP or the wall clock: every
method takes ``now``. ``receive`` records alerts (deduplicated by fingerprint);
``tick`` mutes, correlates, routes and decides what to send, returning
``Notification`` records. The pipeline persists what ``tick`` changed (see
``changes``) together with the notifications, in one transaction.

Per incident and route (a *thread*) the first message goes out ``group_wait``
after the incident reached that route; later alerts of the same incident are
updates of the incident, not new pages: an update goes out only when the
incident gets worse (a higher ``severity`` than announced, at most every
``group_interval``); a still-firing, unacknowledged, non-flapping incident
without an escalation policy is repeated every ``repeat_interval``; once every
alert of the incident has been resolved for the hold time one resolved message
goes to each thread that announced it. The hold is ``resolve_hold``, doubled at
each re-opening (hysteresis), the flap window once the incident flaps. An alert
firing again within the flap window after its incident resolved re-opens it
instead of paging anew, and the re-opening is announced only if it lasts longer
than the incident's hold.

One incident, one thread per destination: alerts of an incident that only fell
through to the root route (the default receiver) join the thread of the specific
route the incident's most severe alert matched, unless the default receiver was
told first. During a storm (or when a twin with the same symptom opened just
before), an incident that is not the storm's waits ``group_interval`` before its
first message, so that one whose symptom turns out to be part of the storm is
merged instead of notified; one whose alerts resolve meanwhile is still notified.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from perfintel.alerting import escalation
from perfintel.alerting.incidents import (
    SEVERITY_RANK,
    CausesHook,
    Correlator,
    DependencyGraph,
    Incident,
    Relatedness,
    RootCauseHook,
    Thread,
    first_started,
    severity_rank,
    title_of,
)
from perfintel.alerting.matchers import matches_all
from perfintel.alerting.model import Alert
from perfintel.alerting.notification import (
    AlertSnapshot,
    Kind,
    Notification,
    common_items,
    idempotency_key,
)
from perfintel.alerting.notify_config import EscalationPolicy, NotifyConfig, Receiver, Route
from perfintel.alerting.silences import Inhibitor, Silence
from perfintel.alerting.time_intervals import in_any
from perfintel.errors import NotFoundError
from perfintel.model import LabelSet

RESOLVED_RETENTION = 3600.0  # a resolved alert outside open incidents is forgotten after this
INCIDENT_RETENTION = 7 * 86400.0  # resolved incidents stay in memory (the database keeps all)

log = logging.getLogger(__name__)
#: severity rank of a page (``critical``/``page``): such a thread is never held back
_PAGE_RANK = SEVERITY_RANK["critical"]


@dataclass
class AlertRecord:
    alert: Alert
    received_at: float
    updated_at: float
    incident: str | None = None
    closed_start: float | None = None  # an episode closed by hand: do not correlate it again
    silenced_by: list[str] = field(default_factory=list)
    inhibited_by: list[str] = field(default_factory=list)
    receivers: list[str] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        return self.alert.fingerprint

    def muted(self) -> bool:
        return bool(self.silenced_by or self.inhibited_by)


@dataclass
class Changes:
    alerts: set[str] = field(default_factory=set)
    forgotten_alerts: set[str] = field(default_factory=set)
    incidents: set[str] = field(default_factory=set)
    silences: set[str] = field(default_factory=set)
    graph: bool = False
    episodes: list[tuple[AlertRecord, float]] = field(default_factory=list)  # resolved episodes

    def clear(self) -> None:
        self.alerts.clear()
        self.forgotten_alerts.clear()
        self.incidents.clear()
        self.silences.clear()
        self.graph = False
        self.episodes.clear()


class NotifyCore:
    def __init__(
        self,
        config: NotifyConfig,
        *,
        extra_receivers: Mapping[str, Receiver] | None = None,
        extra_policies: Sequence[EscalationPolicy] = (),
        related: Relatedness | None = None,
        root_cause: RootCauseHook | None = None,
        causes: CausesHook | None = None,
    ) -> None:
        self.alerts: dict[str, AlertRecord] = {}
        self.incidents: dict[str, Incident] = {}
        self.silences: dict[str, Silence] = {}
        self.graph = DependencyGraph()
        self.changes = Changes()
        self._storm_target: str | None = None  # the storm's incident, found at each tick
        self.related = related
        self.root_cause = root_cause
        self.causes = causes
        self._extra_receivers = dict(extra_receivers or {})
        self._extra_policies = list(extra_policies)
        self.configure(config)

    # -- configuration ---------------------------------------------------------------

    def configure(
        self,
        config: NotifyConfig,
        extra_receivers: Mapping[str, Receiver] | None = None,
        extra_policies: Sequence[EscalationPolicy] | None = None,
    ) -> None:
        """Swap the configuration; alerts, incidents and silences carry over."""
        if extra_receivers is not None:
            self._extra_receivers = dict(extra_receivers)
        if extra_policies is not None:
            self._extra_policies = list(extra_policies)
        self.config = config
        self.receivers = {**self._extra_receivers, **config.receivers}
        self.policies = list(config.extensions.escalation_policies) + self._extra_policies
        declared = config.extensions.incidents.dependencies
        learned = self.graph.together
        self.graph = DependencyGraph(declared)
        self.graph.together = learned
        self.correlator = Correlator(
            config.extensions.incidents, config.incident_window, self.graph, self.related
        )
        self._routes = {r.id: r for r in config.route.walk()}
        self._route_cache: dict[str, list[Route]] = {}

    def routes_of(self, alert: Alert) -> list[Route]:
        fp = alert.fingerprint
        found = self._route_cache.get(fp)
        if found is None:
            found = self.config.route.match(dict(alert.labels))
            if len(self._route_cache) > 200_000:
                self._route_cache.clear()
            self._route_cache[fp] = found
        return found

    # -- input ---------------------------------------------------------------------

    def receive(self, alerts: Iterable[Alert], now: float) -> None:
        """Record alerts; the same fingerprint updates one record (Alertmanager's merge)."""
        for alert in alerts:
            fp = alert.fingerprint
            rec = self.alerts.get(fp)
            if rec is None:
                self.alerts[fp] = AlertRecord(alert, now, now)
            else:
                old = rec.alert
                if alert.ends_at is not None and alert.starts_at and alert.ends_at < old.starts_at:
                    # the resolution of an earlier episode, resent (Prometheus keeps sending
                    # a resolved alert for a while) after the alert fired again: stale news
                    continue
                same_episode = not old.resolved(now) or (
                    alert.starts_at and old.starts_at and alert.starts_at <= (old.ends_at or now)
                )
                if same_episode and old.starts_at and alert.starts_at:
                    alert = replace(alert, starts_at=min(old.starts_at, alert.starts_at))
                if old.resolved(now) and not alert.resolved(now) and not same_episode:
                    rec.received_at = now
                    inc = self.incidents.get(rec.incident) if rec.incident else None
                    if inc is not None and inc.is_open:
                        inc.flip(
                            now,
                            self.config.flap_window,
                            self.config.extensions.flapping.threshold,
                            fp,
                        )
                        self.changes.incidents.add(inc.id)
                rec.alert = alert
                rec.updated_at = now
            self.changes.alerts.add(fp)

    # -- the tick ------------------------------------------------------------------

    def tick(self, now: float) -> list[Notification]:
        out: list[Notification] = []
        self._mute(now)
        self._correlate(now)
        self._merge_storm(now)
        self._storm_target = self._find_storm_target(now)
        for inc in list(self.incidents.values()):
            old = inc.resolved_at is not None and now - inc.resolved_at > INCIDENT_RETENTION
            if inc.state == "resolved" and old:
                del self.incidents[inc.id]
                continue
            self._lifecycle(inc, now)
            if inc.is_open or any(
                t.last_sent_at is not None and not t.resolved_sent for t in inc.threads.values()
            ):
                self._route_threads(inc, now)
                out.extend(self._threads(inc, now))
                out.extend(self._escalate(inc, now))
        self._forget(now)
        return out

    def next_due(self, now: float) -> float:
        """When a tick could next decide something (the pipeline sleeps until then)."""
        due = now + 5.0
        for inc in self.incidents.values():
            for t in inc.threads.values():
                route = self._routes.get(t.route_id)
                if t.last_sent_at is None and route is not None:
                    due = min(due, self._first_due(inc, t, route))
            esc = inc.escalation
            if esc and esc.next_at is not None and not esc.stopped:
                due = min(due, esc.next_at)
            if inc.quiet_since is not None and inc.is_open:
                due = min(due, inc.quiet_since + self._hold(inc))
        for rec in self.alerts.values():
            if rec.alert.ends_at is not None and rec.alert.ends_at > now:
                due = min(due, rec.alert.ends_at)
        return max(due, now + 0.01)

    # -- muting -------------------------------------------------------------------

    def _mute(self, now: float) -> None:
        active = [r for r in self.alerts.values() if not r.alert.resolved(now)]
        inhibitor = Inhibitor(
            self.config.inhibit_rules, ((r.fingerprint, dict(r.alert.labels)) for r in active)
        )
        live = [s for s in self.silences.values() if s.state(now) == "active"]
        for rec in active:
            labels = dict(rec.alert.labels)
            silenced = [s.id for s in live if matches_all(s.matchers, labels)]
            inhibited = inhibitor.inhibited_by(labels, rec.fingerprint)
            if silenced != rec.silenced_by or inhibited != rec.inhibited_by:
                rec.silenced_by, rec.inhibited_by = silenced, inhibited
            rec.receivers = [r.receiver for r in self.routes_of(rec.alert)]

    # -- correlation ----------------------------------------------------------------

    def _correlate(self, now: float) -> None:
        incoming = [
            r
            for r in self.alerts.values()
            if not r.alert.resolved(now) and not r.muted() and r.closed_start != r.alert.starts_at
        ]
        incoming.sort(key=lambda r: (r.alert.starts_at or r.received_at, r.received_at))
        settings = self.config.extensions.incidents
        widespread = self._widespread(now) if incoming else frozenset()
        for rec in incoming:
            current = self.incidents.get(rec.incident) if rec.incident else None
            if current is not None and current.is_open:
                continue
            if (
                current is not None
                and current.resolved_at is not None
                and (
                    now - current.resolved_at <= self._reopen_horizon(current)
                    and not current.acked_by.startswith("manual:")
                )
            ):
                self._reopen(current, rec, now)
                continue
            if not settings.enabled:
                inc = self._open(rec, now)
                continue
            candidates = [i for i in self.incidents.values() if i.is_open]
            chosen = self.correlator.choose(rec.alert, candidates, self._members, now, widespread)
            if chosen is None:
                inc = self._open(rec, now)
            else:
                inc, link = chosen
                self.correlator.add(inc, rec.alert, now, link)
                self._set_root(inc)
                rec.incident = inc.id
                self.changes.incidents.add(inc.id)
            self.changes.alerts.add(rec.fingerprint)

    def _widespread(self, now: float) -> frozenset[str]:
        return self.correlator.widespread((r.alert for r in self.alerts.values()), now)

    def _find_storm_target(self, now: float) -> str | None:
        target = self.correlator.storm_target(list(self.incidents.values()), now)
        return None if target is None else target.id

    def _first_due(self, inc: Incident, thread: Thread, route: Route) -> float:
        """When a thread's first message is due: ``group_wait`` after it opened.

        An incident opened during a storm that is not the storm itself waits
        ``group_interval`` from its opening instead: the storm's next alerts show
        within that time whether its symptom is part of the storm (it spreads and the
        incident is merged into the storm's) or its own (it is notified then). So
        does the twin of an incident (``Correlator.twin_of``) before any storm. A thread
        with a critical (``page``) alert is never held back.
        """
        due = thread.created_at + route.group_wait
        if self._severity(thread.fingerprints) >= _PAGE_RANK:
            return due  # a page never waits on a storm: merged later, it costs one message
        target = self._storm_target
        if target is not None:
            storm = self.incidents.get(target)
            if target != inc.id and inc.opened_at >= (storm.opened_at if storm else 0.0):
                due = max(due, inc.opened_at + route.group_interval)
        elif self.correlator.twin_of(inc, self.incidents.values()) is not None:
            due = max(due, inc.opened_at + route.group_interval)
        return due

    def _open(self, rec: AlertRecord, now: float) -> Incident:
        inc = Incident(id=_new_id(now), opened_at=now, last_activity=now)
        self.correlator.add(inc, rec.alert, now, "first")
        inc.timeline[-1]["text"] = f"opened by {rec.alert.name or rec.fingerprint}"
        self.incidents[inc.id] = inc
        rec.incident = inc.id
        self._attach_causes(inc, now)
        self._set_root(inc)
        self.changes.incidents.add(inc.id)
        return inc

    def _reopen(self, inc: Incident, rec: AlertRecord, now: float) -> None:
        flapping = self.config.extensions.flapping
        name = rec.alert.name or rec.fingerprint
        inc.reopen(now, self.config.flap_window, flapping.threshold, rec.fingerprint, name)
        self.changes.incidents.add(inc.id)

    def _merge_storm(self, now: float) -> None:
        """During a storm, incidents opened within the window become one (the oldest)."""
        open_ = [i for i in self.incidents.values() if i.is_open and not i.flapping]
        if len(open_) < 2 or not self.correlator.storming(open_, now):
            return
        since = now - self.correlator.window
        young = sorted(
            (i for i in open_ if i.opened_at >= since or i.last_activity >= since),
            key=lambda i: i.opened_at,
        )
        if len(young) < 2:
            return
        # the incident that grew most in the window is the cascade; the young others join it
        target = max(young, key=lambda i: (i.recent_joins(since), -i.opened_at))
        widespread = self._widespread(now)
        for other in young:
            same_symptom = bool(other.alertnames & target.alertnames) or (
                bool(other.alertnames)
                and other.alertnames <= widespread
                and bool(target.alertnames & widespread)
            )
            if other is not target and other.opened_at >= since and same_symptom:
                self._merge(target, other, now)

    def _merge(self, target: Incident, other: Incident, now: float) -> None:
        for fp in other.members:
            rec = self.alerts.get(fp)
            if rec is not None:
                rec.incident = target.id
                self.changes.alerts.add(fp)
        target.absorb(other, now)
        self._set_root(target)
        self.changes.incidents |= {target.id, other.id}

    def _members(self, inc: Incident) -> list[Alert]:
        return [self.alerts[fp].alert for fp in inc.members if fp in self.alerts]

    def _attach_causes(self, inc: Incident, now: float) -> None:
        """The analysis hook's likely causes and what moved with them, kept on the incident."""
        if self.causes is None:
            return
        try:
            inc.causes = list(self.causes(self._members(inc)))
        except Exception:  # a failed analysis never stops an incident from opening
            log.exception("root-cause analysis of incident %s failed", inc.id)
            return
        if inc.causes:
            top = inc.causes[0]
            inc.log(now, "root-cause", f"likely cause: {top.get('explanation', '')}")

    def _set_root(self, inc: Incident) -> None:
        root = first_started(inc.members)
        if self.root_cause is not None:
            root = self.root_cause(self._members(inc)) or root
        inc.root = root
        inc.title = title_of(
            inc, {fp: r.alert for fp, r in self.alerts.items() if fp in inc.members}
        )

    # -- lifecycle ------------------------------------------------------------------

    def _reopen_horizon(self, inc: Incident) -> float:
        """How long after an incident resolved an alert of it firing again re-opens it
        (silently, unless the re-opening outlasts the hold): the flap window, and for an
        incident that flapped the root route's ``repeat_interval`` if longer: a known
        flapper back within the time Alertmanager would not repeat a notification is
        the same noise, not news."""
        if inc.flapping:
            return max(self.config.flap_window, self.config.route.repeat_interval)
        return self.config.flap_window

    def _hold(self, inc: Incident) -> float:
        """Quiet time before resolution: doubles with each re-opening (hysteresis), up to the flap window."""
        if inc.flapping:
            return self.config.flap_window
        return min(self.config.resolve_hold * 2.0 ** min(inc.reopened, 16), self.config.flap_window)

    def _lifecycle(self, inc: Incident, now: float) -> None:
        if not inc.is_open:
            return
        active = [
            fp
            for fp in inc.members
            if fp in self.alerts and not self.alerts[fp].alert.resolved(now)
        ]
        if active:
            if inc.quiet_since is not None:
                inc.quiet_since = None
                self.changes.incidents.add(inc.id)
            return
        if inc.quiet_since is None:
            self.changes.incidents.add(inc.id)
            ends = [self.alerts[fp].alert.ends_at or now for fp in inc.members if fp in self.alerts]
            inc.quiet_since = min(now, max(ends)) if ends else now
        if now >= inc.quiet_since + self._hold(inc):
            self._resolve(inc, now, "all alerts resolved")

    def _resolve(self, inc: Incident, now: float, why: str) -> None:
        inc.state = "resolved"
        inc.resolved_at = now
        inc.log(now, "resolved", why)
        if inc.escalation is not None and not inc.escalation.stopped:
            inc.escalation.stopped = "resolved"
            inc.escalation.next_at = None
        if len(inc.services) > 1 and self.config.extensions.incidents.learn_dependencies:
            self.graph.learn(inc.services)
            self.changes.graph = True
        for fp in inc.members:
            rec = self.alerts.get(fp)
            if rec is not None:
                self.changes.episodes.append((rec, now))

    # -- threads ---------------------------------------------------------------------

    def _route_threads(self, inc: Incident, now: float) -> None:
        root = self.config.route
        routed: list[tuple[str, list[Route]]] = []
        for fp in inc.members:
            rec = self.alerts.get(fp)
            if rec is None or (rec.muted() and not rec.alert.resolved(now)):
                continue
            routed.append((fp, self.routes_of(rec.alert)))
        home = self._home_route(inc, routed, now) if inc.is_open else None
        for fp, routes in routed:
            for route in routes:
                if home is not None and route is root:
                    route = home  # the catch-all's share of an incident that has a home
                key = f"route:{route.id}:{route.receiver}"
                thread = inc.threads.get(key)
                if thread is None:
                    if not inc.is_open:
                        continue
                    thread = Thread(
                        key=key,
                        receiver=route.receiver,
                        group_key=f'{route.key}:{{incident="{inc.id}"}}',
                        route_id=route.id,
                        created_at=now,
                    )
                    inc.threads[key] = thread
                if fp not in thread.fingerprints:
                    thread.fingerprints.add(fp)
                    self.changes.incidents.add(inc.id)

    def _home_route(
        self, inc: Incident, routed: Sequence[tuple[str, Sequence[Route]]], now: float
    ) -> Route | None:
        """The route that takes the catch-all's share of the incident, or None.

        The root route receives what no specific route matched: its receiver is the
        default, not a destination of its own. An incident some of whose alerts match
        a specific route has a home there, so its alerts that only fell through to the
        root join that thread (one incident, one thread) instead of opening a second
        thread on the default receiver, unless the default receiver has already been
        told about the incident. The home is the specific route of the most severe
        alert (ties: the first in the tree); a route muted now is no home.
        """
        root = self.config.route
        root_thread = inc.threads.get(f"route:{root.id}:{root.receiver}")
        if root_thread is not None and root_thread.last_sent_at is not None:
            return None
        order = {r.id: n for n, r in enumerate(self._routes.values())}
        best: tuple[int, int, Route] | None = None
        for fp, routes in routed:
            sev = severity_rank(dict(self.alerts[fp].alert.labels))
            for route in routes:
                if route is root or self._route_muted(route, now):
                    continue
                rank = (-sev, order.get(route.id, 0))
                if best is None or rank < best[:2]:
                    best = (rank[0], rank[1], route)
        if best is None:
            return None
        if root_thread is not None:  # announced nowhere yet: its alerts move to the home
            del inc.threads[root_thread.key]
            self.changes.incidents.add(inc.id)
        return best[2]

    def _route_muted(self, route: Route, now: float) -> bool:
        ti = self.config.time_intervals
        mute = [i for name in route.mute_time_intervals for i in ti.get(name, [])]
        if mute and in_any(mute, now):
            return True
        active = [i for name in route.active_time_intervals for i in ti.get(name, [])]
        return bool(route.active_time_intervals) and not in_any(active, now)

    def _firing(self, thread: Thread, now: float) -> set[str]:
        return {
            fp
            for fp in thread.fingerprints
            if fp in self.alerts
            and not self.alerts[fp].alert.resolved(now)
            and not self.alerts[fp].muted()
        }

    def _threads(self, inc: Incident, now: float) -> list[Notification]:
        out = []
        for thread in inc.threads.values():
            if thread.key.startswith("escalation:"):
                if not inc.is_open and thread.last_sent_at is not None and not thread.resolved_sent:
                    out.append(self._emit(inc, thread, "resolved", now))
                elif (
                    inc.state == "acknowledged"
                    and thread.last_sent_at is not None
                    and not thread.acked_sent
                ):
                    out.append(self._emit(inc, thread, "acknowledged", now))
                continue
            route = self._routes.get(thread.route_id)
            if route is None:  # the route went away in a reload
                route = self.config.route
            if not inc.is_open:
                if thread.sent_firing and not thread.resolved_sent:
                    out.append(self._emit(inc, thread, "resolved", now))
                else:
                    thread.resolved_sent = True
                continue
            if self._route_muted(route, now):
                continue
            firing = self._firing(thread, now)
            if not firing:
                owed = self._owed(thread, route, now)
                if owed is not None:
                    out.append(self._emit(inc, thread, "firing", now, as_of=owed))
                continue
            if thread.last_sent_at is None:
                paged = inc.threads.get(f"escalation:{thread.receiver}")
                if paged is not None and paged.last_sent_at is not None:
                    # the escalation already paged this receiver: its route thread
                    # carries on from there instead of paging it twice
                    thread.last_sent_at = paged.last_sent_at
                    thread.sent_firing |= firing
                    thread.sent_severity = self._severity(firing)
                elif now >= self._first_due(inc, thread, route):
                    out.append(self._emit(inc, thread, "firing", now))
                continue
            if inc.state == "acknowledged" and not thread.acked_sent:
                out.append(self._emit(inc, thread, "acknowledged", now))
                continue
            worse = self._severity(firing) > thread.sent_severity
            new = firing - thread.sent_firing
            reopened = [e["reopened_at"] for e in inc.timeline if e["kind"] == "reopened"]
            reopen_due = None
            if new and not inc.flapping and reopened and reopened[-1] > thread.last_sent_at:
                # a re-opening is news only once it outlasts the quiet time the incident
                # now needs to resolve (which doubles with each re-opening): an alert of it
                # has fired without a break for that long, not merely fired now and then
                since = min(self.alerts[fp].alert.starts_at or now for fp in new)
                reopen_due = max(reopened[-1], since) + self._hold(inc)
                if len(new) >= self.config.extensions.incidents.storm_alerts:
                    # many of its alerts at once: the outage is back, news after group_wait
                    reopen_due = reopened[-1] + route.group_wait
            if (worse and now >= thread.last_sent_at + route.group_interval) or (
                reopen_due is not None and now >= reopen_due
            ):
                out.append(self._emit(inc, thread, "update", now))
            elif (
                inc.state == "open"
                and inc.escalation is None
                and not inc.flapping
                and now >= thread.last_sent_at + route.repeat_interval
            ):
                out.append(self._emit(inc, thread, "repeat", now))
        return out

    def _owed(self, thread: Thread, route: Route, now: float) -> float | None:
        """A first message that waited (see ``_first_due``) while its alerts resolved is
        still owed: the time ``group_wait`` would have announced them, if they were all
        still firing then, else None."""
        if thread.last_sent_at is not None or not thread.fingerprints:
            return None
        at = thread.created_at + route.group_wait
        recs = [self.alerts[fp] for fp in thread.fingerprints if fp in self.alerts]
        if not recs or any(r.muted() or not r.alert.resolved(now) for r in recs):
            return None  # muted alerts are owed nothing; firing ones are announced as usual
        if any(r.alert.resolved(at + 1e-3) for r in recs):
            return None  # one of them ended before it would have been announced
        return at

    def _severity(self, fps: Iterable[str]) -> int:
        return max(
            (severity_rank(dict(self.alerts[fp].alert.labels)) for fp in fps if fp in self.alerts),
            default=0,
        )

    def _emit(
        self, inc: Incident, thread: Thread, kind: Kind, now: float, as_of: float | None = None
    ) -> Notification:
        """One message of a thread; ``as_of``: the alerts as they were then (a first
        message owed for alerts that have resolved since, see ``_owed``)."""
        thread.seq += 1
        thread.last_sent_at = now
        fps = thread.fingerprints if thread.key.startswith("route:") else set(inc.members)
        snaps = [
            AlertSnapshot.of(self.alerts[fp].alert, now if as_of is None else as_of)
            for fp in sorted(fps, key=lambda f: inc.members[f].joined_at if f in inc.members else 0)
            if fp in self.alerts
            and (
                kind == "resolved"
                or not self.alerts[fp].muted()
                or self.alerts[fp].alert.resolved(now)
            )
        ]
        firing = {s.fingerprint for s in snaps if s.status == "firing"}
        if kind == "resolved":
            thread.resolved_sent = True
            thread.sent_firing = set()
            snaps = [replace(s, status="resolved", ends_at=s.ends_at or now) for s in snaps]
        elif kind == "acknowledged":
            thread.acked_sent = True
        else:
            thread.sent_firing |= firing
            thread.sent_severity = max(thread.sent_severity, self._severity(firing))
            thread.acked_sent = inc.state == "acknowledged"
        route = self._routes.get(thread.route_id, self.config.route)
        group_labels = common_items([s.labels for s in snaps])
        if not route.group_by_all:
            group_labels = {k: v for k, v in group_labels.items() if k in route.group_by}
        inc.log(
            now,
            "notified",
            f"{kind} to {thread.receiver}",
            receiver=thread.receiver,
            level=thread.level,
        )
        self.changes.incidents.add(inc.id)
        return Notification(
            key=idempotency_key(inc.id, thread.key, thread.seq),
            kind=kind,
            receiver=thread.receiver,
            incident_id=inc.id,
            thread_key=thread.key,
            group_key=thread.group_key,
            status="resolved" if kind == "resolved" else "firing",
            alerts=snaps,
            group_labels=group_labels,
            created_at=now,
            level=thread.level,
            title=inc.title,
            incident_state=inc.state,
            root_fingerprint=inc.root,
            services=sorted(inc.services),
            acked_by=inc.acked_by,
            flapping=inc.flapping,
            alert_count=len(inc.members),
        )

    # -- escalation ------------------------------------------------------------------

    def policy_for(self, inc: Incident) -> EscalationPolicy | None:
        return escalation.policy_for(self.policies, inc, self._labels_of)

    def _labels_of(self, fp: str) -> LabelSet | None:
        rec = self.alerts.get(fp)
        return None if rec is None else rec.alert.labels

    def _escalate(self, inc: Incident, now: float) -> list[Notification]:
        due = escalation.due_level(self.policies, inc, self._labels_of, now)
        if due is None:
            return []
        index, level = due
        out = []
        for receiver in level.receivers:
            key = f"escalation:{receiver}"
            thread = inc.threads.get(key)
            if thread is None:
                thread = Thread(key, receiver, f'{{}}:{{incident="{inc.id}"}}', "escalation", now)
                inc.threads[key] = thread
            thread.level = index + 1
            thread.resolved_sent = False
            out.append(self._emit(inc, thread, "escalation", now))
        inc.log(now, "escalated", f"level L{index + 1}", level=index + 1)
        return out

    # -- operator actions -------------------------------------------------------------

    def acknowledge(self, incident_id: str, by: str, now: float) -> Incident:
        inc = self._get(incident_id)
        if inc.state == "open":
            inc.state = "acknowledged"
            inc.acked_at, inc.acked_by = now, by
            inc.log(now, "acknowledged", f"acknowledged by {by or 'someone'}")
            if inc.escalation is not None and not inc.escalation.stopped:
                inc.escalation.stopped, inc.escalation.next_at = "acknowledged", None
            self.changes.incidents.add(inc.id)
        return inc

    def resolve_incident(self, incident_id: str, by: str, now: float) -> Incident:
        inc = self._get(incident_id)
        if inc.is_open:
            inc.acked_by = f"manual:{by}" if not inc.acked_by else inc.acked_by
            self._resolve(inc, now, f"resolved by {by or 'someone'}")
            for fp in inc.members:
                rec = self.alerts.get(fp)
                if rec is not None and not rec.alert.resolved(now):
                    rec.closed_start = rec.alert.starts_at
                    self.changes.alerts.add(fp)
            self.changes.incidents.add(inc.id)
        return inc

    def _get(self, incident_id: str) -> Incident:
        inc = self.incidents.get(incident_id)
        if inc is None:
            raise NotFoundError(f"incident {incident_id!r} not found (or no longer in memory)")
        return inc

    def put_silence(self, silence: Silence) -> None:
        self.silences[silence.id] = silence
        self.changes.silences.add(silence.id)

    # -- memory bounds ----------------------------------------------------------------

    def _forget(self, now: float) -> None:
        open_members = {fp for i in self.incidents.values() if i.is_open for fp in i.members}
        # an alert is remembered while its incident can still re-open (it must find it)
        keep = max(
            RESOLVED_RETENTION,
            self.config.flap_window,
            self.config.route.repeat_interval,
        )
        for fp, rec in list(self.alerts.items()):
            ends = rec.alert.ends_at
            if ends is not None and ends <= now - keep and fp not in open_members:
                del self.alerts[fp]
                self._route_cache.pop(fp, None)
                self.changes.forgotten_alerts.add(fp)
        for sid, s in list(self.silences.items()):
            if s.ends_at < now - 5 * 86400:  # Alertmanager's default data retention
                del self.silences[sid]


def _new_id(now: float) -> str:
    return f"{int(now * 1000):x}{os.urandom(3).hex()}"
