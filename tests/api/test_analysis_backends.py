"""The anomaly and forecast APIs answer alike over DuckDB and VictoriaMetrics.

Two real services (``create_app``), one on its DuckDB store and one on a
``RemoteStore`` over the session's VictoriaMetrics, get the same samples
(values with a few decimals, which VictoriaMetrics' decimal encoding keeps
exactly); ``detect`` and ``predict`` must return identical JSON, and
forecasts written back land as series in VictoriaMetrics.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from perfintel.api.app import create_app
from perfintel.batch import SampleBatch
from perfintel.config import load_settings
from perfintel.model import label_set

pytestmark = pytest.mark.external

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
END = (int(time.time() * 1000) // HOUR) * HOUR - HOUR
INCIDENT = (END - 5 * HOUR, END - 5 * HOUR + 4 * MIN)


def _data() -> list[SampleBatch]:
    ts = np.arange(END - 7 * DAY, END, MIN)
    rng = np.random.default_rng(3)
    daily = 100 + 30 * np.sin(2 * np.pi * (ts % DAY) / DAY) + rng.normal(0, 1.5, ts.size)
    daily = np.where((ts >= INCIDENT[0]) & (ts <= INCIDENT[1]), daily + 50, daily)
    out = [SampleBatch.from_arrays(label_set({"__name__": "api_latency", "host": "a"}), ts, daily)]
    for host in ("b", "c"):
        walk = 50 + np.cumsum(rng.normal(0, 0.3, ts.size))
        out.append(
            SampleBatch.from_arrays(label_set({"__name__": "api_latency", "host": host}), ts, walk)
        )
    return [SampleBatch(b.series, b.series_idx, b.timestamps, np.round(b.values, 3)) for b in out]


@pytest.fixture(scope="module")
def clients(
    tmp_path_factory: pytest.TempPathFactory, victoria_metrics: str
) -> Iterator[dict[str, TestClient]]:
    import uuid

    from perfintel.storage.victoriametrics import RemoteStore, RemoteStoreOptions

    root = tmp_path_factory.mktemp("backends")
    vm = RemoteStore(
        RemoteStoreOptions.single_node(victoria_metrics, namespace=("pi_test", uuid.uuid4().hex))
    )
    out: dict[str, TestClient] = {}
    for kind, store in (("duckdb", None), ("victoriametrics", vm)):
        (root / kind).mkdir()
        settings = load_settings(overrides={"data_dir": root / kind}, env={})
        c = TestClient(create_app(settings, store=store, collectors=False)).__enter__()
        for b in _data():
            c.app.state.store.append(b)  # type: ignore[attr-defined]
        out[kind] = c
    yield out
    for c in out.values():
        c.__exit__(None, None, None)
    vm.close()


def _both(clients: dict[str, TestClient], path: str, body: dict[str, Any]) -> list[Any]:
    answers = []
    for c in clients.values():
        r = c.post(path, json=body)
        assert r.status_code == 200, r.text
        answers.append(r.json())
    return answers


def test_detect_is_identical(clients: dict[str, TestClient]) -> None:
    body = {
        "selector": "api_latency",
        "start": (END - DAY) / 1000,
        "end": END / 1000,
        "warmup": "1d",
    }
    duck, vm = _both(clients, "/api/v1/performance/detect/anomalies", body)
    assert duck == vm
    a = next(s for s in duck["data"]["series"] if s["labels"]["host"] == "a")
    assert any(e["start"] <= INCIDENT[1] and e["end"] >= INCIDENT[0] for e in a["anomalies"])


def test_predict_is_identical_and_writes_back_into_victoriametrics(
    clients: dict[str, TestClient],
) -> None:
    body = {"selector": "api_latency", "horizon": "2h", "end": END / 1000}
    duck, vm = _both(clients, "/api/v1/performance/predict/metrics", body)
    assert duck == vm
    assert len(duck["data"]["series"]) == 3
    written = clients["victoriametrics"].post(
        "/api/v1/performance/predict/metrics", json={**body, "write_back": True}
    )
    assert written.status_code == 200 and written.json()["data"]["written"] == 3 * 3 * 120
    q = clients["victoriametrics"].get(
        "/api/v1/series/query",
        params={"match": 'yhat{for="api_latency"}', "start": END / 1000, "end": END / 1000 + 7200},
    )
    assert q.status_code == 200, q.text
    got = {s["labels"]["host"]: s for s in q.json()["data"]["series"]}
    assert sorted(got) == ["a", "b", "c"]
    mean_a = next(s for s in duck["data"]["series"] if s["labels"]["host"] == "a")["mean"]
    assert got["a"]["values"] == pytest.approx(mean_a, rel=1e-11)  # VM keeps ~12 digits
