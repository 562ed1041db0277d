"""Optimisation recommendations on the demo data set, over the real API and a real DuckDB file.

The demo plants an over-provisioned host (reports), under-provisioned hosts
(ingest), an ongoing memory leak (notifier) and a filling database disk;
every other service is sized for its peaks. Every planted case must be found
with the right kind, no right-sized service may get a resize, and every cost
figure must follow from the cost model and the resource sizes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from perfintel.api.app import create_app
from perfintel.config import load_settings
from perfintel.demo import DEMO_SERVICES, demo_events, generate_demo

HOUR = 3_600_000
END = (int(time.time() * 1000) // HOUR) * HOUR
DAYS = 7
STEP_S = 600
PATH = "/api/v1/performance/optimize/recommendations"
GIB = 1024**3
RESIZES = ("overprovisioned", "underprovisioned")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data = Path(tmp_path_factory.mktemp("recommend")) / "data"
    settings = load_settings(overrides={"data_dir": data, "anomaly": {"enabled": False}}, env={})
    with TestClient(create_app(settings, collectors=False)) as client:
        store = client.app.state.store  # type: ignore[attr-defined]
        for batch in generate_demo(end_ms=END, days=DAYS, step_s=STEP_S):
            store.append(batch)
        store.flush(compact=True)
        yield client


def _post(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post(PATH, json=body)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


def _found(recs: list[dict[str, Any]], kind: str, **entity: str) -> list[dict[str, Any]]:
    return [
        r
        for r in recs
        if r["kind"] == kind and all(r["resource"]["entity"].get(k) == v for k, v in entity.items())
    ]


def test_every_planted_case_is_found_with_the_right_kind(demo: TestClient) -> None:
    data = _post(demo, {"window": f"{DAYS}d", "end": END / 1000})
    recs = data["recommendations"]
    assert data["total"] == len(recs) and data["failures"] == [] and data["resources"] > 40
    events = demo_events(end_ms=END, days=DAYS, step_s=STEP_S)
    planted = [e for e in events if e.kind in RESIZES]
    assert {e.service for e in planted} == {"reports", "ingest"}
    for e in planted:
        assert _found(recs, e.kind, instance=e.instance), (e, [r["title"] for r in recs])
    reports = _found(recs, "overprovisioned", instance="reports-0:9100")
    assert {r["resource"]["kind"] for r in reports} == {"cpu", "memory"}
    for r in reports:
        assert r["proposed"] < r["current"] and r["impact"]["monthly_cost"] < 0
    # the leak still growing at the end (auth's was fixed by a deploy)
    ongoing = [e for e in events if e.kind == "memory_leak" and e.end_ms >= END - 2 * HOUR]
    assert [e.service for e in ongoing] == ["notifier"]
    (leak,) = _found(recs, "memory_leak", instance=ongoing[0].instance)
    assert leak["resource"]["level"] == "process" and leak["confidence"] >= 0.7
    assert not _found(recs, "memory_leak", service="auth")
    fill = next(e for e in events if e.kind == "disk_fill")
    disk = _found(recs, "disk_headroom", instance=fill.instance)
    assert [r["resource"]["entity"]["mountpoint"] for r in disk] == ["/var/lib/postgresql"]
    assert not [r for r in recs if r["resource"]["entity"].get("mountpoint") == "/var/log"]
    for r in recs:
        assert 0 < r["confidence"] <= 1 and r["evidence"] and r["resource"]["series"]


def test_no_right_sized_service_gets_a_resize(demo: TestClient) -> None:
    recs = _post(demo, {"window": f"{DAYS}d", "end": END / 1000})["recommendations"]
    healthy = set(DEMO_SERVICES) - {"reports", "ingest", "notifier"}
    assert healthy == {"api-gateway", "checkout", "search", "auth", "payments", "postgres"}
    resized = {r["resource"]["entity"].get("service") for r in recs if r["kind"] in RESIZES}
    assert resized & healthy == set(), [r["title"] for r in recs if r["kind"] in RESIZES]


def _expected_cost(r: dict[str, Any], cost: dict[str, float]) -> float:
    """The monthly figure recomputed from the cost model and the sizes, independently."""
    if r["kind"] == "memory_leak":
        grown = next(e["value"] for e in r["evidence"] if e["name"] == "grown since segment start")
        return -grown / GIB * cost["memory_gib_month"]
    delta = r["proposed"] - r["current"]
    kind = r["resource"]["kind"]
    if kind == "cpu":
        return delta * cost["core_hour"] * cost["hours_per_month"]
    price = cost["memory_gib_month"] if kind == "memory" else cost["disk_gib_month"]
    return delta / GIB * price


@pytest.mark.parametrize(
    "override", [None, {"core_hour": 0.0617, "memory_gib_month": 2.25, "disk_gib_month": 0.08}]
)
def test_cost_figures_reconcile_with_the_cost_model(
    demo: TestClient, override: dict[str, float] | None
) -> None:
    body: dict[str, Any] = {"window": f"{DAYS}d", "end": END / 1000}
    if override:
        body["cost"] = override
    data = _post(demo, body)
    cost = data["cost_model"]
    if override:
        assert {k: cost[k] for k in override} == override
    else:
        assert (cost["core_hour"], cost["memory_gib_month"], cost["disk_gib_month"]) == (
            0.04,
            3.0,
            0.10,
        )
    recs = data["recommendations"]
    assert recs
    for r in recs:
        assert r["impact"]["monthly_cost"] == pytest.approx(_expected_cost(r, cost), rel=1e-12)
        assert r["impact"]["currency"] == cost["currency"]
    assert data["monthly_saving"] == pytest.approx(
        -sum(r["impact"]["monthly_cost"] for r in recs if r["impact"]["monthly_cost"] < 0)
    )
    assert data["monthly_extra_cost"] == pytest.approx(
        sum(r["impact"]["monthly_cost"] for r in recs if r["impact"]["monthly_cost"] > 0)
    )
    # the CPU downsizing of reports: 16 cores to what its projected peak needs at 70 %
    (cpu,) = [
        r
        for r in _found(recs, "overprovisioned", instance="reports-0:9100")
        if r["resource"]["kind"] == "cpu"
    ]
    assert cpu["current"] == 16 and cpu["proposed"] in (1, 2)
    assert cpu["impact"]["monthly_cost"] == pytest.approx(
        (cpu["proposed"] - 16) * cost["core_hour"] * cost["hours_per_month"], rel=1e-12
    )


def test_kinds_filter_and_bad_input(demo: TestClient) -> None:
    data = _post(demo, {"window": f"{DAYS}d", "end": END / 1000, "kinds": ["memory_leak"]})
    assert {r["kind"] for r in data["recommendations"]} == {"memory_leak"}
    for body, field in (
        ({"kinds": ["astrology"]}, "kinds"),
        ({"window": "0d"}, "window"),
        ({"window": "400d"}, "window"),
        ({"cost": {"core_hour": -1}}, "cost.core_hour"),
        ({"colour": "red"}, "colour"),
    ):
        r = demo.post(PATH, json=body)
        assert r.status_code == 400, r.text
        assert f"'{field}'" in r.json()["error"] or f'"{field}"' in r.json()["error"]


def test_a_short_history_or_none_is_said_not_left_empty(demo: TestClient) -> None:
    """The demo holds 7 days: a 14-day window is half covered (no note), a 60-day one under a
    quarter (the note says so), and a window that ended before the data began has nothing."""
    data = _post(demo, {"window": "14d", "end": END / 1000})
    assert data["history_hours"] == DAYS * 24
    assert data["note"] is None
    data = _post(demo, {"window": "60d", "end": END / 1000})
    assert data["history_hours"] == DAYS * 24
    assert data["note"] == (
        "the data reaches back 168 h of the 1440 h window: a resource is sized once its"
        " usage covers 25% of it (360 h)"
    )
    data = _post(demo, {"window": "1d", "end": (END - 10 * 24 * HOUR) / 1000})
    assert data["resources"] == 0 and data["history_hours"] == 0
    assert data["note"].startswith("no usage of the usual exporters' resources")
