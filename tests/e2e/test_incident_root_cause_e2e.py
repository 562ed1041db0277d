"""An incident's root cause in one real server: a rule fires, the incident opens with its likely
causes attached, and the root-cause API answers for the incident by its id.

The data: four hours of one-minute samples; the database's connection pool
saturates twelve minutes before now, its query latency follows a minute later
and the checkout service's latency two minutes after that. Only checkout is
alerted on; the declared dependency (checkout calls postgres) brings the
database's series into scope.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from tests.alerting.notify_helpers import wait_for
from tests.conftest import start_alerting_server

RULES = """
groups:
  - name: checkout
    interval: 1s
    rules:
      - alert: CheckoutSlow
        expr: request_latency_seconds{service="checkout"} > 0.4
        labels: {severity: page}
"""

AM_YML = """\
route:
  receiver: nobody
receivers:
  - name: nobody
perfintel:
  incidents: {dependencies: {checkout: [postgres]}}
"""


def _series(name: str, labels: dict[str, str], ts: np.ndarray, values: np.ndarray) -> dict:
    return {
        "metric": name,
        "labels": labels,
        "samples": [[int(t), float(v)] for t, v in zip(ts, values, strict=True)],
    }


def test_an_incident_opens_with_its_causes_and_the_api_analyses_it_by_id(tmp_path: Path) -> None:
    server = start_alerting_server(tmp_path, RULES, AM_YML)
    try:
        now_ms = int(time.time() * 1000) // 60_000 * 60_000
        ts = np.arange(now_ms - 4 * 3_600_000, now_ms + 1, 60_000)
        n = ts.size
        rng = np.random.default_rng(13)
        pool = 10 + rng.normal(0, 0.5, n)
        pool[n - 13 :] = 50  # the pool saturates 12 minutes before now
        db_latency = 0.02 + rng.normal(0, 0.0005, n)
        db_latency[n - 12 :] += 0.2
        checkout = 0.12 + rng.normal(0, 0.003, n)
        checkout[n - 10 :] += 0.5
        api_cpu = 0.4 + rng.normal(0, 0.02, n)
        batch = 100 + rng.normal(0, 1, n)
        batch[n - 20 :] += 40  # an unrelated service: out of the incident's scope
        body = {
            "series": [
                _series(
                    "db_connections_in_use", {"service": "postgres", "instance": "db-1"}, ts, pool
                ),
                _series(
                    "db_query_latency_seconds",
                    {"service": "postgres", "instance": "db-1"},
                    ts,
                    db_latency,
                ),
                _series(
                    "request_latency_seconds",
                    {"service": "checkout", "instance": "api-1"},
                    ts,
                    checkout,
                ),
                _series(
                    "cpu_usage_ratio", {"service": "checkout", "instance": "api-1"}, ts, api_cpu
                ),
                _series("batch_rows", {"service": "batch", "instance": "b-1"}, ts, batch),
            ]
        }
        r = httpx.post(server.url + "/api/v1/ingest", json=body, timeout=30)
        assert r.status_code in (200, 204), r.text

        def opened() -> dict | None:
            items = httpx.get(server.url + "/api/v1/incidents", timeout=5).json()["data"]
            return items[0] if items else None

        wait_for(lambda: opened() is not None, 60, "an incident opened")
        inc_id = opened()["id"]  # type: ignore[index]
        inc = httpx.get(f"{server.url}/api/v1/incidents/{inc_id}", timeout=5).json()["data"]
        # attached when it opened: the pool first, what moved with it, said in the timeline
        causes = inc["causes"]
        assert causes, inc
        assert causes[0]["labels"]["__name__"] == "db_connections_in_use"
        assert causes[0]["labels"]["service"] == "postgres"
        assert any("request_latency_seconds" in s for s in causes[0]["moved_with"]), causes[0]
        assert all(c["labels"]["service"] != "batch" for c in causes)
        assert any(
            e["kind"] == "root-cause" and "db_connections_in_use" in e["text"]
            for e in inc["timeline"]
        ), inc["timeline"]

        # the API by incident id: time from its first alert, scope from its alerts' labels
        url = server.url + "/api/v1/performance/analyze/root-cause"
        r = httpx.post(url, json={"incident": inc_id, "limit": 5}, timeout=30)
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        assert data["incident"] == inc_id
        assert "postgres" in data["selector"] and "checkout" in data["selector"]
        top = data["causes"][0]
        assert top["labels"]["__name__"] == "db_connections_in_use"
        assert abs(top["onset_unix"] * 1000 - (now_ms - 12 * 60_000)) <= 60_000
        names = [c["labels"]["__name__"] for c in data["causes"]]
        assert names.index("db_query_latency_seconds") < names.index("request_latency_seconds")

        # the CLI by incident id
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "perfintel",
                "analyze",
                "root-cause",
                "--incident",
                inc_id,
                "--url",
                server.url,
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        cli = json.loads(out)
        assert cli["incident"] == inc_id
        assert cli["causes"][0]["labels"]["__name__"] == "db_connections_in_use"

        assert httpx.post(url, json={"incident": "nope"}, timeout=5).status_code == 404
        assert httpx.post(url, json={"limit": 5}, timeout=5).status_code == 400
    finally:
        server.stop()
