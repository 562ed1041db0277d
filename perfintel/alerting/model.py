"""The alerting vocabulary shared by the rule engine and the notification pipeline.

An ``Alert`` is what Prometheus sends to Alertmanager: a label set (its
identity), annotations, when it started and, once resolved, when it ended. The
fingerprint is Alertmanager's (FNV-1a over sorted label names and values), so
perfintel, ``amtool`` and a real Alertmanager name the same alert the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from perfintel.model import LabelSet, label_set

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_MASK = (1 << 64) - 1
_SEPARATOR = 0xFF


def fingerprint(labels: LabelSet | Mapping[str, str]) -> str:
    """Alertmanager's fingerprint of a label set: 16 lowercase hex digits."""
    items = sorted(labels.items()) if isinstance(labels, Mapping) else sorted(labels)
    if not items:
        return f"{_FNV_OFFSET:016x}"
    h = _FNV_OFFSET
    for name, value in items:
        for part in (name, value):
            for byte in part.encode():
                h = ((h ^ byte) * _FNV_PRIME) & _MASK
            h = ((h ^ _SEPARATOR) * _FNV_PRIME) & _MASK
    return f"{h:016x}"


@dataclass(frozen=True)
class Alert:
    """One alert as it crosses the rule-engine / pipeline boundary.

    Times are Unix seconds. ``ends_at`` is ``None`` while the alert fires with
    no known end; a resolved alert has ``ends_at`` at or before now. Prometheus
    resends a firing alert on every evaluation with ``ends_at`` a few intervals
    ahead; the pipeline treats an alert whose ``ends_at`` passed as resolved.

    ``annotations`` are strings (Alertmanager's model). ``explanation`` holds
    structured evidence for templates and the UI (the value, the expected band,
    anomaly score, a predicted crossing with its interval and confidence, series
    that moved with it); alerts from an external Prometheus have none.
    """

    labels: LabelSet
    annotations: Mapping[str, str] = field(default_factory=dict)
    starts_at: float = 0.0
    ends_at: float | None = None
    generator_url: str = ""
    explanation: Mapping[str, object] = field(default_factory=dict)

    @classmethod
    def of(cls, labels: Mapping[str, str], **kwargs: object) -> Alert:
        return cls(label_set(labels), **kwargs)  # type: ignore[arg-type]

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)

    @property
    def name(self) -> str:
        return dict(self.labels).get("alertname", "")

    def resolved(self, now: float) -> bool:
        return self.ends_at is not None and self.ends_at <= now


class AlertSink(Protocol):
    """Where alerts go: the notification pipeline, or a fake that collects them.

    ``send`` is called from the rule engine's evaluation thread (and by the
    ``/api/v2/alerts`` handler through a thread pool); it must be thread-safe and
    must not block on notification delivery.
    """

    def send(self, alerts: Sequence[Alert]) -> None: ...


class CollectingSink:
    """An in-memory ``AlertSink`` for tests of the code that sends alerts."""

    def __init__(self) -> None:
        self.received: list[Alert] = []

    def send(self, alerts: Sequence[Alert]) -> None:
        self.received.extend(alerts)
