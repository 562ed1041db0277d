"""Group evaluation over a store: recording rules, alerts, ALERTS series, staleness, limits, errors."""

from __future__ import annotations

import numpy as np

from perfintel.alerting.model import CollectingSink
from perfintel.alerting.rules.files import parse_rules
from perfintel.alerting.rules.group import EvalOptions, GroupRuntime, MemoryAlertState
from perfintel.alerting.rules.reader import RoundReader
from perfintel.batch import SampleBatch
from perfintel.model import is_stale, label_set, parse_selector
from perfintel.storage.memory import MemoryStore

T0 = 1_700_000_000.0


def store_with(series: dict[str, list[float]], step: float = 60.0) -> MemoryStore:
    st = MemoryStore()
    for text, values in series.items():
        name, _, rest = text.partition("{")
        labels = {"__name__": name}
        for part in filter(None, rest.rstrip("}").split(",")):
            k, v = part.split("=")
            labels[k] = v.strip('"')
        ts = (T0 + step * np.arange(len(values))) * 1000
        st.append(SampleBatch.from_arrays(label_set(labels), ts.astype(np.int64), np.array(values)))
    return st


def group(text: str, **opts: object) -> GroupRuntime:
    return GroupRuntime(
        parse_rules(text, "g.yml")[0], EvalOptions(**opts), state=MemoryAlertState()
    )  # type: ignore[arg-type]


RULES = """
groups:
  - name: g
    labels: {team: core}
    rules:
      - record: job:cpu:max
        expr: max by (job) (cpu)
      - alert: HighCpu
        expr: job:cpu:max > 0.9
        for: 2m
        labels: {severity: "{{ if gt $value 0.95 }}page{{ else }}ticket{{ end }}"}
        annotations: {summary: "cpu {{ $value | humanizePercentage }} on {{ $labels.job }}"}
"""


def test_recording_feeds_alerting_and_alerts_series_are_written() -> None:
    cpu = [0.5] * 5 + [0.97] * 10 + [0.5] * 5
    st = store_with({'cpu{job="api",i="1"}': cpu, 'cpu{job="api",i="2"}': [0.1] * 20})
    g = group(RULES, external_url="http://pi")
    sink = CollectingSink()
    for k in range(20):
        g.evaluate(T0 + 60 * k, st, sink)
    rec = st.select(parse_selector('job:cpu:max{job="api",team="core"}'), 0, 2**62)
    assert len(rec) == 1 and rec[0].values.max() == 0.97  # group labels applied
    firing = [a for a in sink.received if not a.resolved(a.starts_at + 1)]
    assert firing, "the alert fired"
    a = firing[0]
    assert dict(a.labels) == {
        "alertname": "HighCpu",
        "job": "api",
        "team": "core",
        "severity": "page",
    }
    assert a.annotations["summary"] == "cpu 97% on api"
    assert a.starts_at == T0 + 60 * 7  # active at minute 5, firing 2 minutes later
    assert a.generator_url.startswith("http://pi/graph?g0.expr=")
    resolved = [x for x in sink.received if x.ends_at == T0 + 60 * 15]
    assert resolved, "a resolution with ends_at = the resolve time"
    alerts = st.select(parse_selector("ALERTS"), 0, 2**62)
    states = {dict(s.labels)["alertstate"] for s in alerts}
    assert states == {"pending", "firing"}
    # when the alert resolved, its ALERTS series got a staleness marker
    assert any(is_stale(s.values).any() for s in alerts)
    fs = st.select(parse_selector("ALERTS_FOR_STATE"), 0, 2**62)
    assert set(fs[0].values[~is_stale(fs[0].values)]) == {T0 + 300}


def test_a_failing_rule_does_not_stop_the_others() -> None:
    st = store_with({'x{a="1"}': [1, 1, 1], 'x{a="2"}': [1, 1, 1]})
    g = group("""
groups:
  - name: g
    rules:
      - alert: Dup
        expr: x
        labels: {a: same}
      - alert: Fine
        expr: x > 0
""")
    g.evaluate(T0 + 60, st, None)
    dup, fine = g.rules
    assert dup.health == "err" and "same labelset" in dup.last_error
    assert fine.health == "ok" and len(fine.active) == 2


