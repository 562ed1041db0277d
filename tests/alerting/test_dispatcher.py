"""The notification core at simulated time: incidents, muting, flapping, escalation."""

from __future__ import annotations

from dataclasses import replace

from notify_helpers import T0, alert

from perfintel.alerting.amconfig import parse_config
from perfintel.alerting.dispatcher import NotifyCore
from perfintel.alerting.matchers import parse_matcher
from perfintel.alerting.notification import Notification
from perfintel.alerting.silences import new_silence

CONFIG = """\
route:
  receiver: ops
  group_by: [alertname, service]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
  routes:
    - matchers: ['severity="critical"']
      receiver: pager
      continue: true
receivers:
  - name: ops
  - name: pager
  - name: lead
  - name: manager
inhibit_rules:
  - source_matchers: ['alertname="NodeDown"']
    target_matchers: ['alertname="HighLatency"']
    equal: [instance]
perfintel:
  escalation_policies:
    - name: crit
      matchers: ['severity="critical"']
      levels:
        - {delay: 0s, receivers: [pager]}
        - {delay: 10m, receivers: [lead]}
        - {delay: 10m, receivers: [manager]}
"""


def run(core: NotifyCore, start: float, end: float, step: float = 5.0) -> list[Notification]:
    out = []
    t = start
    while t <= end:
        out.extend(core.tick(t))
        core.changes.clear()
        t += step
    return out


def keep_firing(core: NotifyCore, alerts: list, t: float) -> None:
    core.receive([replace(a, ends_at=t + 300) for a in alerts], t)


