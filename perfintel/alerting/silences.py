"""Silences (Alertmanager's model) and inhibition, as pure functions of the clock.

A silence mutes every alert its matchers all match while ``starts_at <= now <
ends_at``; it is ``pending`` before, ``expired`` after. Expiring a silence sets
``ends_at`` to now (and, if it had not started, ``starts_at`` too), as
Alertmanager does. An inhibit rule mutes a *target* alert while a firing
*source* alert, other than the target itself, has the same values of every
``equal`` label (a label missing on both counts as equal).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from perfintel.alerting.matchers import LabelMatcher, matches_all
from perfintel.alerting.notify_config import InhibitRule
from perfintel.errors import BadInputError


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[LabelMatcher, ...]
    starts_at: float
    ends_at: float
    created_by: str = ""
    comment: str = ""
    updated_at: float = 0.0
    extra: Mapping[str, Any] = field(default_factory=dict)

    def state(self, now: float) -> str:
        if now < self.starts_at:
            return "pending"
        return "active" if now < self.ends_at else "expired"

    def mutes(self, labels: Mapping[str, str], now: float) -> bool:
        return self.starts_at <= now < self.ends_at and matches_all(self.matchers, labels)

    def expired(self, now: float) -> Silence:
        if self.state(now) == "expired":
            return self
        starts = min(self.starts_at, now)
        return replace(self, starts_at=starts, ends_at=now, updated_at=now)


def new_silence(
    matchers: Sequence[LabelMatcher],
    starts_at: float,
    ends_at: float,
    *,
    now: float,
    created_by: str = "",
    comment: str = "",
    silence_id: str | None = None,
) -> Silence:
    """Validate and build a silence (the checks Alertmanager makes on create)."""
    if not matchers:
        raise BadInputError("a silence needs at least one matcher")
    if all(m.matches_value("") for m in matchers):
        raise BadInputError("at least one matcher must not match the empty string")
    if ends_at <= starts_at:
        raise BadInputError("endsAt must be after startsAt")
    if ends_at < now:
        raise BadInputError("endsAt is in the past")
    return Silence(
        id=silence_id or str(uuid.uuid4()),
        matchers=tuple(matchers),
        starts_at=max(starts_at, now) if starts_at < now else starts_at,
        ends_at=ends_at,
        created_by=created_by,
        comment=comment,
        updated_at=now,
    )


def silenced_by(silences: Iterable[Silence], labels: Mapping[str, str], now: float) -> list[str]:
    return [s.id for s in silences if s.mutes(labels, now)]


class Inhibitor:
    """Inhibition over one set of firing alerts, indexed by each rule's ``equal`` values.

    Building it is linear in the firing alerts; asking about a target is
    linear in the rules, so a storm of thousands of alerts stays cheap.
    """

    def __init__(
        self, rules: Sequence[InhibitRule], firing: Iterable[tuple[str, Mapping[str, str]]]
    ) -> None:
        self.rules = list(rules)
        self._sources: list[dict[tuple[str, ...], list[str]]] = [{} for _ in self.rules]
        for fp, labels in firing:
            for i, rule in enumerate(self.rules):
                if matches_all(rule.source, labels):
                    key = tuple(labels.get(n, "") for n in rule.equal)
                    self._sources[i].setdefault(key, []).append(fp)

    def inhibited_by(self, target: Mapping[str, str], target_fp: str) -> list[str]:
        out: list[str] = []
        for i, rule in enumerate(self.rules):
            if not self._sources[i] or not matches_all(rule.target, target):
                continue
            key = tuple(target.get(n, "") for n in rule.equal)
            for fp in self._sources[i].get(key, ()):
                if fp != target_fp and fp not in out:
                    out.append(fp)
                    break
        return out
