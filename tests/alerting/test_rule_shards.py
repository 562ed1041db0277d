"""Rule shards by lease: two rule services on one database and one store (two processes'
worth: their own engines and holder ids) evaluate every group exactly once, and a dead
holder's groups are taken over after the TTL with their ``for`` timers kept.

The services are driven step by step at a simulated clock (leases, ticks), so nothing
depends on this machine's speed; the database is real (SQLite file and PostgreSQL).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from perfintel.alerting.model import CollectingSink
from perfintel.alerting.rules.service import RuleService
from perfintel.alerting.rules.shards import RuleShards, rule_shard
from perfintel.alerting.state.database import open_database
from perfintel.alerting.state.inbox import AlertInbox
from perfintel.alerting.state.leases import LeaseManager
from perfintel.alerting.state.rule_store import SqlRuleState
from perfintel.batch import SampleBatch
from perfintel.config_sections import AlertingSettings
from perfintel.errors import LeaseLostError
from perfintel.storage.base import AppendResult
from perfintel.storage.memory import MemoryStore
from tests.alerting.notify_helpers import Clock

GROUPS = 8
SHARDS = 4
TTL = 10.0
T0 = 1_700_000_000.0


class CountingStore(MemoryStore):
    """The shared store, remembering how often each (series, time) was written."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: Counter[tuple[str, int]] = Counter()

    def append(self, batch: SampleBatch) -> AppendResult:
        for labels, ts, _ in batch.iter_series():
            name = dict(labels)["__name__"]
            if name.startswith("g"):
                for t in ts.tolist():
                    self.writes[(name, int(t))] += 1
        return super().append(batch)


def rules_file(tmp_path: Path) -> Path:
    text = ["groups:"]
    for i in range(GROUPS):
        text += [
            f"  - name: g{i}",
            "    interval: 10s",
            "    rules:",
            f"      - record: g{i}:one",
            "        expr: vector(1)",
            f"      - alert: Slow{i}",
            "        expr: vector(1) > 0",
            "        for: 30s",
        ]
    path = tmp_path / "rules.yml"
    path.write_text("\n".join(text) + "\n")
    return path


class Proc:
    """One process's rule service (its own engine, holder id, sink)."""

    def __init__(
        self, url: str, holder: str, clock: Clock, store: MemoryStore, rules: Path
    ) -> None:
        self.engine = open_database(url)
        self.leases = LeaseManager(self.engine, holder, TTL, clock=clock)
        self.shards = RuleShards(self.leases, SHARDS, clock=clock)
        self.sink = CollectingSink()
        self.service = RuleService(
            AlertingSettings(rule_files=[str(rules)], rule_shards=SHARDS),
            store,
            sink=self.sink,
            state=SqlRuleState(self.engine, lease_of=self.shards.lease_of),
            shards=self.shards,
            clock=clock,
        )
        self.service.load()

    def balance(self) -> None:
        self.shards.balance(self.service._busy)

    def evaluate_all(self, t: float) -> None:
        for g in list(self.service.groups.values()):
            self.service._evaluate(g, t)

    def close(self) -> None:
        self.service._pool.shutdown()
        self.engine.dispose()


