"""The notification configuration as the dispatcher uses it: routes, receivers
and their integrations, inhibit rules, and perfintel's extensions (incidents,
flapping, escalation policies, template overrides), all in ``NotifyConfig``.

Plain data: ``amconfig.py`` reads it from ``alertmanager.yml`` (and the
extensions file) and checks it; everything after reads only these classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from perfintel.alerting.matchers import LabelMatcher
from perfintel.alerting.time_intervals import TimeInterval


@dataclass(frozen=True)
class Integration:
    """One ``*_configs`` entry of a receiver: its kind, position and settings as written."""

    kind: str
    index: int
    settings: Mapping[str, Any]
    send_resolved: bool

    @property
    def name(self) -> str:
        return f"{self.kind}[{self.index}]"


@dataclass(frozen=True)
class Receiver:
    name: str
    integrations: tuple[Integration, ...] = ()
    undelivered: tuple[str, ...] = ()  # integration kinds perfintel accepts but does not send


@dataclass
class Route:
    receiver: str
    group_by: tuple[str, ...] = ()
    group_by_all: bool = False
    matchers: tuple[LabelMatcher, ...] = ()
    continue_: bool = False
    group_wait: float = 30.0
    group_interval: float = 300.0
    repeat_interval: float = 4 * 3600.0
    mute_time_intervals: tuple[str, ...] = ()
    active_time_intervals: tuple[str, ...] = ()
    routes: list[Route] = field(default_factory=list)
    key: str = "{}"
    id: str = "0"

    def match(self, labels: Mapping[str, str]) -> list[Route]:
        """The routes an alert goes to, Alertmanager's depth-first walk with ``continue``."""
        if not all(m.matches(labels) for m in self.matchers):
            return []
        out: list[Route] = []
        for child in self.routes:
            found = child.match(labels)
            out.extend(found)
            if found and not child.continue_:
                break
        return out or [self]

    def walk(self) -> list[Route]:
        out = [self]
        for child in self.routes:
            out.extend(child.walk())
        return out

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        if self.group_by_all:
            return dict(labels)
        return {k: labels[k] for k in self.group_by if k in labels}


@dataclass(frozen=True)
class InhibitRule:
    source: tuple[LabelMatcher, ...]
    target: tuple[LabelMatcher, ...]
    equal: tuple[str, ...]


@dataclass(frozen=True)
class EscalationLevel:
    delay: float
    receivers: tuple[str, ...]


@dataclass(frozen=True)
class EscalationPolicy:
    """Up to five levels; level n fires ``delay`` after level n-1 unless the incident is acked."""

    name: str
    matchers: tuple[LabelMatcher, ...] = ()
    levels: tuple[EscalationLevel, ...] = ()
    repeat: bool = False


@dataclass(frozen=True)
class IncidentSettings:
    """How alerts become incidents. ``None`` durations derive from the root route's timers."""

    enabled: bool = True
    window: float | None = None  # close in time: 2 x root group_interval
    correlate_labels: tuple[str, ...] = (
        "service",
        "app",
        "application",
        "host",
        "instance",
        "node",
        "pod",
        "deployment",
    )
    service_label: str = "service"
    dependencies: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    learn_dependencies: bool = True
    storm_alerts: int = 4  # this many alerts joining incidents within the window make a storm
    resolve_hold: float | None = None  # 2 x root group_interval


@dataclass(frozen=True)
class FlapSettings:
    window: float | None = None  # 24 x root group_interval
    threshold: int = 3


@dataclass(frozen=True)
class TemplateOverride:
    title: str | None = None
    text: str | None = None
    html: str | None = None


@dataclass(frozen=True)
class Extensions:
    incidents: IncidentSettings = field(default_factory=IncidentSettings)
    flapping: FlapSettings = field(default_factory=FlapSettings)
    escalation_policies: tuple[EscalationPolicy, ...] = ()
    default_template: TemplateOverride = field(default_factory=TemplateOverride)
    receiver_templates: Mapping[str, TemplateOverride] = field(default_factory=dict)
    ack_link_ttl: float = 24 * 3600.0


@dataclass
class NotifyConfig:
    route: Route
    receivers: dict[str, Receiver]
    inhibit_rules: list[InhibitRule] = field(default_factory=list)
    time_intervals: dict[str, list[TimeInterval]] = field(default_factory=dict)
    global_: dict[str, Any] = field(default_factory=dict)
    templates: list[str] = field(default_factory=list)
    extensions: Extensions = field(default_factory=Extensions)
    resolve_timeout: float = 300.0
    source: str = ""  # the file's text, for /api/v2/status
    path: str = ""
    warnings: list[str] = field(default_factory=list)

    # Timers derived from the root route when the extensions leave them unset.
    @property
    def incident_window(self) -> float:
        return self.extensions.incidents.window or 2 * self.route.group_interval

    @property
    def resolve_hold(self) -> float:
        hold = self.extensions.incidents.resolve_hold
        return 2 * self.route.group_interval if hold is None else hold

    @property
    def flap_window(self) -> float:
        return self.extensions.flapping.window or 24 * self.route.group_interval
