"""dashboard/realtime, health/comprehensive, the WebSocket stream, status/config and /docs,
through the whole app over a real DuckDB file."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse

from perfintel.api.app import create_app
from perfintel.config import load_settings
from perfintel.redact import MASK as REDACTED
from perfintel.redact import redact
from perfintel.web import PUBLIC_PATHS
from tests.conftest import ANY_PAST_S

TOKEN = "dashboard-read-token-0123"


def _ingest(c: TestClient, metric: str, labels: dict[str, str], samples: list[list[float]]) -> None:
    r = c.post(
        "/api/v1/ingest",
        json={"series": [{"metric": metric, "labels": labels, "samples": samples}]},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert r.status_code == 200, r.text


@pytest.fixture
def authed(tmp_path: Path) -> Iterator[TestClient]:
    settings = load_settings(
        overrides={
            "data_dir": tmp_path / "data",
            "auth": {"tokens": [{"token": TOKEN, "scopes": ["read", "write"]}]},
            "dashboard": {"refresh_interval": 0.2, "tick": 0.1},
            "storage": {"raw_retention": ANY_PAST_S},  # fixed timestamps of 1970
        },
        env={},
    )
    with TestClient(create_app(settings, collectors=False)) as c:
        yield c


def test_realtime_and_health_answer_from_memory_with_service_filter(
    authed: TestClient,
) -> None:
    now = int(time.time() * 1000)
    for svc, up in (("shop", 1.0), ("db", 0.0)):
        _ingest(authed, "up", {"service": svc, "instance": f"{svc}-1:80"}, [[now - 1000, up]])
    h = {"Authorization": f"Bearer {TOKEN}"}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        doc = authed.get("/api/v1/performance/dashboard/realtime", headers=h).json()
        services = {s["name"]: s for s in doc["data"]["health"]["services"]}
        # both services, read after db's sample: a refresh that read the signals before that
        # sample landed and the anomaly scores after it lists db without its availability
        # (CI, under load); the next refresh has both
        if len(services) == 2 and services["db"]["reasons"]:
            break
        time.sleep(0.1)
    assert services["db"]["score"] == 50.0  # all targets down: 50 × 1
    assert services["db"]["reasons"][0]["signal"] == "availability"
    assert services["shop"]["score"] == 100.0
    assert doc["data"]["ingest"]["samples_total"] >= 2
    one = authed.get("/api/v1/performance/dashboard/realtime?service=db", headers=h).json()
    assert [s["name"] for s in one["data"]["health"]["services"]] == ["db"]
    assert one["data"]["health"]["overall"]["score"] == 50.0
    health = authed.get("/api/v1/performance/health/comprehensive", headers=h).json()["data"]
    assert health["overall"]["score"] == pytest.approx(round(0.5 * 75 + 0.5 * 50, 1))
    assert {"figures", "evaluation", "last_errors", "reasons"} <= set(health["perfintel"])
    bad = authed.get("/api/v1/performance/dashboard/realtime?selector=up{", headers=h)
    assert bad.status_code == 400 and "selector" in bad.json()["error"]
    assert authed.get("/api/v1/performance/dashboard/realtime").status_code == 401


def test_stream_needs_the_token_then_pushes_ingested_samples(authed: TestClient) -> None:
    for url in ("/api/v1/performance/stream", "/api/v1/performance/stream?token=wrong-0123456789"):
        with pytest.raises(WebSocketDenialResponse) as denied, authed.websocket_connect(url):
            pass
        assert denied.value.status_code == 401
    with authed.websocket_connect(f"/api/v1/performance/stream?token={TOKEN}") as ws:
        assert orjson.loads(ws.receive_text()) == {"type": "ready"}
        ws.send_text('{"subscribe": {"topics": ["samples"], "selectors": []}}')
        assert "needs at least one selector" in orjson.loads(ws.receive_text())["error"]
        ws.send_text('{"subscribe": {"topics": ["nope"], "selectors": ["x"]}}')
        assert "unknown topics" in orjson.loads(ws.receive_text())["error"]
        ws.send_text('{"subscribe": {"topics": ["samples"], "selectors": ["live_probe"]}}')
        assert orjson.loads(ws.receive_text())["type"] == "subscribed"
        _ingest(authed, "other_metric", {}, [[1000, 1.0]])
        _ingest(authed, "live_probe", {"k": "v"}, [[2000, 7.0]])
        msg = orjson.loads(ws.receive_text())
        assert msg == {
            "type": "samples",
            "series": [
                {
                    "labels": {"__name__": "live_probe", "k": "v"},
                    "timestamps": [2000],
                    "values": [7.0],
                }
            ],
        }
        ws.send_text('{"ping": 1}')
        assert orjson.loads(ws.receive_text()) == {"type": "pong"}
    header = {"Authorization": f"Bearer {TOKEN}"}
    with authed.websocket_connect("/api/v1/performance/stream", headers=header) as ws:
        assert orjson.loads(ws.receive_text()) == {"type": "ready"}


def test_config_is_redacted_and_admin_only(tmp_path: Path) -> None:
    admin = "dashboard-admin-token-0123"
    settings = load_settings(
        overrides={
            "data_dir": tmp_path / "data",
            "auth": {
                "tokens": [
                    {"token": admin, "scopes": ["admin"]},
                    {"token": TOKEN, "scopes": ["read"]},
                ]
            },
            # shown, never opened: alerting is off in this test
            "alerting": {
                "enabled": False,
                "database_url": "postgresql+psycopg://app:s3cret@db:5432/alerts",
            },
        },
        env={},
    )
    with TestClient(create_app(settings, collectors=False)) as c:
        assert (
            c.get("/api/v1/status/config", headers={"Authorization": f"Bearer {TOKEN}"}).status_code
            == 403
        )
        r = c.get("/api/v1/status/config", headers={"Authorization": f"Bearer {admin}"})
        assert r.status_code == 200
        text = r.text
        assert admin not in text and TOKEN not in text and "s3cret" not in text
        data = r.json()["data"]
        assert data["auth"]["tokens"] == REDACTED
        assert (
            data["alerting"]["database_url"]
            == f"postgresql+psycopg://app:{REDACTED}@db:5432/alerts"
        )
        assert data["storage"]["block"] == 7200.0
        d = c.get("/api/v1/status/diagnostics", headers={"Authorization": f"Bearer {TOKEN}"}).json()
        names = {t["name"] for t in d["data"]["threads"]}
        assert "perfintel-anomaly" in names
        assert "detector_queue" in d["data"]["queues"]


def test_redact_handles_nested_names_and_urls() -> None:
    doc = {
        "smtp": {"password": "pw", "host": "mail"},
        "receivers": [{"webhook_url": "https://u:p@hooks.example/x", "api_key": "k"}],
        "empty_token": "",
    }
    assert redact(doc) == {
        "smtp": {"password": REDACTED, "host": "mail"},
        "receivers": [
            {"webhook_url": REDACTED, "api_key": REDACTED}  # a webhook URL is its own secret
        ],
        "empty_token": "",
    }


def test_pages_and_assets_are_public_docs_need_the_token_and_work_offline(
    authed: TestClient,
) -> None:
    for path in ("/", "/explore", "/series", "/capacity"):
        assert path in PUBLIC_PATHS
        assert authed.get(path).status_code == 200, path
    for path in ("/docs", "/openapi.json"):  # they describe the whole API: behind the token
        assert authed.get(path).status_code == 401, path
    docs = authed.get("/docs", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in docs
    assert "cdn" not in docs.lower()
    assert authed.get("/static/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200
    assert authed.get("/static/vendor/uplot/uPlot.iife.min.js").status_code == 200
    assert authed.get("/api/v1/query?query=1").status_code == 401


def test_every_route_in_the_openapi_document_is_described(authed: TestClient) -> None:
    spec = authed.get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    missing = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            # FastAPI's fallback summary is the handler's name in title case: not a description
            fallback = op["operationId"].split("_api_")[0].replace("_", " ").title()
            if not op.get("description") and op.get("summary", fallback) == fallback:
                missing.append(f"{method.upper()} {path}")
    assert missing == []


def test_active_alerts_reach_realtime_health_and_the_alerts_topic(authed: TestClient) -> None:
    h = {"Authorization": f"Bearer {TOKEN}"}
    now = int(time.time() * 1000)
    _ingest(authed, "up", {"service": "shop", "instance": "shop-1:80"}, [[now - 1000, 1.0]])
    with authed.websocket_connect(f"/api/v1/performance/stream?token={TOKEN}") as ws:
        assert orjson.loads(ws.receive_text()) == {"type": "ready"}
        ws.send_text('{"subscribe": {"topics": ["alerts"], "selectors": []}}')
        assert orjson.loads(ws.receive_text())["type"] == "subscribed"
        alert = {
            "labels": {"alertname": "ShopDown", "service": "shop", "severity": "critical"},
            "annotations": {"summary": "the shop answers 5xx"},
        }
        assert authed.post("/api/v2/alerts", json=[alert], headers=h).status_code == 200
        msg = orjson.loads(ws.receive_text())
        while msg["data"]["incidents"]["open"] == 0:  # the alert first, its incident next
            msg = orjson.loads(ws.receive_text())
        data = msg["data"]
        assert msg["type"] == "alerts" and data["firing"] == 1
        assert data["by_severity"]["critical"] == 1
        assert data["top_alerts"][0]["labels"]["alertname"] == "ShopDown"
        incident = data["top_incidents"][0]
        assert incident["state"] == "open" and incident["severity"] == "critical"
        r = authed.post(f"/api/v1/incidents/{incident['id']}/acknowledge", headers=h)
        assert r.status_code == 200, r.text
        msg = orjson.loads(ws.receive_text())
        assert msg["data"]["incidents"] == {"open": 0, "acknowledged": 1}
        assert msg["data"]["version"] > data["version"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        doc = authed.get("/api/v1/performance/dashboard/realtime", headers=h).json()["data"]
        shop = {s["name"]: s for s in doc["health"]["services"]}.get("shop")
        # the snapshot is refreshed apart from the acknowledgement: wait for a refresh after it
        # (CI under load read one taken before it: acknowledged 0)
        alerts = doc["alerts"]
        acked = bool(alerts and alerts["firing"] and alerts["incidents"]["acknowledged"])
        if acked and shop and shop["score"] < 100:
            break
        time.sleep(0.1)
    assert doc["alerts"]["top_alerts"][0]["summary"] == "the shop answers 5xx"
    assert doc["alerts"]["incidents"]["acknowledged"] == 1
    assert shop is not None and shop["score"] == 75.0  # one critical alert: 25
    assert shop["reasons"][0]["signal"] == "alerts"
    other = authed.get("/api/v1/performance/dashboard/realtime?service=db", headers=h).json()
    assert other["data"]["alerts"]["firing"] == 0 and other["data"]["alerts"]["top_alerts"] == []
    health = authed.get("/api/v1/performance/health/comprehensive", headers=h).json()["data"]
    assert {s["name"]: s["score"] for s in health["services"]}["shop"] == 75.0