def test_limit_drops_all_alerts_of_the_rule() -> None:
    st = store_with({f'x{{a="{i}"}}': [1, 1] for i in range(5)})
    g = group(
        "groups:\n  - name: g\n    limit: 3\n    rules:\n      - alert: A\n        expr: x > 0\n"
    )
    g.evaluate(T0 + 60, st, None)
    assert (
        g.rules[0].health == "err" and "exceeded limit of 3 with 5 alerts" in g.rules[0].last_error
    )
    assert not g.rules[0].active


def test_query_offset_evaluates_in_the_past() -> None:
    st = store_with({"x": [0, 0, 0, 5, 5, 5]})
    g = group(
        "groups:\n  - name: g\n    query_offset: 3m\n    rules:\n      - alert: A\n        expr: x > 1\n"
    )
    g.evaluate(T0 + 300, st, None)
    assert not g.rules[0].active  # at t-3m x was 0
    g.evaluate(T0 + 360, st, None)
    assert g.rules[0].active


def test_template_error_in_an_annotation_is_reported_in_its_text() -> None:
    st = store_with({"x": [1, 1]})
    g = group("""
groups:
  - name: g
    rules:
      - alert: A
        expr: x
        annotations: {s: '{{ humanize "zz" }}'}
""")
    g.evaluate(T0 + 60, st, None)
    (a,) = g.rules[0].active.values()
    assert a.annotations["s"].startswith("<error expanding template: ")


def test_hysteresis_with_keep_firing_while() -> None:
    cpu = [0.95, 0.95, 0.85, 0.85, 0.7, 0.7]
    st = store_with({"cpu": cpu})
    g = group("""
groups:
  - name: g
    rules:
      - alert: A
        expr: cpu > 0.9
        keep_firing_while: cpu > 0.8
""")
    states = []
    for k in range(6):
        g.evaluate(T0 + 60 * k, st, None)
        states.append(g.rules[0].state)
    assert states == ["firing", "firing", "firing", "firing", "inactive", "inactive"]


def test_state_is_saved_when_it_changes_and_restored() -> None:
    st = store_with({"x": [1] * 10})
    state = MemoryAlertState()
    text = (
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: x > 0\n        for: 2m\n"
    )
    g = GroupRuntime(parse_rules(text, "g.yml")[0], EvalOptions(), state=state)
    for k in range(4):
        g.evaluate(T0 + 60 * k, st, None)
    assert g.rules[0].state == "firing"
    again = GroupRuntime(parse_rules(text, "g.yml")[0], EvalOptions(), state=state)
    assert again.restore() == 1
    (a,) = again.rules[0].active.values()
    assert (a.state, a.active_at, a.fired_at) == ("firing", T0, T0 + 120)
    sink = CollectingSink()
    again.evaluate(T0 + 60 * 4, st, sink)
    assert again.rules[0].state == "firing"
    assert [x.starts_at for x in sink.received] == [T0 + 120]  # the same alert, not a new one


class _SeenSelectors(MemoryStore):
    """A real in-memory store that also remembers the selectors it was asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def select(self, selector, start_ms, end_ms, *, limits=None):  # type: ignore[no-untyped-def]
        self.asked.append(str(selector))
        return super().select(selector, start_ms, end_ms, limits=limits)


def test_a_metric_too_big_to_cache_is_read_with_each_rules_selector() -> None:
    st = _SeenSelectors()
    ts = ((T0 + 60 * np.arange(5)) * 1000).astype(np.int64)
    for i in range(50):  # "lat": 50 series; "up": one
        labels = label_set({"__name__": "lat", "svc": f"s{i}"})
        st.append(SampleBatch.from_arrays(labels, ts, np.full(5, float(i))))
    st.append(SampleBatch.from_arrays(label_set({"__name__": "up"}), ts, np.ones(5)))
    g = group(
        'groups: [{name: g, rules: [{alert: Slow, expr: "lat{svc=\\"s7\\"} > 5"},'
        ' {alert: Down, expr: "up < 1"}]}]'
    )
    sink = CollectingSink()
    reader = RoundReader(st, max_samples_per_name=40)  # "lat" holds more in the window
    g.evaluate(T0 + 240, st, sink, reader=reader)
    assert [dict(a.labels)["alertname"] for a in sink.received] == ["Slow"]
    assert '{__name__="lat",svc="s7"}' in st.asked  # read with the rule's own selector
    assert "up" in reader._by_name and "lat" not in reader._by_name  # up cached, lat not
