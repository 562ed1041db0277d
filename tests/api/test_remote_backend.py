"""The service configured with ``storage.backend: victoriametrics``: ingest, PromQL through
perfintel's engine or passed through to VictoriaMetrics, status and flush (real server)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from perfintel.api.app import create_app
from perfintel.batch import SampleBatch
from perfintel.config import load_settings
from perfintel.ingest.remote_write import encode_remote_write
from perfintel.model import label_set
from perfintel.storage.victoriametrics import RemoteStore, RemoteStoreOptions
from tests.conftest import start_server

pytestmark = pytest.mark.external

MIN = 60_000
END = (int(time.time() * 1000) // MIN) * MIN - 10 * MIN  # older than VM's 30 s search latency
RW = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


@pytest.fixture
def client(tmp_path: Path, victoria_metrics: str) -> Iterator[TestClient]:
    overrides = {
        "data_dir": tmp_path / "data",
        "anomaly": {"enabled": False},  # its written-back scores would join the series counted
        "storage": {
            "backend": "victoriametrics",
            "remote": {
                "write_url": victoria_metrics + "/api/v1/write",
                "read_url": victoria_metrics,
                "flush_url": victoria_metrics + "/internal/force_flush",
                "namespace": f"pi_test={uuid.uuid4().hex}",
            },
        },
    }
    settings = load_settings(overrides=overrides, env={})
    with TestClient(create_app(settings, collectors=False)) as c:
        yield c


def _ingest(client: TestClient) -> None:
    ts = np.arange(END - 60 * MIN, END + 1, 15_000)
    batches = [
        SampleBatch.from_arrays(
            label_set({"__name__": "up_gauge", "job": job, "i": str(i)}),
            ts,
            np.round(10 * i + np.sin(ts / 1e6), 3),
        )
        for job in ("a", "b")
        for i in range(3)
    ]
    r = client.post(
        "/api/v1/write", content=encode_remote_write(SampleBatch.concat(batches)), headers=RW
    )
    assert r.status_code == 204, r.text


def test_the_configured_backend_stores_and_answers(client: TestClient) -> None:
    assert isinstance(client.app.state.store, RemoteStore)  # type: ignore[attr-defined]
    _ingest(client)
    r = client.get("/api/v1/series", params={"match[]": "up_gauge", "start": (END - 3600e3) / 1000})
    assert r.status_code == 200 and len(r.json()["data"]) == 6
    assert all("pi_test" not in s for s in r.json()["data"])
    assert client.post("/api/v1/admin/flush").status_code == 200
    tsdb = client.get("/api/v1/status/tsdb").json()["data"]
    assert tsdb["series"] == 6
    assert "perfintel_" in client.get("/metrics").text


@pytest.mark.parametrize(
    "query",
    ["up_gauge", "sum by (job) (up_gauge)", "up_gauge offset 5m", "up_gauge * 2 > 25"],
)
def test_engine_and_passthrough_agree_on_plain_queries(client: TestClient, query: str) -> None:
    _ingest(client)
    params = {"query": query, "start": (END - 30 * MIN) / 1000, "end": END / 1000, "step": "60"}
    ours = client.post("/api/v1/query_range", data={**params, "promql": "engine"}).json()
    theirs = client.post("/api/v1/query_range", data={**params, "promql": "passthrough"}).json()
    assert ours["status"] == theirs["status"] == "success"

    def points(doc: dict) -> dict:
        return {
            tuple(sorted(s["metric"].items())): [(t, float(v)) for t, v in s["values"]]
            for s in doc["data"]["result"]
        }

    got, want = points(ours), points(theirs)
    assert got and got.keys() == want.keys()
    for k in got:  # VictoriaMetrics sums in another order: the last bits may differ
        assert [t for t, _ in got[k]] == [t for t, _ in want[k]]
        assert [v for _, v in got[k]] == pytest.approx([v for _, v in want[k]], rel=1e-12)
    one = client.get(
        "/api/v1/query", params={"query": query, "time": END / 1000, "promql": "passthrough"}
    )
    assert one.status_code == 200 and one.json()["data"]["resultType"] == "vector"


def test_passthrough_errors_and_bad_modes(client: TestClient) -> None:
    r = client.get("/api/v1/query", params={"query": "sum(", "promql": "passthrough"})
    assert r.status_code == 422 and "sum(" in r.json()["error"]  # VictoriaMetrics' parse error
    r = client.get("/api/v1/query", params={"query": "1", "promql": "mystery"})
    assert r.status_code == 400


def test_passthrough_needs_a_remote_store(tmp_path: Path) -> None:
    settings = load_settings(overrides={"data_dir": tmp_path / "d"}, env={})
    with TestClient(create_app(settings, collectors=False)) as c:
        r = c.get("/api/v1/query", params={"query": "1", "promql": "passthrough"})
        assert r.status_code == 400 and "remote store" in r.json()["error"]


def test_passthrough_stays_in_its_namespace(client: TestClient, victoria_metrics: str) -> None:
    other = RemoteStore(
        RemoteStoreOptions.single_node(victoria_metrics, namespace=("pi_test", "elsewhere"))
    )
    ts = np.arange(END - 10 * MIN, END + 1, 15_000)
    other.append(
        SampleBatch.from_arrays(label_set({"__name__": "up_gauge", "job": "x"}), ts, ts * 0.0)
    )
    other.flush()
    _ingest(client)
    for query in ("up_gauge", '{pi_test="elsewhere"}', 'up_gauge{pi_test=~".*"}'):
        r = client.get(
            "/api/v1/query", params={"query": query, "time": END / 1000, "promql": "passthrough"}
        )
        jobs = {s["metric"].get("job") for s in r.json()["data"]["result"]}
        # the namespace is added to the query's own matchers: they can narrow, never widen
        assert jobs == (set() if "elsewhere" in query else {"a", "b"}), query
        assert "x" not in jobs and all(
            "pi_test" not in s["metric"] for s in r.json()["data"]["result"]
        )
    other.close()


def test_perfintel_serve_on_victoriametrics(tmp_path: Path, victoria_metrics: str) -> None:
    """A real `perfintel serve` process configured by environment, end to end."""
    ns = uuid.uuid4().hex
    env = {
        "PERFINTEL_STORAGE__BACKEND": "victoriametrics",
        "PERFINTEL_STORAGE__REMOTE__WRITE_URL": victoria_metrics + "/api/v1/write",
        "PERFINTEL_STORAGE__REMOTE__READ_URL": victoria_metrics,
        "PERFINTEL_STORAGE__REMOTE__FLUSH_URL": victoria_metrics + "/internal/force_flush",
        "PERFINTEL_STORAGE__REMOTE__NAMESPACE": f"pi_test={ns}",
        "PERFINTEL_HOST_COLLECTOR__ENABLED": "false",
    }
    server = start_server(tmp_path / "data", env=env)
    try:
        ts = np.arange(END - 10 * MIN, END + 1, 15_000)
        body = encode_remote_write(
            SampleBatch.from_arrays(label_set({"__name__": "served", "job": "e2e"}), ts, ts / 1e9)
        )
        r = httpx.post(server.url + "/api/v1/write", content=body, headers=RW, timeout=30)
        assert r.status_code == 204, r.text
        params = {
            "query": "served",
            "start": (END - 10 * MIN) / 1000,
            "end": END / 1000,
            "step": "60",
        }
        for mode in ("engine", "passthrough"):
            got = httpx.post(
                server.url + "/api/v1/query_range", data={**params, "promql": mode}, timeout=30
            ).json()
            [s] = got["data"]["result"]
            assert s["metric"] == {"__name__": "served", "job": "e2e"}, mode
            assert len(s["values"]) == 11 and float(s["values"][-1][1]) == END / 1e9
        # the samples are in VictoriaMetrics itself, under the namespace label
        raw = httpx.post(
            victoria_metrics + "/api/v1/export", data={"match[]": f'served{{pi_test="{ns}"}}'}
        )
        assert raw.text.count('"served"') == 1
        assert not (tmp_path / "data" / "samples").exists()  # no DuckDB store was opened
    finally:
        server.stop()
