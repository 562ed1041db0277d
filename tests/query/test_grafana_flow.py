"""Replay what Grafana's Prometheus data source sends when a dashboard loads.

The sequence follows Grafana 10/11: build info (flavour and version detection),
label names for the time range, metric names, label values filtered with
``match[]``, the series of a metric, metadata, then the panels' range queries
as form POSTs, an instant query, and the exemplar and rules probes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from perfintel.api import errors, rules
from perfintel.api.prometheus import router
from perfintel.batch import MetricMetadata, SampleBatch
from perfintel.config import load_settings

NOW = 1_700_000_040  # seconds
START, END = NOW - 3600, NOW


@pytest.fixture
def app(promql_store_factory: Any) -> FastAPI:
    ts = np.arange(START * 1000 - 600_000, END * 1000 + 1, 15_000, dtype=np.int64)
    batches = []
    for svc in ("api", "web"):
        for code in ("200", "500"):
            vals = np.cumsum(np.full(len(ts), 3.0 if code == "200" else 0.1))
            batches.append(
                SampleBatch.from_arrays(
                    {"__name__": "http_requests_total", "service": svc, "code": code}, ts, vals
                )
            )
        batches.append(
            SampleBatch.from_arrays(
                {"__name__": "node_load", "service": svc}, ts, np.sin(ts / 1e6) + 2
            )
        )
    app = FastAPI()
    errors.install(app)
    app.include_router(router)
    app.include_router(rules.router)  # /api/v1/rules and /api/v1/alerts (no rules loaded here)
    app.state.settings = load_settings(env={})
    app.state.store = promql_store_factory(batches)
    app.state.metadata = {
        "http_requests_total": MetricMetadata(type="counter", help="Requests served."),
        "node_load": MetricMetadata(type="gauge", help="Load average."),
    }
    return app


def test_dashboard_load_sequence(app: FastAPI) -> None:
    async def flow() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://grafana-test") as c:
            r = await c.get("/api/v1/status/buildinfo")
            info = r.json()["data"]
            assert r.status_code == 200 and r.json()["status"] == "success"
            assert set(info) >= {
                "version",
                "revision",
                "branch",
                "buildUser",
                "buildDate",
                "goVersion",
            }
            assert "application" not in info  # plain Prometheus flavour
            major, minor = (int(x) for x in info["version"].split(".")[:2])
            assert (major, minor) >= (2, 24)  # label values with match[] supported

            r = await c.get("/api/v1/labels", params={"start": START, "end": END})
            assert r.json()["data"] == ["__name__", "code", "service"]

            r = await c.get("/api/v1/label/__name__/values", params={"start": START, "end": END})
            assert r.json()["data"] == ["http_requests_total", "node_load"]

            r = await c.get(
                "/api/v1/label/code/values",
                params={
                    "match[]": 'http_requests_total{service="api"}',
                    "start": START,
                    "end": END,
                },
            )
            assert r.json()["data"] == ["200", "500"]

            r = await c.get(
                "/api/v1/series", params={"match[]": "node_load", "start": START, "end": END}
            )
            assert r.json()["data"] == [
                {"__name__": "node_load", "service": "api"},
                {"__name__": "node_load", "service": "web"},
            ]

            r = await c.get("/api/v1/metadata")
            assert r.json()["data"]["http_requests_total"] == [
                {"type": "counter", "help": "Requests served.", "unit": ""}
            ]

            form = {
                "query": "sum by (service) (rate(http_requests_total[5m]))",
                "start": str(START),
                "end": str(END),
                "step": "60",
            }
            r = await c.post("/api/v1/query_range", data=form)
            body = r.json()
            assert r.status_code == 200 and body["data"]["resultType"] == "matrix"
            assert [s["metric"] for s in body["data"]["result"]] == [
                {"service": "api"},
                {"service": "web"},
            ]
            for s in body["data"]["result"]:
                assert len(s["values"]) == 61
                assert all(isinstance(v, str) for _, v in s["values"])
                assert float(s["values"][-1][1]) == pytest.approx(3.1 / 15, rel=1e-9)

            r = await c.post(
                "/api/v1/query_range",
                data={"query": "node_load", "start": str(START), "end": str(END), "step": "15s"},
            )
            assert len(r.json()["data"]["result"][0]["values"]) == 241

            r = await c.post("/api/v1/query", data={"query": "count(node_load)", "time": str(END)})
            assert r.json()["data"]["result"] == [{"metric": {}, "value": [END, "2"]}]

            r = await c.get(
                "/api/v1/query_exemplars",
                params={"query": "http_requests_total", "start": START, "end": END},
            )
            assert r.json() == {"status": "success", "data": []}

            r = await c.get("/api/v1/rules")
            assert r.json() == {"status": "success", "data": {"groups": []}}

            r = await c.get("/api/v1/status/runtimeinfo")
            assert r.status_code == 200

    asyncio.run(flow())
