"""The pipeline over real SQL state (SQLite and PostgreSQL): restart, outbox, API objects."""

from __future__ import annotations

from dataclasses import replace

import pytest
import sqlalchemy as sa
from notify_helpers import T0, Clock, alert

from perfintel.alerting.amconfig import parse_config
from perfintel.alerting.channels.base import DeliveryError
from perfintel.alerting.channels.memory import RecordingChannel
from perfintel.alerting.pipeline import Pipeline
from perfintel.alerting.state.database import open_database
from perfintel.alerting.state.notify_tables import outbox
from perfintel.errors import BadInputError

CONFIG = """\
route:
  receiver: ops
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
receivers:
  - name: ops
    webhook_configs:
      - url: http://127.0.0.1:1/ops
      - url: http://127.0.0.1:1/ops2
        send_resolved: false
"""


def make(url: str, clock: Clock, channel: RecordingChannel) -> Pipeline:
    p = Pipeline(
        open_database(url),
        parse_config(CONFIG),
        clock=clock,
        channels={"webhook": channel},
        background=False,
    )
    p.start()
    return p


def drive(p: Pipeline, clock: Clock, seconds: float, step: float = 5.0) -> None:
    end = clock.t + seconds
    while clock.t < end:
        p.tick()
        p.deliver()
        clock.advance(step)


def test_restart_keeps_firing_alerts_and_does_not_notify_again(database_url: str) -> None:
    clock, ch = Clock(), RecordingChannel()
    p = make(database_url, clock, ch)
    a = alert(T0, ends=T0 + 3600, alertname="DiskFull", service="db")
    p.send([a])
    drive(p, clock, 60)
    assert [m.notification.kind for m, _ in ch.messages] == ["firing", "firing"]  # two integrations
    keys = {m.idempotency_key for m, _ in ch.messages}
    p.close()

    ch2 = RecordingChannel()
    p2 = make(database_url, clock, ch2)
    assert a.fingerprint in p2.core.alerts and not p2.core.alerts[a.fingerprint].alert.resolved(
        clock.t
    )
    inc = p2.core.alerts[a.fingerprint].incident
    assert inc is not None and p2.core.incidents[inc].state == "open"
    drive(p2, clock, 600)
    assert ch2.messages == []  # nothing re-notified
    # resolve: one resolved message, to the integration with send_resolved only
    p2.send([replace(a, ends_at=clock.t)])
    drive(p2, clock, 700)
    assert [(m.notification.kind, s["url"]) for m, s in ch2.messages] == [
        ("resolved", "http://127.0.0.1:1/ops")
    ]
    assert not ({m.idempotency_key for m, _ in ch2.messages} & keys)
    log = p2.store.log()
    assert [r.status for r in log] == ["sent"] * 3
    p2.close()


def test_outbox_retries_5xx_and_429_not_other_4xx(database_url: str) -> None:
    clock, ch = Clock(), RecordingChannel()
    p = make(database_url, clock, ch)
    ch.fail_next = [
        DeliveryError("HTTP 503", retryable=True),
        DeliveryError("HTTP 429", retryable=True, retry_after=3),
        DeliveryError("HTTP 400 bad payload", retryable=False),
    ]
    p.send([alert(T0, ends=T0 + 3600, alertname="X")])
    drive(p, clock, 120, step=1.0)
    rows = {r.integration: r for r in p.store.log()}
    statuses = sorted(r.status for r in rows.values())
    # the two integrations are delivered in parallel: between them they met 503, 429 (both
    # retried) and 400 (final); one went through in the end, the other stopped at the 400
    assert statuses == ["failed", "sent"]
    assert sum(r.attempts for r in rows.values()) == 4
    assert "400" in (next(r for r in rows.values() if r.status == "failed").last_error or "")
    assert len(ch.messages) == 1
    p.close()


def test_outbox_row_is_unique_on_its_idempotency_key(database_url: str) -> None:
    engine = open_database(database_url)
    row = {
        "key": "k:webhook[0]",
        "notification_key": "k",
        "receiver": "r",
        "integration": "webhook[0]",
        "incident_id": "i",
        "kind": "firing",
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": 0.0,
        "created_at": 0.0,
        "payload": {},
    }
    with engine.begin() as conn:
        conn.execute(outbox.insert(), row)
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(outbox.insert(), row)
    engine.dispose()


def test_receivers_and_policies_through_the_api_survive_a_restart(database_url: str) -> None:
    clock, ch = Clock(), RecordingChannel()
    p = make(database_url, clock, ch)
    p.put_receiver({"name": "lead", "webhook_configs": [{"url": "http://127.0.0.1:1/lead"}]})
    p.put_policy(
        {
            "name": "all",
            "levels": [
                {"delay": "0s", "receivers": ["ops"]},
                {"delay": "5m", "receivers": ["lead"]},
            ],
        }
    )
    with pytest.raises(BadInputError, match="undefined receiver"):
        p.put_policy({"name": "bad", "levels": [{"delay": "0s", "receivers": ["ghost"]}]})
    with pytest.raises(BadInputError, match="configuration file"):
        p.put_receiver({"name": "ops", "webhook_configs": [{"url": "http://x/"}]})
    with pytest.raises(BadInputError, match="url"):
        p.put_receiver({"name": "broken", "webhook_configs": [{}]})
    # what Alertmanager refuses: a URL that every notification would fail on
    with pytest.raises(BadInputError, match="unsupported scheme '' for URL in api_url"):
        p.put_receiver({"name": "chat", "slack_configs": [{"api_url": "not a url"}]})
    p.close()
    p2 = make(database_url, clock, ch)
    assert "lead" in p2.core.receivers and [x.name for x in p2.core.policies] == ["all"]
    p2.send([alert(T0, ends=T0 + 3600, alertname="Y")])
    for _ in range(80):
        p2.send([alert(T0, ends=clock.t + 300, alertname="Y")])
        drive(p2, clock, 5)
    levels = [
        (m.notification.receiver, m.notification.level)
        for m, _ in ch.messages
        if m.notification.kind == "escalation"
    ]
    assert levels == [("ops", 1), ("ops", 1), ("lead", 2)]  # ops has two integrations
    analytics = p2.store.analytics(T0 - 10, clock.t + 10)
    assert analytics["incidents"] == 1 and analytics["notificationsPerIncident"]["total"] == 3
    p2.close()
