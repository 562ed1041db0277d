"""What a rule file declares, once parsed and validated (no evaluation state).

A :class:`GroupSpec` is one entry of a file's ``groups:``; a :class:`RuleSpec`
one of its ``rules:``. ``kind`` is ``"record"``, ``"alert"`` (a Prometheus
alerting rule) or one of perfintel's own kinds (``anomaly``,
``threshold_approaching``, ``capacity_exhaustion``, ``trend_degradation``,
``anomaly_burst``, ``error_budget_burn``), whose parameters are in
``params`` (the kind's pydantic model, see ``perfintel.alerting.rules.kinds``).
Durations are seconds; ``line`` is the 1-based line of the rule in its file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

RECORD = "record"
ALERT = "alert"


@dataclass(frozen=True)
class RuleSpec:
    kind: str
    name: str
    expr: str = ""
    for_s: float = 0.0
    keep_firing_for_s: float = 0.0
    keep_firing_while: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    params: Any = None
    line: int = 0

    @property
    def is_alerting(self) -> bool:
        return self.kind != RECORD

    @property
    def query_text(self) -> str:
        """What ``/api/v1/rules`` shows as the rule's query."""
        if self.kind in (RECORD, ALERT):
            return self.expr
        describe = getattr(self.params, "describe", None)
        return describe() if callable(describe) else self.kind


@dataclass(frozen=True)
class GroupSpec:
    name: str
    file: str
    rules: tuple[RuleSpec, ...]
    interval_s: float | None = None
    limit: int = 0
    query_offset_s: float = 0.0
    labels: Mapping[str, str] = field(default_factory=dict)
    line: int = 0
    #: the group as YAML text (API-defined groups are stored and shown this way)
    source: str = ""
    #: defined through the rules API (``file`` is then its namespace)
    api: bool = False

    @property
    def key(self) -> str:
        """Identity of the group across reloads: file and name (as Prometheus's ``GroupKey``)."""
        return f"{self.file};{self.name}"

    def fingerprint(self) -> str:
        """Changes whenever anything in the group does (a reload keeps unchanged groups running)."""
        return hashlib.blake2b(repr(self).encode(), digest_size=12).hexdigest()