def test_two_processes_evaluate_each_group_once_and_take_over_with_for_state(
    database_url: str, tmp_path: Path
) -> None:
    clock = Clock()
    clock.t = T0
    store = CountingStore()
    rules = rules_file(tmp_path)
    a = Proc(database_url, "a", clock, store, rules)
    b = Proc(database_url, "b", clock, store, rules)
    try:
        a.balance()  # alone: a takes every shard
        assert set(a.shards.owned) == set(range(SHARDS))
        b.balance()  # joins: its share is half, all held yet
        assert b.shards.owned == {}
        a.balance()  # a hands its surplus back ...
        b.balance()  # ... and b takes it
        assert len(a.shards.owned) == len(b.shards.owned) == SHARDS // 2
        assert set(a.shards.owned).isdisjoint(b.shards.owned)
        keys = list(a.service.groups)
        # the groups really are spread (both hold groups), by a hash of (file, name)
        owners = {rule_shard(k, SHARDS) in a.shards.owned for k in keys}
        assert owners == {True, False}

        ticks = [T0 + 10 * k for k in range(3)]  # the alerts turn pending at T0
        for t in ticks:
            clock.t = t
            a.balance()  # renewed (every third of the TTL in the service)
            b.balance()
            a.evaluate_all(t)
            b.evaluate_all(t)
        for i in range(GROUPS):  # every recorded sample written once, by one process
            for t in ticks:
                assert store.writes[(f"g{i}:one", int(t * 1000))] == 1, (i, t)
        assert not a.sink.received and not b.sink.received  # still pending (for: 30s)

        # a dies (no more renewals); its leases run out and b takes its groups over
        a_groups = [k for k in keys if rule_shard(k, SHARDS) in a.shards.owned]
        t_dead = ticks[-1]
        clock.t = t_dead + TTL + 1
        assert a.shards.gate(a_groups[0]) is None  # a, if it woke up, would write nothing
        before = sum(store.writes.values())
        a.evaluate_all(clock.t)
        assert sum(store.writes.values()) == before
        b.balance()
        assert set(b.shards.owned) == set(range(SHARDS))
        for t in (T0 + 30, T0 + 40):
            clock.t = t + TTL + 1  # later than the ticks, the clock only moves forward
            b.balance()
            b.evaluate_all(t)
        fired = {dict(x.labels)["alertname"]: x for x in b.sink.received}
        # every alert fired at T0 + 30 (for: 30s from T0): the pending timers of a's groups
        # survived the takeover; restarted timers would fire at T0 + 50 at the earliest
        assert set(fired) == {f"Slow{i}" for i in range(GROUPS)}
        assert {x.starts_at for x in fired.values()} == {T0 + 30}  # fired at (Prometheus's)
        active_at = {
            al.active_at for st in b.service.snapshot() for r in st.rules for al in r.alerts
        }
        assert active_at == {T0}  # pending since T0, in a's groups too
        # a's stale lease cannot write alert states any more
        stale = a.shards.lease_of(a_groups[0])
        assert stale is not None
        with pytest.raises(LeaseLostError):
            a.service.state.save(a_groups[0], {})  # type: ignore[union-attr]
        # a's groups, evaluated by b now, show b's states in a's status too (it reloads them)
        a.shards.owned.clear()  # a is alive again but holds nothing
        a.evaluate_all(clock.t)
        a_states = {al.state for st in a.service.snapshot() for r in st.rules for al in r.alerts}
        assert a_states == {"firing"}
    finally:
        a.close()
        b.close()


def test_inbox_hands_alerts_to_the_notifier_fenced(database_url: str) -> None:
    from perfintel.alerting.model import Alert

    engine = open_database(database_url)
    clock = Clock()
    inbox = AlertInbox(engine, clock=clock, max_age_s=60)
    notifier = LeaseManager(engine, "n", TTL, clock=clock)
    lease = notifier.acquire("notifier")
    assert lease is not None
    sent = [
        Alert.of({"alertname": "X", "i": str(i)}, starts_at=T0, explanation={"v": i})
        for i in range(3)
    ]
    inbox.put(sent[:2])
    inbox.put(sent[2:])
    assert inbox.take(lease) == sent
    assert inbox.take(lease) == []
    inbox.put(sent[:1])
    clock.t += 61
    inbox.put(sent[1:2])  # the older row is dropped: bounded by age
    clock.t += TTL + 1
    other = LeaseManager(engine, "m", TTL, clock=clock).acquire("notifier")
    assert other is not None
    with pytest.raises(LeaseLostError):
        inbox.take(lease)  # the old notifier takes nothing
    assert inbox.take(other) == sent[1:2]
    engine.dispose()


