"""Escalation policies as a clock-driven state machine over one incident.

An open, unacknowledged incident that matches a policy climbs its levels L1-L5:
level n is paged ``delay`` after level n-1 (the first level ``delay`` after the
incident opened). After the last level the policy stops, or, with ``repeat``,
pages the last level again every ``max(delay, 60 s)``. Which messages a page
becomes (threads, idempotency keys) is the dispatcher's business; this module
only decides *when* and *which level*.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from perfintel.alerting.incidents import Escalation, Incident
from perfintel.alerting.matchers import matches_all
from perfintel.alerting.notify_config import EscalationLevel, EscalationPolicy
from perfintel.model import LabelSet

#: the labels of one member alert of an incident (None once it is forgotten)
LabelsOf = Callable[[str], LabelSet | None]


def policy_for(
    policies: Sequence[EscalationPolicy], inc: Incident, labels_of: LabelsOf
) -> EscalationPolicy | None:
    """The first policy one of the incident's alerts matches."""
    for pol in policies:
        for fp in inc.members:
            labels = labels_of(fp)
            if labels is not None and matches_all(pol.matchers, dict(labels)):
                return pol
    return None


def due_level(
    policies: Sequence[EscalationPolicy], inc: Incident, labels_of: LabelsOf, now: float
) -> tuple[int, EscalationLevel] | None:
    """The level to page now (its 0-based index and its receivers), or None.

    Advances ``inc.escalation``: starts it when an open incident first matches a
    policy, moves it to the next level when one is due (the caller pages it and
    logs it), and stops it when the policy is exhausted or removed."""
    if inc.escalation is None:
        if inc.state != "open":
            return None
        pol = policy_for(policies, inc, labels_of)
        if pol is None:
            return None
        inc.escalation = Escalation(pol.name, 0, inc.opened_at + pol.levels[0].delay)
        inc.log(now, "escalation", f"escalation policy {pol.name} applies")
    esc = inc.escalation
    if esc.stopped or esc.next_at is None or inc.state != "open" or now < esc.next_at:
        return None
    found = next((p for p in policies if p.name == esc.policy), None)
    if found is None:
        esc.stopped, esc.next_at = "policy removed", None
        return None
    index = min(esc.level, len(found.levels) - 1)
    level = found.levels[index]
    esc.level = index + 1
    if esc.level < len(found.levels):
        esc.next_at = now + found.levels[esc.level].delay
    elif found.repeat:
        esc.next_at = now + max(level.delay, 60.0)
    else:
        esc.stopped, esc.next_at = "exhausted", None
    return index, level
