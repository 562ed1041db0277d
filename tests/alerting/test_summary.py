"""The active summary (perfintel.alerting.summary) over a real NotifyCore driven by its clock."""

from __future__ import annotations

from notify_helpers import T0, alert
from test_dispatcher import CONFIG

from perfintel.alerting import summary as sm
from perfintel.alerting.amconfig import parse_config
from perfintel.alerting.dispatcher import NotifyCore
from perfintel.alerting.matchers import parse_matcher
from perfintel.alerting.silences import new_silence


def test_counts_top_items_and_entities_follow_the_core() -> None:
    core = NotifyCore(parse_config(CONFIG))
    core.receive(
        [
            alert(T0, alertname="Down", severity="critical", service="db", instance="db-1:9100"),
            alert(T0 + 1, alertname="Slow", severity="warning", service="api", instance="a:80"),
            alert(T0 + 2, alertname="Note", service="api", instance="a:80"),
            alert(T0 + 3, alertname="Gone", severity="critical", service="x"),
        ],
        T0 + 5,
    )
    core.receive(
        [alert(T0 + 3, ends=T0 + 4, alertname="Gone", severity="critical", service="x")], T0 + 5
    )
    core.tick(T0 + 5)
    s = sm.summarise(core, T0 + 5, top=2)
    assert dict(s.alerts) == {"critical": 1, "warning": 1, "info": 1}  # Gone is resolved
    assert [a["labels"]["alertname"] for a in s.top_alerts] == ["Down", "Slow"]  # worst first
    assert s.top_alerts[0]["incident"] is not None
    assert dict(s.incidents)["open"] >= 1 and s.top_incidents[0]["severity"] == "critical"
    assert s.top_incidents[0]["escalationLevel"] == 1  # level 1 of the policy: no delay
    assert s.by_entity[("api", "a:80")] == {"warning": 1, "info": 1}
    assert s.by_entity[("db", "db-1:9100")] == {"critical": 1}
    # an unchanged core gives an equal summary (the pipeline's change test), a silence does not
    assert sm.summarise(core, T0 + 5, top=2) == s
    core.put_silence(
        new_silence([parse_matcher('alertname="Down"')], T0 + 5, T0 + 3600, now=T0 + 5)
    )
    core.tick(T0 + 6)
    after = sm.summarise(core, T0 + 6, top=2)
    assert after != s and after.silenced == 1 and after.silences == 1
    assert dict(after.alerts)["critical"] == 0 and ("db", "db-1:9100") not in after.by_entity
    assert after.to_json()["firing"] == 2


def test_entity_keys_are_bounded() -> None:
    core = NotifyCore(parse_config(CONFIG))
    core.receive(
        [alert(T0, alertname="A", service=f"s{i}") for i in range(sm.MAX_ENTITY_KEYS + 5)], T0
    )
    s = sm.summarise(core, T0)
    assert len(s.by_entity) == sm.MAX_ENTITY_KEYS and s.entities_dropped == 5
    assert sum(s.alerts.values()) == sm.MAX_ENTITY_KEYS + 5  # counted all the same
