"""Noise reduction of the notification core at simulated time: one thread per incident,
storms that start in pieces, flapping judged per alert, stale resolutions."""

from __future__ import annotations

from dataclasses import replace

from notify_helpers import T0, alert

from perfintel.alerting.amconfig import parse_config
from perfintel.alerting.dispatcher import NotifyCore
from perfintel.alerting.notification import Notification

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
receivers:
  - name: ops
  - name: pager
"""


def run(core: NotifyCore, start: float, end: float, step: float = 5.0) -> list[Notification]:
    out = []
    t = start
    while t <= end:
        out.extend(core.tick(t))
        core.changes.clear()
        t += step
    return out


def test_an_incident_with_a_specific_route_takes_the_catch_alls_share_in_one_thread() -> None:
    core = NotifyCore(parse_config(CONFIG))
    crit = alert(T0, alertname="Http5xx", service="shop", instance="shop:1", severity="critical")
    warn = alert(T0, alertname="HighLatency", service="shop", instance="shop:2", severity="warning")
    core.receive([crit, warn], T0)
    notes = run(core, T0, T0 + 60)
    assert [(n.kind, n.receiver) for n in notes] == [("firing", "pager")]
    assert {a.fingerprint for a in notes[0].alerts} == {crit.fingerprint, warn.fingerprint}
    # an unrelated warning alone still goes to the default receiver
    lone = alert(T0 + 3600, alertname="CertExpiring", service="billing", severity="warning")
    core.receive([lone], T0 + 3600)
    later = run(core, T0 + 3600, T0 + 3700)
    assert [(n.kind, n.receiver) for n in later if n.kind == "firing"] == [("firing", "ops")]


def test_the_default_receiver_told_first_keeps_its_thread() -> None:
    core = NotifyCore(parse_config(CONFIG))
    warn = alert(T0, alertname="HighLatency", service="shop", instance="shop:2", severity="warning")
    core.receive([warn], T0)
    first = run(core, T0, T0 + 60)
    assert [(n.kind, n.receiver) for n in first] == [("firing", "ops")]
    crit = alert(T0 + 120, alertname="Http5xx", service="shop", severity="critical")
    core.receive([replace(warn, ends_at=T0 + 600), crit], T0 + 120)
    more = run(core, T0 + 120, T0 + 200)
    assert [(n.kind, n.receiver) for n in more] == [("firing", "pager")]


def test_a_storm_that_starts_in_pieces_is_one_incident_and_one_message() -> None:
    """An outage's first batch: a few instance-down alerts, one error-rate alert and one
    latency alert with nothing in common but the moment. The lone symptoms wait, spread
    in the next batch, and merge; an unrelated single in the same minutes is still sent."""
    core = NotifyCore(parse_config(CONFIG.replace('severity="critical"', 'severity="page"')))
    down = [
        alert(T0, alertname="InstanceDown", job=f"app{i}", instance=f"app{i}:9100", severity="page")
        for i in range(5)
    ]
    errors = [
        alert(T0 + k, alertname="Http5xxRate", job=f"app{k}", instance=f"app{k}:80")
        for k in range(6)
    ]
    # short: it ends before the wait is over, and is still announced (then resolved)
    single = alert(T0, ends=T0 + 200, alertname="BackupJobFailed", job="backup", instance="b:1")
    core.receive([*down, errors[0], single], T0)
    notes = run(core, T0, T0 + 115)
    core.receive([*errors[1:]], T0 + 120)
    notes += run(core, T0 + 120, T0 + 600)
    firing = [(n.receiver, sorted({a.labels["alertname"] for a in n.alerts})) for n in notes]
    assert firing[0] == ("pager", ["InstanceDown"])  # in time: group_wait after the first
    assert notes[0].created_at <= T0 + 35
    incidents = {core.alerts[a.fingerprint].incident for a in [*down, *errors]}
    assert len(incidents) == 1
    sent = [n for n in notes if n.alerts[0].labels["alertname"] == "BackupJobFailed"]
    assert [(n.kind, n.alerts[0].status) for n in sent] == [("firing", "firing")]
    assert len(notes) == 2, firing


def test_alerts_of_a_large_incident_firing_again_once_do_not_make_it_flap() -> None:
    core = NotifyCore(parse_config(CONFIG))
    pods = [alert(T0, alertname="PodRestarting", service="shop", pod=f"p{i}") for i in range(4)]
    core.receive(pods, T0)
    run(core, T0, T0 + 60)
    inc = core.incidents[core.alerts[pods[0].fingerprint].incident or ""]
    t = T0 + 120
    for p in pods:  # each pod restarts once more while the incident is open
        core.receive([replace(p, ends_at=t)], t)
        core.receive([replace(p, starts_at=t + 60, ends_at=t + 400)], t + 60)
        run(core, t, t + 60)
    assert not inc.flapping
    # one alert flipping three times is flapping
    t += 120
    for _ in range(3):
        core.receive([replace(pods[0], starts_at=t, ends_at=t + 1)], t + 1)
        core.receive([replace(pods[0], starts_at=t + 60, ends_at=t + 400)], t + 60)
        run(core, t + 1, t + 61)
        t += 120
    assert inc.flapping


def test_a_resolution_of_an_earlier_episode_resent_later_is_not_a_flip() -> None:
    """Prometheus resends a resolved alert for a while; if the alert fired again in the
    meantime, that old resolution must not end the new episode."""
    core = NotifyCore(parse_config(CONFIG))
    a = alert(T0, ends=T0 + 100, alertname="DiskLatency", service="db")
    core.receive([a], T0)
    run(core, T0, T0 + 200)
    again = replace(a, starts_at=T0 + 300, ends_at=T0 + 900)
    flips = []
    for t in range(300, 900, 60):  # both are sent on every evaluation
        core.receive([a, again], T0 + t)
        run(core, T0 + t, T0 + t + 55)
        inc = core.incidents[core.alerts[a.fingerprint].incident or ""]
        flips.append(len(inc.flips))
        assert not core.alerts[a.fingerprint].alert.resolved(T0 + t + 1)
    assert max(flips) <= 2  # the re-opening itself, not one flip per evaluation


def test_an_outage_coming_back_re_opens_its_incident_and_is_announced_after_group_wait() -> None:
    core = NotifyCore(parse_config(CONFIG))
    down = [alert(T0, alertname="InstanceDown", service="shop", instance=f"s{i}") for i in range(5)]
    core.receive(down, T0)
    notes = run(core, T0, T0 + 60)
    core.receive([replace(a, ends_at=T0 + 120) for a in down], T0 + 120)
    notes += run(core, T0 + 120, T0 + 900)
    assert [n.kind for n in notes] == ["firing", "resolved"]
    back = T0 + 3600  # within the flap window: the same incident re-opens
    core.receive([replace(a, starts_at=back, ends_at=back + 600) for a in down], back)
    again = run(core, back, back + 60)
    assert [n.kind for n in again] == ["update"]
    assert again[0].incident_id == notes[0].incident_id
    # one alert of it firing again is a flip, announced only once it outlasts the hold
    core.receive([replace(down[0], starts_at=back + 600, ends_at=back + 600)], back + 600)
    run(core, back + 600, back + 2000)
    one = back + 2100
    core.receive([replace(down[0], starts_at=one, ends_at=one + 300)], one)
    assert [n.kind for n in run(core, one, one + 60)] == []


def test_a_page_opened_during_a_storm_is_not_held_back() -> None:
    """During a storm a warning-level incident that is not the storm's waits a
    group_interval (it may turn out to be part of it); a critical one never waits."""
    core = NotifyCore(parse_config(CONFIG))
    storm = [
        alert(T0, alertname="InstanceDown", job=f"app{i}", instance=f"app{i}:9100")
        for i in range(12)
    ]
    core.receive(storm, T0)
    notes = run(core, T0, T0 + 60)
    disk = alert(T0 + 60, alertname="DiskFull", job="db", instance="db:1", severity="critical")
    slow = alert(T0 + 60, alertname="SlowQueries", job="db2", instance="db2:1", severity="warning")
    core.receive([*storm, disk, slow], T0 + 60)
    notes = run(core, T0 + 60, T0 + 500)
    first = {n.alerts[0].labels["alertname"]: n.created_at for n in notes if n.kind == "firing"}
    assert first["DiskFull"] <= T0 + 60 + 35  # group_wait, not group_interval
    assert first["SlowQueries"] >= T0 + 60 + 300  # waited to see whether the storm took it
