"""The rules API: Prometheus's /api/v1/rules and /api/v1/alerts, reloads, rule groups through the API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient

from perfintel.api.app import create_app
from perfintel.batch import SampleBatch
from perfintel.config import load_settings
from perfintel.model import label_set

RULES = """
groups:
  - name: cpu
    interval: 1m
    rules:
      - record: job:cpu:max
        expr: max by (job) (cpu)
      - alert: HighCpu
        expr: cpu > 0.9
        for: 0s
        labels: {severity: page}
        annotations: {summary: "{{ $labels.instance }} at {{ $value }}"}
  - name: predictive
    rules:
      - alert: CpuAnomaly
        kind: anomaly
        selector: cpu
"""
READ = "r" * 16
ADMIN = "a" * 16


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    p = tmp_path / "rules.yml"
    p.write_text(RULES)
    return p


@pytest.fixture
def app_client(tmp_path: Path, rules_file: Path) -> Iterator[TestClient]:
    settings = load_settings(
        overrides={
            "data_dir": tmp_path / "data",
            "alerting": {"rule_files": [str(rules_file)]},
            "auth": {
                "tokens": [
                    {"token": READ, "scopes": ["read"]},
                    {"token": ADMIN, "scopes": ["admin"]},
                ]
            },
        },
        env={},
    )
    with TestClient(create_app(settings, collectors=False)) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN}"
        yield c


def _evaluate(c: TestClient) -> None:
    now = time.time()
    ts = (np.array([now - 30, now - 1]) * 1000).astype(np.int64)
    store = c.app.state.store  # type: ignore[attr-defined]
    for inst, v in (("a", 0.95), ("b", 0.2)):
        store.append(
            SampleBatch.from_arrays(
                label_set({"__name__": "cpu", "instance": inst, "job": "x"}), ts, np.full(2, v)
            )
        )
    svc = c.app.state.rules  # type: ignore[attr-defined]
    for key in list(svc.groups):
        svc.evaluate_group(key, now)


def test_rules_and_alerts_in_prometheus_shapes(app_client: TestClient, rules_file: Path) -> None:
    _evaluate(app_client)
    r = app_client.get("/api/v1/rules")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "success"
    groups = body["data"]["groups"]
    assert [(g["name"], g["file"]) for g in groups] == [
        ("cpu", str(rules_file)),
        ("predictive", str(rules_file)),
    ]
    cpu = groups[0]
    assert set(cpu) >= {
        "name",
        "file",
        "rules",
        "interval",
        "limit",
        "evaluationTime",
        "lastEvaluation",
    }
    rec, alert = cpu["rules"]
    assert rec == {
        **rec,
        "type": "recording",
        "name": "job:cpu:max",
        "query": "max by (job) (cpu)",
        "health": "ok",
    }
    assert alert["type"] == "alerting" and alert["state"] == "firing" and alert["duration"] == 0
    assert alert["labels"] == {"severity": "page"} and alert["keepFiringFor"] == 0
    (a,) = alert["alerts"]
    assert a["labels"] == {"alertname": "HighCpu", "instance": "a", "job": "x", "severity": "page"}
    assert a["annotations"] == {"summary": "a at 0.95"}
    assert a["state"] == "firing" and a["value"] == "9.5e-01" and a["activeAt"].endswith("Z")
    kind_rule = groups[1]["rules"][0]
    assert kind_rule["kind"] == "anomaly" and kind_rule["params"]["selector"] == "cpu"
    alerts = app_client.get("/api/v1/alerts").json()["data"]["alerts"]
    assert [x["labels"]["instance"] for x in alerts] == ["a"]


def test_rule_filters(app_client: TestClient) -> None:
    def names(**params: object) -> list[str]:
        data = app_client.get("/api/v1/rules", params=params).json()["data"]
        return [r["name"] for g in data["groups"] for r in g["rules"]]

    assert names(type="record") == ["job:cpu:max"]
    assert names(type="alert") == ["HighCpu", "CpuAnomaly"]
    assert names(**{"rule_name[]": "CpuAnomaly"}) == ["CpuAnomaly"]
    assert names(**{"rule_group[]": "cpu"}) == ["job:cpu:max", "HighCpu"]
    assert names(**{"file[]": "nope.yml"}) == []
    r = app_client.get("/api/v1/rules", params={"type": "bogus"})
    assert r.status_code == 400 and "bogus" in r.json()["error"]
    data = app_client.get("/api/v1/rules", params={"exclude_alerts": "true"}).json()["data"]
    assert "alerts" not in data["groups"][0]["rules"][1]


def test_a_bad_reload_keeps_the_running_rules(app_client: TestClient, rules_file: Path) -> None:
    rules_file.write_text(RULES.replace("expr: cpu > 0.9", "expr: cpu > "))
    for path in ("/api/v1/admin/rules/reload", "/-/reload"):
        r = app_client.post(path)
        assert r.status_code == 400
        assert (
            f"{rules_file}:9: " in r.json()["error"]
            and "could not parse expression" in r.json()["error"]
        )
    names = [
        r["name"]
        for g in app_client.get("/api/v1/rules").json()["data"]["groups"]
        for r in g["rules"]
    ]
    assert names == ["job:cpu:max", "HighCpu", "CpuAnomaly"]
    metrics = app_client.get("/metrics").text
    assert "perfintel_rule_config_last_reload_successful 0" in metrics
    rules_file.write_text(RULES.replace("HighCpu", "VeryHighCpu"))
    r = app_client.post("/api/v1/admin/rules/reload")
    assert r.status_code == 200 and r.json()["data"] == {"groups": 2, "rules": 3}
    names = [
        r["name"]
        for g in app_client.get("/api/v1/rules").json()["data"]["groups"]
        for r in g["rules"]
    ]
    assert "VeryHighCpu" in names
    assert app_client.post("/-/reload").status_code == 200


def test_rule_groups_through_the_ruler_api(app_client: TestClient) -> None:
    group = "name: api-group\nrules:\n  - alert: ApiDefined\n    expr: cpu > 0.5\n"
    r = app_client.post(
        "/api/v1/rules/team-a", content=group, headers={"Content-Type": "application/yaml"}
    )
    assert r.status_code == 202, r.text
    listed = yaml.safe_load(app_client.get("/config/v1/rules").text)
    assert listed == {"team-a": [yaml.safe_load(group)]}
    one = yaml.safe_load(app_client.get("/api/v1/rules/team-a/api-group").text)
    assert one["rules"][0]["alert"] == "ApiDefined"
    data = app_client.get("/api/v1/rules", params={"file[]": "team-a"}).json()["data"]
    assert [g["name"] for g in data["groups"]] == ["api-group"]
    bad = app_client.post(
        "/config/v1/rules/team-a", content="name: g2\nrules:\n  - alert: X\n    expr: 1 +\n"
    )
    assert bad.status_code == 400 and "team-a:4: " in bad.json()["error"]
    assert app_client.get("/api/v1/rules/team-a/g2").status_code == 404
    assert app_client.delete("/api/v1/rules/team-a/api-group").status_code == 202
    assert (
        app_client.get("/api/v1/rules", params={"file[]": "team-a"}).json()["data"]["groups"] == []
    )
    assert app_client.delete("/api/v1/rules/team-a/api-group").status_code == 404
    assert app_client.post("/api/v1/rules/..x", content=group).status_code == 400


def test_scopes(app_client: TestClient) -> None:
    read = {"Authorization": f"Bearer {READ}"}
    assert app_client.get("/api/v1/rules", headers=read).status_code == 200
    assert app_client.get("/api/v1/alerts", headers={"Authorization": ""}).status_code == 401
    assert app_client.post("/api/v1/admin/rules/reload", headers=read).status_code == 403
    assert (
        app_client.post("/api/v1/rules/x", content="name: g\nrules: []\n", headers=read).status_code
        == 403
    )


def test_self_metrics(app_client: TestClient, rules_file: Path) -> None:
    _evaluate(app_client)
    m = app_client.get("/metrics").text
    key = f"{rules_file};cpu"
    assert f'perfintel_rule_group_rules{{rule_group="{key}"}} 2' in m
    assert f'perfintel_rule_evaluations_total{{rule_group="{key}"}}' in m
    assert "perfintel_rule_evaluation_duration_seconds_bucket" in m
    assert "perfintel_rule_alerts_sent_total" in m
