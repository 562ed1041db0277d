"""Alert states and API rule groups in the alerting database (SQLite and PostgreSQL)."""

from __future__ import annotations

import numpy as np

from perfintel.alerting.model import CollectingSink
from perfintel.alerting.rules.files import parse_rules
from perfintel.alerting.rules.group import EvalOptions, GroupRuntime
from perfintel.alerting.rules.lifecycle import ActiveAlert
from perfintel.alerting.state.database import open_database
from perfintel.alerting.state.rule_store import SqlRuleState
from perfintel.batch import SampleBatch
from perfintel.model import label_set
from perfintel.storage.memory import MemoryStore

T0 = 1_700_000_000.0


def test_round_trip_of_every_field(database_url: str) -> None:
    engine = open_database(database_url)
    try:
        st = SqlRuleState(engine)
        a = ActiveAlert(
            labels=(("alertname", "A"), ("instance", "ä/1")),
            annotations={"summary": "ünïcode {{ }}"},
            state="firing",
            active_at=T0,
            value=float("nan"),
            fired_at=T0 + 60,
            resolved_at=None,
            last_sent_at=T0 + 120,
            keep_firing_since=T0 + 90,
            explanation={"confidence": 0.9, "crossing": {"expected": T0 + 3600, "earliest": None}},
            changes=[T0 + 60, T0 + 600.5],
            flapping_since=T0 + 700,
            flap_started_at=T0 + 60,
        )
        b = ActiveAlert(
            labels=(("alertname", "A"), ("instance", "2")),
            annotations={},
            state="pending",
            active_at=T0,
        )
        st.save("f.yml;g", {"A": ([a, b], [])})
        st.save("other;g", {"A": ([b], [])})
        got = {x.labels: x for x in st.load("f.yml;g")["A"]}
        assert set(got) == {a.labels, b.labels}
        x = got[a.labels]
        for field in (
            "labels",
            "state",
            "active_at",
            "fired_at",
            "resolved_at",
            "last_sent_at",
            "keep_firing_since",
            "changes",
            "flapping_since",
            "flap_started_at",
        ):
            assert getattr(x, field) == getattr(a, field), field
        assert dict(x.annotations) == dict(a.annotations)
        assert x.explanation == a.explanation and np.isnan(x.value) and not x.dirty
        # an update replaces the row; a deletion removes it; other groups are untouched
        a.state = "inactive"
        st.save("f.yml;g", {"A": ([a], [b.labels])})
        got2 = st.load("f.yml;g")["A"]
        assert [(y.labels, y.state) for y in got2] == [(a.labels, "inactive")]
        st.drop_group("f.yml;g")
        assert st.load("f.yml;g") == {} and len(st.load("other;g")["A"]) == 1
    finally:
        engine.dispose()


def test_api_groups(database_url: str) -> None:
    engine = open_database(database_url)
    try:
        st = SqlRuleState(engine)
        st.put_api_group("team-a", "g1", "name: g1\nrules: []\n")
        st.put_api_group("team-a", "g1", "name: g1\nrules: [{alert: A, expr: up}]\n")
        st.put_api_group("team-b", "g2", "name: g2\nrules: []\n")
        assert [r[:2] for r in st.api_groups()] == [("team-a", "g1"), ("team-b", "g2")]
        assert "alert: A" in st.api_groups("team-a")[0][2]
        assert st.delete_api_group("team-a", "nope") == 0
        assert st.delete_api_group("team-b") == 1
        assert [r[:2] for r in st.api_groups()] == [("team-a", "g1")]
    finally:
        engine.dispose()


def test_a_restarted_engine_keeps_firing_alerts_firing(database_url: str) -> None:
    store = MemoryStore()
    ts = ((T0 + 60 * np.arange(30)) * 1000).astype(np.int64)
    store.append(SampleBatch.from_arrays(label_set({"__name__": "x"}), ts, np.ones(30)))
    spec = parse_rules(
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: x > 0\n        for: 5m\n",
        "f.yml",
    )[0]
    engine = open_database(database_url)
    try:
        first = GroupRuntime(spec, EvalOptions(), state=SqlRuleState(engine))
        for k in range(8):
            first.evaluate(T0 + 60 * k, store, None)
        assert first.rules[0].state == "firing"
    finally:
        engine.dispose()
    engine = open_database(database_url)  # "a new process"
    try:
        second = GroupRuntime(spec, EvalOptions(), state=SqlRuleState(engine))
        assert second.restore() == 1
        assert second.rules[0].state == "firing"
        sink = CollectingSink()
        second.evaluate(T0 + 60 * 8, store, sink)
        assert second.rules[0].state == "firing"  # not pending again for 5 minutes
        assert [a.starts_at for a in sink.received] == [T0 + 300]
    finally:
        engine.dispose()
