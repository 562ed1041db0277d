"""``POST /api/v1/performance/detect/outliers`` over a real DuckDB store."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from perfintel.api.app import create_app
from perfintel.batch import SampleBatch
from perfintel.config import load_settings
from perfintel.model import label_set
from tests.conftest import ANY_PAST_S

MIN = 60_000
HOUR = 60 * MIN
T0 = 1_790_000_000_000 - 1_790_000_000_000 % HOUR
PATH = "/api/v1/performance/detect/outliers"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data = tmp_path_factory.mktemp("outliers") / "data"
    settings = load_settings(
        overrides={"data_dir": data, "storage": {"raw_retention": ANY_PAST_S}}, env={}
    )
    with TestClient(create_app(settings, collectors=False)) as c:
        rng = np.random.default_rng(3)
        ts = T0 + 15_000 * np.arange(4 * 120, dtype=np.int64)  # 2 hours of 15-second samples
        parts = []
        for svc, hosts in (("api", 12), ("db", 6)):
            shared = 50 + 20 * np.sin(np.arange(ts.size) / 200)
            for h in range(hosts):
                v = shared + rng.normal(0, 1, ts.size)
                if svc == "api" and h == 4:
                    v[ts >= T0 + HOUR] += 25  # hot for the second hour
                if svc == "db" and h == 0:
                    v = v + rng.normal(0, 8, ts.size)  # noisy all along
                labels = {"__name__": "cpu_busy", "service": svc, "host": f"{svc}{h}"}
                parts.append(SampleBatch.from_arrays(label_set(labels), ts, v))
                counter = np.cumsum(np.abs(v))
                labels = {**labels, "__name__": "cpu_seconds_total"}
                parts.append(SampleBatch.from_arrays(label_set(labels), ts, counter))
        c.app.state.store.append(SampleBatch.concat(parts))  # type: ignore[attr-defined]
        yield c


def post(client: TestClient, **body: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "selector": "cpu_busy",
        "by": ["service"],
        "start": T0 / 1000,
        "end": (T0 + 2 * HOUR - 1) / 1000,
    }
    payload.update(body)
    r = client.post(PATH, json=payload)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()["data"]
    return out


def flagged(data: dict[str, Any]) -> dict[str, list[str]]:
    return {
        g["labels"].get("service", "*"): [m["labels"]["host"] for m in g["members"] if m["flagged"]]
        for g in data["groups"]
    }


def test_members_that_deviate_from_their_service_are_flagged(client: TestClient) -> None:
    data = post(client)
    assert data["step_seconds"] == 60 and data["tolerance"] == 3 and data["pct"] == 0.2
    assert flagged(data) == {"api": ["api4"], "db": ["db0"]}
    api = next(g for g in data["groups"] if g["labels"] == {"service": "api"})
    assert api["size"] == 12 and api["flagged"] == 1 and len(api["timestamps"]) == 120
    top = api["members"][0]  # sorted by score
    assert top["labels"]["host"] == "api4" and 0.4 < top["score"] < 0.6  # half the range
    assert "api4" in top["explanation"] and "an outlier" in top["explanation"]
    assert all(lo < hi for lo, hi in zip(api["lower"], api["upper"], strict=True))
    # the second hour alone: the hot host is outside its peers all the time
    late = post(client, start=(T0 + HOUR) / 1000)
    api_late = next(g for g in late["groups"] if g["labels"] == {"service": "api"})
    assert api_late["members"][0]["score"] == 1.0 and api_late["members"][0]["deviation"] > 10


def test_one_group_without_by_and_a_promql_query(client: TestClient) -> None:
    data = post(client, by=[])
    assert len(data["groups"]) == 1 and data["groups"][0]["size"] == 18
    q = post(client, selector=None, query="rate(cpu_seconds_total[2m])", step="1m")
    assert flagged(q) == {"api": ["api4"], "db": ["db0"]}
    assert all("__name__" not in m["labels"] for g in q["groups"] for m in g["members"])


def test_tolerance_pct_and_step(client: TestClient) -> None:
    assert flagged(post(client, pct=0.6)) == {"api": [], "db": ["db0"]}
    loose = post(client, tolerance=50)
    assert flagged(loose) == {"api": [], "db": []}
    coarse = post(client, step="5m")
    assert coarse["step_seconds"] == 300 and len(coarse["groups"][0]["timestamps"]) == 24


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        ({"selector": None}, 400, "exactly one of selector and query"),
        ({"query": "up"}, 400, "exactly one of selector and query"),
        ({"pct": 1.0}, 400, "pct"),
        ({"tolerance": 0}, 400, "tolerance"),
        ({"step": "0s"}, 400, "step"),
        ({"selector": "cpu_busy{"}, 400, "selector"),
        ({"surprise": 1}, 400, "surprise"),
        ({"selector": "nothing_here"}, 404, "no series"),
        ({"step": "1s", "start": T0 / 1000 - 86400}, 422, "steps"),
    ],
)
def test_bad_requests_name_the_problem(
    client: TestClient, body: dict[str, Any], status: int, text: str
) -> None:
    payload: dict[str, Any] = {
        "selector": "cpu_busy",
        "start": T0 / 1000,
        "end": (T0 + HOUR) / 1000,
    }
    payload.update(body)
    r = client.post(PATH, json=payload)
    assert r.status_code == status, r.text
    assert text in r.text
