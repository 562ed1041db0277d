"""Rule files: Prometheus's format loads unchanged; perfintel's kinds; errors name file, line, reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfintel.alerting.rules.files import (
    RuleFileError,
    load_rule_files,
    parse_group,
    parse_rules,
    resolve_rule_files,
)
from perfintel.config import load_settings

STOCK = """
groups:
  - name: node
    interval: 30s
    limit: 10
    labels: {team: infra}
    rules:
      - record: instance:node_cpu:rate5m
        expr: sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))
      - alert: HostHighCpu
        expr: instance:node_cpu:rate5m > 0.9
        for: 10m
        keep_firing_for: 5m
        labels:
          severity: warning
        annotations:
          summary: "CPU high on {{ $labels.instance }}"
          value: "{{ $value | humanizePercentage }}"
  - name: empty
    rules: []
"""


def test_a_stock_prometheus_file_loads_as_it_is() -> None:
    groups = parse_rules(STOCK, "node.yml")
    assert [g.name for g in groups] == ["node", "empty"]
    g = groups[0]
    assert (g.interval_s, g.limit, dict(g.labels), g.file) == (
        30.0,
        10,
        {"team": "infra"},
        "node.yml",
    )
    rec, alert = g.rules
    assert (rec.kind, rec.name, rec.line) == ("record", "instance:node_cpu:rate5m", 8)
    assert (alert.kind, alert.for_s, alert.keep_firing_for_s) == ("alert", 600.0, 300.0)
    assert alert.annotations["value"] == "{{ $value | humanizePercentage }}"


def test_perfintel_kinds_next_to_alert() -> None:
    text = """
groups:
  - name: predictive
    interval: 5m
    rules:
      - alert: DiskWillFill
        kind: capacity_exhaustion
        expr: disk_used_bytes
        capacity: disk_size_bytes
        within: 12h
        for: 1h
      - alert: Anomalous
        kind: anomaly
        selector: http_latency_seconds{job="api"}
        threshold: 1.2
        resolve_threshold: 0.8
      - alert: Burn
        kind: error_budget_burn
        objective: 99.9
        errors: 'http_requests_total{code=~"5.."}'
        total: http_requests_total
        by: [service]
      - alert: Held
        expr: cpu > 0.9
        keep_firing_while: cpu > 0.8
"""
    rules = parse_rules(text, "p.yml")[0].rules
    assert [r.kind for r in rules] == [
        "capacity_exhaustion",
        "anomaly",
        "error_budget_burn",
        "alert",
    ]
    assert rules[0].params.within == 12 * 3600 and rules[0].params.capacity == "disk_size_bytes"
    assert rules[1].params.resolve_threshold == 0.8
    assert [w.factor for w in rules[2].params.windows] == [14.4, 6, 1]  # the SRE workbook's table
    assert rules[3].keep_firing_while == "cpu > 0.8"


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        (
            "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: rate(x[5m]\n",
            5,
            "could not parse expression",
        ),
        (
            "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        severity: x\n",
            6,
            "field severity not found",
        ),
        (
            "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        for: 5 minutes\n",
            6,
            "not a valid duration",
        ),
        (
            "groups:\n  - name: g\n    rules:\n      - record: a\n        expr: up\n        for: 1m\n",
            6,
            "invalid field 'for' in recording rule",
        ),
        (
            "groups:\n  - name: g\n    rules:\n      - record: 'a b'\n        expr: up\n",
            4,
            "invalid recording rule name",
        ),
        (
            "groups:\n  - name: g\n    rules:\n      - record: a\n        alert: b\n        expr: up\n",
            4,
            "only one of 'record' and 'alert'",
        ),
        (
            "groups:\n  - name: g\n    rules:\n      - expr: up\n",
            4,
            "one of 'record' or 'alert' must be set",
        ),
        ("groups:\n  - name: g\n    rules:\n      - alert: A\n", 4, "field 'expr' must be set"),
        (
            "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        labels:\n          bad-name: x\n",
            7,
            "invalid label name",
        ),
        (
            "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        annotations:\n          s: '{{ if }}'\n",
            7,
            "annotation 's'",
        ),
        (
            "groups:\n  - name: g\n    rules: []\n  - name: g\n    rules: []\n",
            4,
            'groupname: "g" is repeated',
        ),
        ("groups:\n  - rules: []\n", 2, "Groupname must not be empty"),
        (
            "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        expr: up\n",
            6,
            "already defined at line 5",
        ),
        (
            "groups:\n  - name: g\n    rules:\n     - alert: A\n       expr: up\n      - x\n",
            6,
            "invalid YAML",
        ),
        ("groupz: []\n", 1, "field groupz not found"),
        (
            "groups:\n  - name: g\n    rules:\n      - alert: A\n        kind: nope\n",
            5,
            "unknown rule kind 'nope'",
        ),
        (
            "groups:\n  - name: g\n    rules:\n      - alert: A\n        kind: anomaly\n",
            5,
            "selector: required",
        ),
        (
            "groups:\n  - name: g\n    rules:\n      - alert: A\n        kind: anomaly\n        selector: x\n        threshold: -1\n",
            7,
            "threshold",
        ),
        (
            "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        within: 1h\n",
            6,
            "set 'kind'",
        ),
        (
            "groups:\n  - name: g\n    rules:\n      - alert: A\n        kind: trend_degradation\n        expr: x\n        window: 1h\n        baseline: 2h\n",
            5,
            "at least 4 windows",
        ),
        (
            "groups:\n  - name: g\n    rules:\n      - alert: A\n        kind: error_budget_burn\n        objective: 99\n        total: t\n",
            5,
            "exactly one of 'errors' and 'good'",
        ),
    ],
)
def test_errors_name_file_line_and_reason(text: str, line: int, reason: str) -> None:
    with pytest.raises(RuleFileError) as exc:
        parse_rules(text, "rules/bad.yml")
    err = exc.value
    assert (err.file, err.line) == ("rules/bad.yml", line), str(err)
    assert reason in err.reason, str(err)
    assert str(err).startswith(f"rules/bad.yml:{line}: ")


def test_one_group_for_the_api() -> None:
    g = parse_group("name: api\nrules:\n  - alert: A\n    expr: up == 0\n", "team-a")
    assert (g.name, g.file, g.rules[0].name) == ("api", "team-a", "A")
    with pytest.raises(RuleFileError, match="team-a:1: a rule group must be a mapping"):
        parse_group("- just a list\n", "team-a")


def test_globs_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text(STOCK)
    (tmp_path / "b.yml").write_text("groups: []\n")
    assert resolve_rule_files([str(tmp_path / "*.yml")]) == [tmp_path / "a.yml", tmp_path / "b.yml"]
    assert resolve_rule_files([str(tmp_path / "none-*.yml")]) == []
    with pytest.raises(RuleFileError, match="no such rule file"):
        resolve_rule_files([str(tmp_path / "typo.yml")])
    assert len(load_rule_files([str(tmp_path / "*.yml")])) == 2


def test_rule_files_from_the_environment() -> None:
    s = load_settings(env={"PERFINTEL_ALERTING__RULE_FILES": "rules/*.yml, other.yml"})
    assert s.alerting.rule_files == ["rules/*.yml", "other.yml"]
    s = load_settings(env={"PERFINTEL_ALERTING__RULE_FILES": '["x.yml"]'})
    assert s.alerting.rule_files == ["x.yml"]
