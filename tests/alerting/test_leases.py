"""Leases with fencing tokens on SQLite and PostgreSQL; the single notifier."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from perfintel.alerting.amconfig import parse_config
from perfintel.alerting.channels.memory import RecordingChannel
from perfintel.alerting.pipeline import Pipeline
from perfintel.alerting.state.database import open_database
from perfintel.alerting.state.leases import LeaseManager, fence
from perfintel.alerting.state.notify_tables import outbox
from perfintel.errors import LeaseLostError
from tests.alerting.notify_helpers import Clock, alert

CONFIG = """\
route:
  receiver: ops
  group_by: [alertname]
  group_wait: 30s
receivers:
  - name: ops
    webhook_configs:
      - url: http://127.0.0.1:1/ops
"""


def test_one_holder_takeover_after_ttl_and_fencing(database_url: str) -> None:
    engine = open_database(database_url)
    clock = Clock()
    a = LeaseManager(engine, "a", ttl=10, clock=clock)
    b = LeaseManager(engine, "b", ttl=10, clock=clock)
    la = a.acquire("notifier")
    assert la is not None and la.token == 1
    assert b.acquire("notifier") is None  # held
    clock.t += 6
    la = a.renew(la)
    assert la is not None and la.token == 1
    clock.t += 6  # still within the renewed TTL
    assert b.acquire("notifier") is None
    clock.t += 5  # a stalled past its TTL
    lb = b.acquire("notifier")
    assert lb is not None and lb.token == 2 and lb.holder == "b"
    assert a.renew(la) is None  # a finds out it lost the lease
    # a's writes are refused by token, b's go through
    with pytest.raises(LeaseLostError), engine.begin() as conn:
        fence(conn, la)
    with engine.begin() as conn:
        fence(conn, lb)
    assert a.holder_of("notifier") == lb
    b.release(lb)
    assert a.holder_of("notifier") is None
    la2 = a.acquire("notifier")
    assert la2 is not None and la2.token == 3
    engine.dispose()


def test_count_live_members(database_url: str) -> None:
    engine = open_database(database_url)
    clock = Clock()
    for name in ("w1", "w2", "w3"):
        assert LeaseManager(engine, name, 5, clock).acquire(f"bus:g:member:{name}") is not None
    lm = LeaseManager(engine, "x", 5, clock)
    assert lm.count_live("bus:g:member:") == 3
    assert lm.count_live("bus:h:member:") == 0
    clock.t += 6
    assert lm.count_live("bus:g:member:") == 0
    engine.dispose()


def test_only_the_lease_holder_notifies_and_a_stale_one_is_fenced(database_url: str) -> None:
    clock = Clock()
    engine1, engine2 = open_database(database_url), open_database(database_url)
    sent1, sent2 = RecordingChannel(), RecordingChannel()
    p1, p2 = (
        Pipeline(
            engine,
            parse_config(CONFIG),
            clock=clock,
            channels={"webhook": channel},
            background=False,
            leases=LeaseManager(engine, name, 10, clock),
        )
        for engine, name, channel in ((engine1, "p1", sent1), (engine2, "p2", sent2))
    )
    try:
        p1.start()
        p2.start()
        assert p1.notifier() and not p2.notifier()
        # received by the follower: handed to the notifier through the shared inbox
        p2.send([alert(clock.t, alertname="Down")])
        p1.send([alert(clock.t, alertname="Up")])
        for _ in range(12):
            clock.t += 5
            p1.tick()
            p2.tick()
        assert p2.deliver() == 0  # only the notifier delivers
        assert p1.deliver() == 2 and len(sent1.messages) == 2 and not sent2.messages
        rows = _outbox_rows(engine1)
        assert any("Down" in str(r) for r in rows) and any("Up" in str(r) for r in rows)
        # p1 stalls past its TTL; p2 takes over, reloads p1's state and adds its own alerts
        clock.t += 11
        assert p2.notifier()
        assert p2.lease is not None and p2.lease.token == 2
        for _ in range(12):
            clock.t += 5
            p2.tick()
        # p1 notified both already: the new notifier knows it and sends nothing again
        assert p2.deliver() == 0 and not sent2.messages
        after = _outbox_rows(engine2)
        assert any("Down" in str(r) for r in after)
        assert len({r.key for r in after}) == len(after) == len(rows)
        # p1 wakes up and writes with its old token: refused
        p1.send([alert(clock.t, alertname="Late")])
        with pytest.raises(LeaseLostError):
            p1.tick()
        assert not p1.notifier()
    finally:
        p1.close()
        p2.close()


def _outbox_rows(engine: sa.Engine) -> list[sa.Row]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(outbox)))


def test_live_leases_by_prefix(database_url: str) -> None:
    engine = open_database(database_url)
    clock = Clock()
    a = LeaseManager(engine, "a", 5, clock)
    b = LeaseManager(engine, "b", 5, clock)
    assert a.acquire("bus:g:0") is not None
    assert b.acquire("bus:g:12") is not None
    assert b.acquire("bus:g_x:1") is not None  # `_` is literal, not a LIKE wildcard
    assert a.acquire("bus:g:member:a") is not None
    assert a.acquire("rules:3") is not None
    live = a.live("bus:g:")
    assert {n: lease.holder for n, lease in live.items()} == {
        "bus:g:0": "a",
        "bus:g:12": "b",
        "bus:g:member:a": "a",
    }
    assert live["bus:g:12"] == b.holder_of("bus:g:12")
    lb = live["bus:g:12"]
    b.release(lb)
    assert "bus:g:12" not in a.live("bus:g:")
    clock.t += 6  # every other lease expired
    assert a.live("bus:") == {} and a.live("") == {}
    engine.dispose()