def test_a_group_stored_through_one_process_is_loaded_by_the_other(
    database_url: str, tmp_path: Path
) -> None:
    clock = Clock()
    store = CountingStore()
    rules = rules_file(tmp_path)
    a = Proc(database_url, "a", clock, store, rules)
    b = Proc(database_url, "b", clock, store, rules)
    try:
        source = "name: extra\nrules:\n  - record: extra:one\n    expr: vector(1)\n"
        a.service.put_api_group("team", source)
        assert "team;extra" in a.service.groups and "team;extra" not in b.service.groups
        b.service._follow_api_groups()  # what its shard balancer does every third of the TTL
        assert "team;extra" in b.service.groups
        a.service.delete_api_group("team", "extra")
        b.service._follow_api_groups()
        assert "team;extra" not in b.service.groups
    finally:
        a.close()
        b.close()


def test_a_process_that_does_not_notify_shows_the_notifiers_summary(database_url: str) -> None:
    from perfintel.alerting.amconfig import parse_config
    from perfintel.alerting.channels.memory import RecordingChannel
    from perfintel.alerting.pipeline import Pipeline
    from tests.alerting.notify_helpers import alert

    config = "route:\n  receiver: ops\n  group_wait: 30s\nreceivers:\n  - name: ops\n"
    clock = Clock()
    engines = [open_database(database_url), open_database(database_url)]
    p1, p2 = (
        Pipeline(
            engine,
            parse_config(config),
            clock=clock,
            channels={"webhook": RecordingChannel()},
            background=False,
            leases=LeaseManager(engine, name, TTL, clock),
        )
        for engine, name in zip(engines, ("p1", "p2"), strict=True)
    )
    seen: list[object] = []
    p2.listeners.append(seen.append)
    try:
        p1.start()
        p2.start()
        assert p1.notifier() and not p2.notifier()
        # an alert evaluated in p2's rule groups: it reaches p1 through the inbox
        p2.send([alert(clock.t, alertname="Down", severity="critical")])
        assert not p2.follow_summary()  # nothing stored yet
        clock.t += 1
        p1.tick()
        assert p1.summary.alerts["critical"] == 1
        assert p2.follow_summary() and p2.summary == p1.summary and len(seen) == 1
        assert not p2.follow_summary()  # unchanged: no listener call
        assert len(seen) == 1
    finally:
        p1.close()
        p2.close()
        for e in engines:
            e.dispose()


def test_a_surplus_shard_is_handed_back_only_once_its_evaluations_end(database_url: str) -> None:
    clock = Clock()
    engine = open_database(database_url)
    a = RuleShards(LeaseManager(engine, "a", TTL, clock=clock), SHARDS, clock=clock)
    b = RuleShards(LeaseManager(engine, "b", TTL, clock=clock), SHARDS, clock=clock)
    try:
        a.balance()
        b.balance()  # joins: a now has a surplus
        key = next(k for k in (f"f;g{i}" for i in range(100)) if a.shard_of(k) == SHARDS - 1)
        assert a.gate(key) is not None
        a.balance(busy=lambda shard: shard == SHARDS - 1)  # an evaluation of it in flight
        assert SHARDS - 1 in a.owned and SHARDS - 1 in a.releasing
        assert a.gate(key) is None  # no new evaluation starts on it
        b.balance()
        assert SHARDS - 1 not in b.owned  # still a's
        a.balance()  # the evaluation ended: handed back at once
        assert SHARDS - 1 not in a.owned
        b.balance()
        assert SHARDS - 1 in b.owned
        assert set(a.owned) | set(b.owned) == set(range(SHARDS))
        assert not set(a.owned) & set(b.owned)
        a.release_all()
        b.balance()  # a left: b takes everything without waiting for the TTL
        assert set(b.owned) == set(range(SHARDS))
    finally:
        engine.dispose()
