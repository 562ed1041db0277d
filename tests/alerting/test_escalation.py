"""The escalation state machine on its own: which level is due when, for one incident."""

from __future__ import annotations

from perfintel.alerting.escalation import due_level, policy_for
from perfintel.alerting.incidents import Incident, Member
from perfintel.alerting.matchers import parse_matcher
from perfintel.alerting.notify_config import EscalationLevel, EscalationPolicy
from perfintel.model import LabelSet, label_set

T0 = 1_000_000.0
LABELS = {"a1": label_set({"alertname": "Down", "team": "db"})}


def _labels_of(fp: str) -> LabelSet | None:
    return LABELS.get(fp)


def _incident() -> Incident:
    inc = Incident(id="i1", opened_at=T0)
    inc.members["a1"] = Member("a1", T0, T0, "first")
    return inc


def _policy(repeat: bool = False) -> EscalationPolicy:
    return EscalationPolicy(
        "db",
        (parse_matcher('team="db"'),),
        (EscalationLevel(0.0, ("oncall",)), EscalationLevel(300.0, ("lead", "cto"))),
        repeat,
    )


def test_levels_follow_the_clock_and_stop_when_exhausted() -> None:
    inc, pols = _incident(), [_policy()]
    assert due_level(pols, inc, _labels_of, T0) == (0, pols[0].levels[0])
    assert due_level(pols, inc, _labels_of, T0 + 299) is None
    assert due_level(pols, inc, _labels_of, T0 + 300) == (1, pols[0].levels[1])
    assert inc.escalation is not None and inc.escalation.stopped == "exhausted"
    assert due_level(pols, inc, _labels_of, T0 + 10_000) is None


def test_repeat_pages_the_last_level_again() -> None:
    inc, pols = _incident(), [_policy(repeat=True)]
    due_level(pols, inc, _labels_of, T0)
    due_level(pols, inc, _labels_of, T0 + 300)
    assert due_level(pols, inc, _labels_of, T0 + 599) is None
    assert due_level(pols, inc, _labels_of, T0 + 600) == (1, pols[0].levels[1])


def test_acknowledged_or_unmatched_incidents_do_not_escalate() -> None:
    inc = _incident()
    other = [EscalationPolicy("web", (parse_matcher('team="web"'),), _policy().levels)]
    assert policy_for(other, inc, _labels_of) is None
    assert due_level(other, inc, _labels_of, T0) is None
    inc.state = "acknowledged"
    assert due_level([_policy()], inc, _labels_of, T0) is None and inc.escalation is None


def test_a_removed_policy_stops_the_escalation() -> None:
    inc = _incident()
    due_level([_policy()], inc, _labels_of, T0)
    assert due_level([], inc, _labels_of, T0 + 300) is None
    assert inc.escalation is not None and inc.escalation.stopped == "policy removed"
