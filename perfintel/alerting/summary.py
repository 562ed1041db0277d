"""What is firing right now, in a few numbers: the overview's and the live stream's view.

``summarise`` is pure (the core's state and a clock reading in, an
``ActiveSummary`` out). The pipeline recomputes it after every dispatcher
round (``Pipeline.summary``), compares it with the previous one and tells its
listeners when it changed: an alert fired or resolved, was silenced, an
incident opened, was acknowledged, escalated or logged a notification.

Bounds: ``top`` alerts and incidents; at most ``MAX_ENTITY_KEYS`` distinct
(service, instance) pairs in ``by_entity`` (the rest are counted in
``entities_dropped``). ``incident_view`` is the API's shape of one incident.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from perfintel.alerting.dispatcher import NotifyCore
from perfintel.alerting.incidents import Incident, severity_rank

MAX_ENTITY_KEYS = 10_000
#: severity rank (perfintel.alerting.incidents.SEVERITY_RANK) -> the bucket it is counted in
_BUCKET = {4: "critical", 3: "critical", 2: "warning"}


def bucket(labels: Mapping[str, str]) -> str:
    """``critical`` (critical, page, error, high), ``warning`` or ``info`` (anything else)."""
    return _BUCKET.get(severity_rank(labels), "info")


@dataclass(frozen=True)
class ActiveSummary:
    """Counts and the top items of the alerts and incidents that are active now.

    ``alerts``: firing and not muted, by severity bucket; ``silenced`` and
    ``inhibited``: firing but muted. ``by_entity``: (service, instance) ->
    counts by bucket of the unmuted firing alerts carrying those labels ("" when
    absent). ``silences``: active silences. ``events``: the incidents' timeline entries in all (it grows with
    every notification, acknowledgement and escalation, so a change is seen).
    """

    alerts: Mapping[str, int] = field(default_factory=dict)
    silenced: int = 0
    inhibited: int = 0
    incidents: Mapping[str, int] = field(default_factory=dict)
    top_alerts: tuple[Mapping[str, Any], ...] = ()
    top_incidents: tuple[Mapping[str, Any], ...] = ()
    by_entity: Mapping[tuple[str, str], Mapping[str, int]] = field(default_factory=dict)
    entities_dropped: int = 0
    events: int = 0
    silences: int = 0

    def to_state(self) -> dict[str, Any]:
        """Everything, JSON-able (what the notifier stores for the other processes)."""
        return {
            "alerts": dict(self.alerts),
            "silenced": self.silenced,
            "inhibited": self.inhibited,
            "incidents": dict(self.incidents),
            "top_alerts": [dict(a) for a in self.top_alerts],
            "top_incidents": [dict(i) for i in self.top_incidents],
            "by_entity": [[s, i, dict(c)] for (s, i), c in self.by_entity.items()],
            "entities_dropped": self.entities_dropped,
            "events": self.events,
            "silences": self.silences,
        }

    @classmethod
    def from_state(cls, d: Mapping[str, Any]) -> ActiveSummary:
        return cls(
            alerts=dict(d["alerts"]),
            silenced=int(d["silenced"]),
            inhibited=int(d["inhibited"]),
            incidents=dict(d["incidents"]),
            top_alerts=tuple(dict(a) for a in d["top_alerts"]),
            top_incidents=tuple(dict(i) for i in d["top_incidents"]),
            by_entity={(str(s), str(i)): dict(c) for s, i, c in d["by_entity"]},
            entities_dropped=int(d["entities_dropped"]),
            events=int(d["events"]),
            silences=int(d["silences"]),
        )

    def to_json(self) -> dict[str, Any]:
        """Without ``by_entity`` (the health scores use it; the answers show counts)."""
        firing = sum(self.alerts.values())
        return {
            "firing": firing,
            "by_severity": dict(self.alerts),
            "silenced": self.silenced,
            "inhibited": self.inhibited,
            "silences": self.silences,
            "incidents": dict(self.incidents),
            "top_alerts": [dict(a) for a in self.top_alerts],
            "top_incidents": [dict(i) for i in self.top_incidents],
        }


def summarise(core: NotifyCore, now: float, top: int = 10) -> ActiveSummary:
    """The summary of ``core`` at ``now`` (the caller holds the pipeline's lock)."""
    alerts = {"critical": 0, "warning": 0, "info": 0}
    silenced = inhibited = 0
    by_entity: dict[tuple[str, str], dict[str, int]] = {}
    dropped = 0
    firing = []
    ranks: dict[str, int] = {}  # fingerprint -> severity rank, for the incidents below
    for fp, rec in core.alerts.items():  # the key, not rec.fingerprint (a hash per call)
        if rec.alert.resolved(now):
            continue
        if rec.silenced_by:
            silenced += 1
            continue
        if rec.inhibited_by:
            inhibited += 1
            continue
        labels = dict(rec.alert.labels)
        rank = ranks[fp] = severity_rank(labels)
        b = _BUCKET.get(rank, "info")
        alerts[b] += 1
        key = (labels.get("service", ""), labels.get("instance", ""))
        counts = by_entity.get(key)
        if counts is None:
            if len(by_entity) >= MAX_ENTITY_KEYS:
                dropped += 1
                continue
            counts = by_entity[key] = {}
        counts[b] = counts.get(b, 0) + 1
        firing.append((-rank, rec.alert.starts_at, fp, rec, labels))
    top_alerts = tuple(
        {
            "fingerprint": fp,
            "labels": labels,
            "severity": bucket(labels),
            "summary": r.alert.annotations.get("summary")
            or r.alert.annotations.get("description", ""),
            "startsAt": r.alert.starts_at,
            "incident": r.incident,
        }
        for _, _, fp, r, labels in heapq.nsmallest(top, firing, key=lambda f: f[:3])
    )
    incidents = {"open": 0, "acknowledged": 0}
    events = 0
    active = []
    for inc in core.incidents.values():
        events += len(inc.timeline)
        if inc.is_open:
            incidents[inc.state] += 1
            active.append(inc)

    def rank_of(fp: str) -> int:
        r = ranks.get(fp)
        if r is None:  # a muted or resolved member
            rec = core.alerts.get(fp)
            r = ranks[fp] = severity_rank(dict(rec.alert.labels)) if rec is not None else 0
        return r

    ranked = heapq.nsmallest(
        top,
        ((inc, max((rank_of(fp) for fp in inc.members), default=0)) for inc in active),
        key=lambda p: (p[0].state != "open", -p[1], -p[0].opened_at),
    )
    top_incidents = tuple(
        {
            "id": inc.id,
            "title": inc.title,
            "state": inc.state,
            "openedAt": inc.opened_at,
            "severity": _BUCKET.get(rank, "info"),
            "alerts": len(inc.members),
            "escalationLevel": inc.escalation.level if inc.escalation else None,
            "services": sorted(inc.services),
        }
        for inc, rank in ranked
    )
    return ActiveSummary(
        alerts=alerts,
        silenced=silenced,
        inhibited=inhibited,
        incidents=incidents,
        top_alerts=top_alerts,
        top_incidents=top_incidents,
        by_entity=by_entity,
        entities_dropped=dropped,
        events=events,
        silences=sum(1 for x in core.silences.values() if x.state(now) == "active"),
    )


def incident_view(core: NotifyCore, inc: Incident, now: float | None = None) -> dict[str, Any]:
    """The API shape of an incident."""
    at = time.time() if now is None else now
    members = []
    for fp, m in inc.members.items():
        rec = core.alerts.get(fp)
        members.append(
            {
                "fingerprint": fp,
                "joinedAt": m.joined_at,
                "startsAt": m.starts_at,
                "link": m.link,
                "labels": dict(rec.alert.labels) if rec else {},
                "status": "unknown"
                if rec is None
                else ("resolved" if rec.alert.resolved(at) else "firing"),
            }
        )
    return {
        "id": inc.id,
        "title": inc.title,
        "state": inc.state,
        "openedAt": inc.opened_at,
        "acknowledgedAt": inc.acked_at,
        "acknowledgedBy": inc.acked_by,
        "resolvedAt": inc.resolved_at,
        "rootCause": inc.root,
        "flapping": inc.flapping,
        "reopened": inc.reopened,
        "services": sorted(inc.services),
        "causes": inc.causes,
        "alerts": members,
        "timeline": inc.timeline,
        "escalation": None
        if inc.escalation is None
        else {
            "policy": inc.escalation.policy,
            "level": inc.escalation.level,
            "nextAt": inc.escalation.next_at,
            "stopped": inc.escalation.stopped,
        },
        "threads": [
            {"receiver": t.receiver, "groupKey": t.group_key, "messages": t.seq, "level": t.level}
            for t in inc.threads.values()
        ],
    }
