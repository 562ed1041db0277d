"""Every ingest endpoint refuses samples outside the timestamp bounds, stores the
good samples beside them, and reports the refused count with the likely cause."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from perfintel.api.app import create_app
from perfintel.batch import SampleBatch
from perfintel.config import load_settings
from perfintel.ingest.remote_write import encode_remote_write

NOW_MS = int(time.time()) * 1000
SECONDS = NOW_MS // 1000  # seconds sent as milliseconds: January 1970


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    """The default bounds: 15 days back, 1 hour ahead (the shared fixture keeps a century)."""
    settings = load_settings(overrides={"data_dir": tmp_path / "data"}, env={})
    with TestClient(create_app(settings, collectors=False)) as c:
        yield c


def _stored(client: TestClient, name: str) -> list[float]:
    r = client.get("/api/v1/export", params={"match[]": name, "start": "0"})
    assert r.status_code == 200, r.text
    return [v for line in r.content.splitlines() for v in orjson.loads(line)["values"]]


def _check(r: httpx.Response, client: TestClient, name: str) -> None:
    assert r.headers["X-Perfintel-Samples-Accepted"] == "1", r.text
    assert r.headers["X-Perfintel-Samples-Rejected"] == "1", r.text
    assert "seconds sent where milliseconds are expected?" in r.text
    assert "1970-01-" in r.text
    assert _stored(client, name) == [1.0]


def test_remote_write(client: TestClient) -> None:
    good = SampleBatch.from_arrays({"__name__": "rw_b", "k": "good"}, [NOW_MS], [1.0])
    bad = SampleBatch.from_arrays({"__name__": "rw_b", "k": "bad"}, [SECONDS], [2.0])
    body = encode_remote_write(SampleBatch.concat([good, bad]))
    r = client.post(
        "/api/v1/write", content=body, headers={"Content-Type": "application/x-protobuf"}
    )
    assert r.status_code == 400
    _check(r, client, "rw_b")
    assert r.json()["rejected"] == 1


def test_json(client: TestClient) -> None:
    body = {"series": [{"metric": "js_b", "samples": [[NOW_MS, 1.0], [SECONDS, 2.0]]}]}
    r = client.post("/api/v1/ingest", json=body)
    assert r.status_code == 400
    _check(r, client, "js_b")


def test_prometheus_text(client: TestClient) -> None:
    body = f'pt_b{{k="a"}} 1 {NOW_MS}\npt_b{{k="b"}} 2 {SECONDS}\n'
    r = client.post("/api/v1/import/prometheus", content=body)
    assert r.status_code == 400
    _check(r, client, "pt_b")


def test_influx(client: TestClient) -> None:
    body = f"ix,k=a b=1 {NOW_MS}\nix,k=b b=2 {SECONDS}\n"
    r = client.post("/api/v2/write", params={"precision": "ms"}, content=body)
    assert r.status_code == 400
    _check(r, client, "ix_b")


def test_vm_import(client: TestClient) -> None:
    body = (
        orjson.dumps(
            {"metric": {"__name__": "vm_b"}, "values": [1.0, 2.0], "timestamps": [NOW_MS, SECONDS]}
        )
        + b"\n"
    )
    r = client.post("/api/v1/import", content=body)
    assert r.status_code == 400
    _check(r, client, "vm_b")


def test_otlp(client: TestClient) -> None:
    points = [
        {"timeUnixNano": str(NOW_MS * 1_000_000), "asDouble": 1.0},
        {
            "timeUnixNano": str(SECONDS * 1_000_000),
            "asDouble": 2.0,
            "attributes": [{"key": "k", "value": {"stringValue": "b"}}],
        },
    ]
    body = {
        "resourceMetrics": [
            {"scopeMetrics": [{"metrics": [{"name": "ot_b", "gauge": {"dataPoints": points}}]}]}
        ]
    }
    r = client.post("/v1/metrics", json=body)
    assert r.status_code == 400
    _check(r, client, "ot_b")


def test_a_full_request_of_bad_samples_stores_nothing_and_says_why(client: TestClient) -> None:
    ts = np.full(3, SECONDS)
    body = encode_remote_write(SampleBatch.from_arrays({"__name__": "all_bad"}, ts, np.ones(3)))
    r = client.post(
        "/api/v1/write", content=body, headers={"Content-Type": "application/x-protobuf"}
    )
    assert r.status_code == 400
    assert r.json()["accepted"] == 0 and r.json()["rejected"] == 3
    assert client.get("/api/v1/series", params={"match[]": "all_bad"}).json()["data"] == []
    assert (
        'perfintel_rejected_samples_total{protocol="remote_write",reason="out_of_bounds"} 3'
        in client.get("/metrics").text
    )
