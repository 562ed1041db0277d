"""What the dispatcher decides to send: one ``Notification`` per thread message.

A notification is plain data (it is stored in the outbox as JSON and rendered
per channel at delivery). ``key`` is its idempotency key: derived from the
incident, the thread and the thread's message number, so the same decision made
again after a crash yields the same key, and receivers can drop repeats.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from perfintel.alerting.model import Alert

Kind = Literal["firing", "update", "repeat", "resolved", "escalation", "acknowledged"]
ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339(ts: float | None) -> str:
    if ts is None:
        return ZERO_TIME
    return (
        dt.datetime.fromtimestamp(ts, dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def idempotency_key(incident_id: str, thread_key: str, seq: int) -> str:
    return hashlib.sha256(f"{incident_id}|{thread_key}|{seq}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class AlertSnapshot:
    fingerprint: str
    status: Literal["firing", "resolved"]
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: float
    ends_at: float | None
    generator_url: str = ""
    explanation: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, alert: Alert, now: float) -> AlertSnapshot:
        resolved = alert.resolved(now)
        return cls(
            fingerprint=alert.fingerprint,
            status="resolved" if resolved else "firing",
            labels=dict(alert.labels),
            annotations=dict(alert.annotations),
            starts_at=alert.starts_at,
            ends_at=alert.ends_at if resolved else None,
            generator_url=alert.generator_url,
            explanation=dict(alert.explanation),
        )

    def to_webhook(self) -> dict[str, Any]:
        """One alert of Alertmanager's webhook payload (version 4)."""
        return {
            "status": self.status,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "startsAt": rfc3339(self.starts_at),
            "endsAt": rfc3339(self.ends_at),
            "generatorURL": self.generator_url,
            "fingerprint": self.fingerprint,
        }


@dataclass(frozen=True)
class Notification:
    key: str
    kind: Kind
    receiver: str
    incident_id: str
    thread_key: str
    group_key: str
    status: Literal["firing", "resolved"]
    alerts: Sequence[AlertSnapshot]
    group_labels: Mapping[str, str]
    created_at: float
    level: int = 0
    title: str = ""
    incident_state: str = "open"
    root_fingerprint: str = ""
    services: Sequence[str] = ()
    acked_by: str = ""
    flapping: bool = False
    alert_count: int = 0

    @property
    def firing(self) -> list[AlertSnapshot]:
        return [a for a in self.alerts if a.status == "firing"]

    @property
    def resolved(self) -> list[AlertSnapshot]:
        return [a for a in self.alerts if a.status == "resolved"]

    @property
    def common_labels(self) -> dict[str, str]:
        return common_items([a.labels for a in self.alerts])

    @property
    def common_annotations(self) -> dict[str, str]:
        return common_items([a.annotations for a in self.alerts])

    @property
    def root(self) -> AlertSnapshot | None:
        return next((a for a in self.alerts if a.fingerprint == self.root_fingerprint), None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Notification:
        data = dict(d)
        data["alerts"] = [AlertSnapshot(**a) for a in data["alerts"]]
        data["services"] = tuple(data.get("services", ()))
        return cls(**data)


def common_items(maps: Sequence[Mapping[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    out = dict(maps[0])
    for m in maps[1:]:
        for k in list(out):
            if m.get(k) != out[k]:
                del out[k]
    return out
