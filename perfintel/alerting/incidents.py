"""Incidents: alerts that belong together, with a root-cause guess and a timeline.

Correlation is a pure function of the open incidents, the new alert and the
clock. A newly firing alert joins an open incident when one of these links holds,
strongest first, and it started within the correlation window of the
incident's last activity (an alert muted meanwhile still belongs to it when it
surfaces):

1. **labels** — it shares the value of a correlation label (``service``,
   ``host``, ``instance``, ...) with an alert of the incident;
2. **dependency** — its service depends on, or is depended on by, a service of
   the incident: declared in the configuration, or learned (two services that
   opened incidents together at least ``LEARN_MIN`` times);
3. **co-movement** — a ``Relatedness`` hook (the analysis package's "moved
   with it" test on the alerts' series) says so;
4. **storm** — at least ``storm_alerts`` alerts joined incidents within the
   window: a cascade is under way, and an alert with the same symptom (an
   ``alertname`` the incident already has) starting in the middle of it is far
   more likely part of it than a coincidence. So is a *widespread* symptom, one
   that at least ``storm_alerts`` alerts started with within the window (muted ones
   count: an outage's latency alerts inhibited by its instance-down alerts are still
   its symptom). It joins the (non-flapping) incident that grew most in the window;
   young incidents of its symptoms, or of widespread ones, opened during the storm
   are merged into it. An alert with a symptom of its own is never absorbed by a
   storm: unrelated single alerts are each notified.

A flapping incident takes no new alerts: an outage reaching the service of a
flapping alert is news, not one more flip. Otherwise the alert opens a new incident. An alert of an open incident that
resolves and fires again is a *flip*; ``threshold`` flips within the flap
window make the incident flapping. The root-cause guess is the alert
that started first (a ``RootCauseHook`` may refine it with the order in which
the series changed).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from perfintel.alerting.model import Alert
from perfintel.alerting.notify_config import IncidentSettings

IncidentState = Literal["open", "acknowledged", "resolved"]
Link = Literal["first", "labels", "dependency", "co-movement", "storm", "reopen"]
LEARN_MIN = 2  # incidents two services must share before they count as dependent
MAX_LEARNED_PAIRS = 20_000
MAX_TIMELINE = 500

# (new alert, the incident's alerts) -> do their series move together?
Relatedness = Callable[[Alert, Sequence[Alert]], bool]
# the incident's alerts -> fingerprint of the likely root cause, or None to keep the timing guess
RootCauseHook = Callable[[Sequence[Alert]], str | None]
# the incident's alerts -> the series that changed first and what moved with them, most likely
# cause first (JSON-able dicts: labels, series, score, onset, sigma, explanation, moved_with)
CausesHook = Callable[[Sequence[Alert]], list[dict[str, Any]]]


@dataclass
class Member:
    fingerprint: str
    joined_at: float
    starts_at: float
    link: Link


@dataclass
class Thread:
    """The notifications of one incident to one receiver (a route, or an escalation level)."""

    key: str  # "route:<route id>:<receiver>" or "escalation:<receiver>"
    receiver: str
    group_key: str
    route_id: str
    created_at: float
    fingerprints: set[str] = field(default_factory=set)
    last_sent_at: float | None = None
    sent_firing: set[str] = field(default_factory=set)
    seq: int = 0
    resolved_sent: bool = False
    acked_sent: bool = False
    level: int = 0
    sent_severity: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "receiver": self.receiver,
            "group_key": self.group_key,
            "route_id": self.route_id,
            "created_at": self.created_at,
            "fingerprints": sorted(self.fingerprints),
            "last_sent_at": self.last_sent_at,
            "sent_firing": sorted(self.sent_firing),
            "seq": self.seq,
            "resolved_sent": self.resolved_sent,
            "acked_sent": self.acked_sent,
            "level": self.level,
            "sent_severity": self.sent_severity,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Thread:
        return cls(
            key=d["key"],
            receiver=d["receiver"],
            group_key=d["group_key"],
            route_id=d["route_id"],
            created_at=d["created_at"],
            fingerprints=set(d["fingerprints"]),
            last_sent_at=d["last_sent_at"],
            sent_firing=set(d["sent_firing"]),
            seq=d["seq"],
            resolved_sent=d["resolved_sent"],
            acked_sent=d.get("acked_sent", False),
            level=d.get("level", 0),
            sent_severity=d.get("sent_severity", 0),
        )


@dataclass
class Escalation:
    policy: str
    level: int = 0  # levels notified so far
    next_at: float | None = None
    stopped: str = ""  # why it stopped: acknowledged, resolved, exhausted


@dataclass
class Incident:
    id: str
    opened_at: float
    state: IncidentState = "open"
    members: dict[str, Member] = field(default_factory=dict)
    root: str = ""
    last_activity: float = 0.0
    quiet_since: float | None = None
    resolved_at: float | None = None
    acked_at: float | None = None
    acked_by: str = ""
    reopened: int = 0
    flapping: bool = False
    #: recent flips as (time, fingerprint); a re-opening of the incident is also (time, "")
    flips: list[tuple[float, str]] = field(default_factory=list)
    title: str = ""
    timeline: list[dict[str, Any]] = field(default_factory=list)
    threads: dict[str, Thread] = field(default_factory=dict)
    escalation: Escalation | None = None
    labels_index: set[tuple[str, str]] = field(default_factory=set)
    services: set[str] = field(default_factory=set)
    alertnames: set[str] = field(default_factory=set)
    #: the root-cause analysis when the incident opened (``CausesHook``), most likely first
    causes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def is_open(self) -> bool:
        return self.state != "resolved"

    def log(self, at: float, kind: str, text: str, **extra: Any) -> None:
        self.timeline.append({"at": at, "kind": kind, "text": text, **extra})
        if len(self.timeline) > MAX_TIMELINE:  # keep the start and the most recent events
            del self.timeline[50 : len(self.timeline) - MAX_TIMELINE + 50]

    def recent_joins(self, since: float) -> int:
        return sum(1 for m in self.members.values() if m.joined_at >= since)

    def flip(
        self, at: float, window: float, threshold: int, fingerprint: str, reopen: bool = False
    ) -> None:
        """An alert of this incident fired again (``reopen``: and re-opened it).

        The incident flaps when one alert flipped ``threshold`` times in the window,
        or the incident itself re-opened that often: alerts of a large incident that
        each fire again once or twice (pods restarting in an outage) are its life,
        not flapping.
        """
        fresh = [(t, fp) for t, fp in self.flips if t >= at - window][-200:]
        fresh.append((at, fingerprint))
        if reopen:
            fresh.append((at, ""))
        self.flips = fresh
        same = sum(1 for _, fp in fresh if fp == fingerprint)
        reopens = sum(1 for _, fp in fresh if fp == "")
        if not self.flapping and max(same, reopens) >= threshold:
            self.flapping = True
            self.log(at, "flapping", "flapping: further flips are folded into this incident")

    def reopen(self, at: float, window: float, threshold: int, fingerprint: str, name: str) -> None:
        """An alert of this resolved incident (``name``) fired again within the horizon."""
        self.state = "open"
        self.resolved_at = None
        self.quiet_since = None
        self.acked_at, self.acked_by = None, ""
        self.reopened += 1
        self.last_activity = at
        self.flip(at, window, threshold, fingerprint, reopen=True)
        self.log(at, "reopened", f"{name} fired again", fingerprint=fingerprint, reopened_at=at)
        for t in self.threads.values():
            t.resolved_sent = False
        self.escalation = None  # a new escalation starts from the first level

    def absorb(self, other: Incident, at: float) -> None:
        """Take in ``other``'s alerts and threads (an alert storm); ``other`` ends merged."""
        for m in other.members.values():
            m.link = "storm"  # never the root-cause guess of the incident it joins
        self.members.update(other.members)
        self.labels_index |= other.labels_index
        self.services |= other.services
        self.alertnames |= other.alertnames
        self.last_activity = max(self.last_activity, other.last_activity)
        for key, t in other.threads.items():
            mine = self.threads.get(key)
            if mine is None:
                self.threads[key] = t
                continue
            mine.fingerprints |= t.fingerprints
            mine.sent_firing |= t.sent_firing
            mine.sent_severity = max(mine.sent_severity, t.sent_severity)
            if mine.last_sent_at is None:
                mine.last_sent_at = t.last_sent_at
        other.threads = {}
        other.members = {}
        other.state, other.resolved_at = "resolved", at
        other.title = f"merged into {self.id}"
        other.log(at, "merged", f"merged into incident {self.id} (alert storm)")
        self.log(at, "merged", f"incident {other.id} merged in (alert storm)")

    def to_dict(self) -> dict[str, Any]:
        esc = self.escalation
        return {
            "id": self.id,
            "opened_at": self.opened_at,
            "state": self.state,
            "members": [
                [m.fingerprint, m.joined_at, m.starts_at, m.link] for m in self.members.values()
            ],
            "root": self.root,
            "last_activity": self.last_activity,
            "quiet_since": self.quiet_since,
            "resolved_at": self.resolved_at,
            "acked_at": self.acked_at,
            "acked_by": self.acked_by,
            "reopened": self.reopened,
            "flapping": self.flapping,
            "flips": [list(f) for f in self.flips],
            "title": self.title,
            "timeline": self.timeline,
            "threads": [t.to_dict() for t in self.threads.values()],
            "escalation": None
            if esc is None
            else {
                "policy": esc.policy,
                "level": esc.level,
                "next_at": esc.next_at,
                "stopped": esc.stopped,
            },
            "labels_index": sorted([list(p) for p in self.labels_index]),
            "services": sorted(self.services),
            "alertnames": sorted(self.alertnames),
            "causes": self.causes,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Incident:
        esc = d.get("escalation")
        inc = cls(
            id=d["id"],
            opened_at=d["opened_at"],
            state=d["state"],
            members={m[0]: Member(m[0], m[1], m[2], m[3]) for m in d["members"]},
            root=d["root"],
            last_activity=d["last_activity"],
            quiet_since=d["quiet_since"],
            resolved_at=d["resolved_at"],
            acked_at=d["acked_at"],
            acked_by=d["acked_by"],
            reopened=d["reopened"],
            flapping=d["flapping"],
            # before flips named their alert they were bare times, counted as re-openings
            flips=[
                (f, "") if isinstance(f, int | float) else (f[0], f[1]) for f in d.get("flips", [])
            ],
            title=d["title"],
            timeline=list(d["timeline"]),
            threads={t["key"]: Thread.from_dict(t) for t in d["threads"]},
            escalation=None
            if esc is None
            else Escalation(esc["policy"], esc["level"], esc["next_at"], esc["stopped"]),
            labels_index={(a, b) for a, b in d["labels_index"]},
            services=set(d["services"]),
            alertnames=set(d.get("alertnames", [])),
            causes=list(d.get("causes", [])),
        )
        return inc


SEVERITY_RANK = {
    "info": 1,
    "none": 1,
    "low": 1,
    "warning": 2,
    "warn": 2,
    "error": 3,
    "high": 3,
    "critical": 4,
    "page": 4,
}


def severity_rank(labels: Mapping[str, str]) -> int:
    return SEVERITY_RANK.get(labels.get("severity", "").lower(), 0)


class DependencyGraph:
    """Declared dependencies plus those learned from services that open incidents together."""

    def __init__(self, declared: Mapping[str, Sequence[str]] | None = None) -> None:
        self.declared: dict[str, set[str]] = {}
        for a, deps in (declared or {}).items():
            for b in deps:
                self.declared.setdefault(a, set()).add(b)
                self.declared.setdefault(b, set()).add(a)
        self.together: dict[tuple[str, str], int] = {}

    def linked(self, a: str, b: str) -> bool:
        if a == b:
            return True
        if b in self.declared.get(a, ()):
            return True
        return self.together.get((a, b) if a < b else (b, a), 0) >= LEARN_MIN

    def learn(self, services: set[str]) -> None:
        """Count every pair of services that took part in one incident (bounded)."""
        if len(services) > 50:  # a storm over everything says nothing about any one pair
            return
        for a, b in itertools.combinations(sorted(services), 2):
            if (a, b) in self.together or len(self.together) < MAX_LEARNED_PAIRS:
                self.together[(a, b)] = self.together.get((a, b), 0) + 1

    def to_dict(self) -> dict[str, Any]:
        return {"together": [[a, b, n] for (a, b), n in self.together.items()]}

    def load(self, d: Mapping[str, Any]) -> None:
        self.together = {(a, b): int(n) for a, b, n in d.get("together", [])}


@dataclass
class Correlator:
    settings: IncidentSettings
    window: float
    graph: DependencyGraph
    related: Relatedness | None = None

    def storming(self, incidents: Sequence[Incident], now: float) -> bool:
        since = now - self.window
        return (
            sum(i.recent_joins(since) for i in incidents if i.is_open) >= self.settings.storm_alerts
        )

    def widespread(self, alerts: Iterable[Alert], now: float) -> frozenset[str]:
        """Alert names that at least ``storm_alerts`` firing alerts (muted or not) started
        with within the window: a symptom spreading, not a single alert."""
        since = now - self.window
        counts: dict[str, int] = {}
        for a in alerts:
            if (a.starts_at or now) >= since and not a.resolved(now):
                counts[a.name] = counts.get(a.name, 0) + 1
        need = self.settings.storm_alerts
        return frozenset(name for name, n in counts.items() if n >= need)

    def storm_target(self, incidents: Sequence[Incident], now: float) -> Incident | None:
        """During a storm, the incident that grew most in the window (the cascade)."""
        open_ = [i for i in incidents if i.is_open and not i.flapping]
        if not open_ or not self.storming(open_, now):
            return None
        since = now - self.window
        return max(open_, key=lambda i: (i.recent_joins(since), -i.opened_at))

    def twin_of(self, inc: Incident, incidents: Iterable[Incident]) -> Incident | None:
        """An open incident with the same symptom opened shortly before this one (or with
        it and first in order): two services showing one symptom at once may be the
        start of a storm, so the second waits like an incident opened during one."""
        mine = (inc.opened_at, inc.id)
        for other in incidents:
            if (
                other is not inc
                and other.is_open
                and not other.flapping
                and (other.opened_at, other.id) < mine
                and inc.opened_at - other.opened_at <= self.window
                and other.alertnames & inc.alertnames
            ):
                return other
        return None

    def link(
        self,
        alert: Alert,
        incident: Incident,
        members: Sequence[Alert],
        now: float,
        storm: bool = False,
        widespread: frozenset[str] = frozenset(),
    ) -> Link | None:
        """How ``alert`` belongs to ``incident``, or None.

        "Close in time" is judged by when the alert *started*: an alert that was
        muted (inhibited, silenced) while the incident was active still belongs to
        it when it surfaces later.
        """
        if not incident.is_open or incident.flapping:
            return None  # a flapping incident folds its own flips, it takes in no news
        started = alert.starts_at or now
        if min(started, now) - incident.last_activity > self.window:
            return None
        labels = dict(alert.labels)
        for name in self.settings.correlate_labels:
            value = labels.get(name)
            if value and (name, value) in incident.labels_index:
                return "labels"
        service = labels.get(self.settings.service_label)
        if service and any(self.graph.linked(service, s) for s in incident.services):
            return "dependency"
        if self.related is not None and self.related(alert, members):
            return "co-movement"
        if (
            storm
            and not incident.flapping
            and now - incident.last_activity <= self.window
            and (
                labels.get("alertname", "") in incident.alertnames
                or (labels.get("alertname", "") in widespread and incident.alertnames & widespread)
            )
        ):
            return "storm"
        return None

    def choose(
        self,
        alert: Alert,
        candidates: Sequence[Incident],
        members_of: Callable[[Incident], Sequence[Alert]],
        now: float,
        widespread: frozenset[str] = frozenset(),
    ) -> tuple[Incident, Link] | None:
        strength = {"labels": 0, "dependency": 1, "co-movement": 2, "storm": 3}
        storm = self.storming(candidates, now)
        since = now - self.window
        best: tuple[int, float, Incident, Link] | None = None
        for inc in candidates:
            link = self.link(
                alert, inc, members_of(inc) if self.related else (), now, storm, widespread
            )
            if link is None:
                continue
            # among storm candidates, the incident that grew most recently is the cascade
            tie = -inc.recent_joins(since) if link == "storm" else -inc.last_activity
            rank = (strength[link], float(tie))
            if best is None or rank < (best[0], best[1]):
                best = (rank[0], rank[1], inc, link)
        return None if best is None else (best[2], best[3])

    def add(self, incident: Incident, alert: Alert, now: float, link: Link) -> None:
        fp = alert.fingerprint
        labels = dict(alert.labels)
        incident.members[fp] = Member(fp, now, alert.starts_at or now, link)
        incident.last_activity = now
        for name in self.settings.correlate_labels:
            if labels.get(name):
                incident.labels_index.add((name, labels[name]))
        service = labels.get(self.settings.service_label)
        if service:
            incident.services.add(service)
        incident.alertnames.add(labels.get("alertname", ""))
        incident.log(now, "alert", f"{alert.name or fp} joined ({link})", fingerprint=fp)


def first_started(members: Mapping[str, Member]) -> str:
    """The timing guess: the alert that started first (ties: the one that joined first).

    Alerts that joined only because of a storm are not candidates while others are.
    """
    linked = [m for m in members.values() if m.link != "storm"] or list(members.values())
    return min(linked, key=lambda m: (m.starts_at, m.joined_at)).fingerprint


def title_of(incident: Incident, alerts: Mapping[str, Alert]) -> str:
    root = alerts.get(incident.root)
    n = len(incident.members)
    name = root.name if root else "alert"
    labels = dict(root.labels) if root else {}
    where = labels.get("service") or labels.get("instance") or labels.get("job") or ""
    head = f"{name} on {where}" if where else name
    return head if n == 1 else f"{head} (+{n - 1} related alerts)"