def test_a_cascade_is_one_incident_with_one_message_per_receiver_and_singles_stay_apart() -> None:
    core = NotifyCore(parse_config(CONFIG.split("perfintel:")[0]))
    cascade = [
        alert(T0 + i * 20, alertname=name, service=f"svc{i}", instance=f"svc{i}:1")
        for i in range(12)
        for name in ("HighErrorRate", "HighLatency")
    ]
    notes: list[Notification] = []
    for i in range(0, 24, 2):  # two new alerts every 20 s
        t = T0 + (i // 2) * 20
        keep_firing(core, cascade[: i + 2], t)
        notes += run(core, t, t + 19)
    assert len({core.alerts[a.fingerprint].incident for a in cascade}) == 1
    assert [(n.kind, n.receiver) for n in notes] == [("firing", "ops")]
    # later: an unrelated alert (nothing in common, no storm) is its own incident and notified
    t = T0 + 3600
    keep_firing(core, cascade, t)
    lone = alert(t, alertname="CertExpiring", service="billing", instance="billing:1")
    core.receive([lone], t)
    later = run(core, t, t + 60)
    assert [(n.kind, len(n.alerts), n.alerts[0].labels["alertname"]) for n in later] == [
        ("firing", 1, "CertExpiring")
    ]
    assert core.alerts[lone.fingerprint].incident != core.alerts[cascade[0].fingerprint].incident


def test_group_wait_then_resolved_after_the_hold() -> None:
    core = NotifyCore(parse_config(CONFIG.split("perfintel:")[0]))
    a = alert(T0, ends=T0 + 120, alertname="DiskFull", service="db", instance="db:1")
    core.receive([a], T0)
    assert run(core, T0, T0 + 25) == []
    first = run(core, T0 + 30, T0 + 30)
    assert [n.kind for n in first] == ["firing"] and first[0].alerts[0].status == "firing"
    # resolved at T0+120; the hold (2 x group_interval) delays the resolved message
    assert run(core, T0 + 35, T0 + 120 + 595) == []
    done = run(core, T0 + 120 + 600, T0 + 120 + 605)
    assert [n.kind for n in done] == ["resolved"] and core.incidents[
        first[0].incident_id
    ].state == "resolved"
    assert done[0].key != first[0].key


def test_silences_and_inhibition_mute() -> None:
    core = NotifyCore(parse_config(CONFIG.split("perfintel:")[0]))
    down = alert(T0, alertname="NodeDown", service="web", instance="web:1")
    slow = alert(T0, alertname="HighLatency", service="api", instance="web:1")
    other = alert(T0, alertname="HighLatency", service="api", instance="web:2")
    core.receive([down, slow, other], T0)
    core.tick(T0)
    assert core.alerts[slow.fingerprint].inhibited_by == [down.fingerprint]
    assert core.alerts[other.fingerprint].inhibited_by == []
    s = new_silence([parse_matcher('instance="web:2"')], T0, T0 + 3600, now=T0)
    core.put_silence(s)
    notes = run(core, T0, T0 + 40)
    sent = {a.fingerprint for n in notes for a in n.alerts}
    assert sent == {down.fingerprint}
    assert core.alerts[other.fingerprint].silenced_by == [s.id]


def test_a_flapping_alert_notifies_once_not_on_every_flip() -> None:
    core = NotifyCore(parse_config(CONFIG.split("perfintel:")[0]))
    notes: list[Notification] = []
    t = T0
    flap = alert(T0, alertname="DiskLatency", service="db", instance="db:9")
    for _ in range(40):  # 4 min on, 6 min off, for almost 7 hours
        start = t
        while t < start + 240:
            core.receive([replace(flap, starts_at=start, ends_at=t + 60)], t)
            notes += run(core, t, t + 55)
            t += 60
        core.receive([replace(flap, starts_at=start, ends_at=t)], t)
        notes += run(core, t, t + 355)
        t += 360
    notes += run(core, t, t + 4 * 3600, step=60)
    kinds = [n.kind for n in notes]
    assert kinds[0] == "firing" and kinds[-1] == "resolved"
    assert len(notes) <= 4, kinds  # against 80 flips


def test_escalation_climbs_until_acknowledged_and_ends_on_resolve() -> None:
    core = NotifyCore(parse_config(CONFIG))
    crit = alert(T0, alertname="Outage", service="shop", instance="shop:1", severity="critical")
    keep_firing(core, [crit], T0)
    notes = run(core, T0, T0 + 11 * 60)
    esc = [(n.receiver, n.level) for n in notes if n.kind == "escalation"]
    assert esc == [("pager", 1), ("lead", 2)]
    assert [n.kind for n in notes if n.receiver == "pager"] == ["escalation"]  # paged once
    inc_id = core.alerts[crit.fingerprint].incident
    assert inc_id is not None
    keep_firing(core, [crit], T0 + 11 * 60)
    core.acknowledge(inc_id, "alice", T0 + 11 * 60)
    after = []
    for k in range(11 * 60, 40 * 60, 60):
        keep_firing(core, [crit], T0 + k)
        after += run(core, T0 + k, T0 + k + 55)
    assert [n for n in after if n.kind == "escalation"] == []  # L3 never comes
    assert {(n.kind, n.receiver) for n in after} >= {("acknowledged", "lead")}
    core.resolve_incident(inc_id, "alice", T0 + 41 * 60)
    end = run(core, T0 + 41 * 60, T0 + 42 * 60)
    assert {(n.kind, n.receiver) for n in end} == {("resolved", "pager"), ("resolved", "lead")}
    assert (
        core.incidents[inc_id].escalation is not None
        and core.incidents[inc_id].escalation.stopped == "acknowledged"
    )


def test_unacknowledged_escalation_reaches_the_last_level() -> None:
    core = NotifyCore(parse_config(CONFIG))
    crit = alert(T0, alertname="Outage", service="shop", instance="shop:1", severity="critical")
    notes = []
    for k in range(0, 30 * 60, 60):
        keep_firing(core, [crit], T0 + k)
        notes += run(core, T0 + k, T0 + k + 55)
    assert [(n.receiver, n.level) for n in notes if n.kind == "escalation"] == [
        ("pager", 1),
        ("lead", 2),
        ("manager", 3),
    ]
    inc = core.incidents[notes[0].incident_id]
    assert inc.escalation is not None and inc.escalation.stopped == "exhausted"
    assert [e["kind"] for e in inc.timeline].count("escalated") == 3


def test_the_causes_hook_is_attached_when_an_incident_opens_and_survives_a_restart() -> None:
    from perfintel.alerting.incidents import Incident

    seen: list[list[str]] = []

    def causes(alerts: list) -> list[dict]:
        seen.append(sorted(dict(a.labels)["alertname"] for a in alerts))
        return [{"labels": {"__name__": "db_pool"}, "explanation": "api latency rose after db"}]

    core = NotifyCore(parse_config(CONFIG.split("perfintel:")[0]), causes=causes)
    a = alert(T0, alertname="HighLatency", service="api", instance="api:1")
    core.receive([a], T0)
    run(core, T0, T0 + 1)
    inc = core.incidents[core.alerts[a.fingerprint].incident or ""]
    assert seen == [["HighLatency"]]  # once, when it opened
    assert inc.causes[0]["labels"] == {"__name__": "db_pool"}
    assert any(e["kind"] == "root-cause" and "after db" in e["text"] for e in inc.timeline)
    assert Incident.from_dict(inc.to_dict()).causes == inc.causes
    # a second alert joining the incident does not re-run the analysis
    b = alert(T0 + 5, alertname="HighErrors", service="api", instance="api:1")
    core.receive([b], T0 + 5)
    run(core, T0 + 5, T0 + 6)
    assert len(seen) == 1


def test_a_failing_causes_hook_never_stops_an_incident_from_opening() -> None:
    def causes(alerts: list) -> list[dict]:
        raise RuntimeError("the store is gone")

    core = NotifyCore(parse_config(CONFIG.split("perfintel:")[0]), causes=causes)
    a = alert(T0, alertname="HighLatency", service="api", instance="api:1")
    core.receive([a], T0)
    notes = run(core, T0, T0 + 60)
    assert [n.kind for n in notes] == ["firing"]
    assert core.incidents[core.alerts[a.fingerprint].incident or ""].causes == []
