"""Every ingest endpoint through the app over a real DuckDB file: good, bad and mixed payloads."""

from __future__ import annotations

import gzip
import time

import cramjam
import numpy as np
import orjson
from fastapi.testclient import TestClient

from perfintel.batch import SampleBatch
from perfintel.ingest.remote_write import encode_remote_write
from perfintel.model import label_set

NOW_S = int(time.time()) - 600
NOW_MS = NOW_S * 1000


def values(client: TestClient, selector: str) -> dict[str, list[float]]:
    r = client.get(
        "/api/v1/series/query",
        params={"match": selector, "start": NOW_S - 3600, "end": NOW_S + 3600},
    )
    assert r.status_code == 200, r.text
    return {
        ",".join(f"{k}={v}" for k, v in s["labels"].items()): s["values"]
        for s in r.json()["data"]["series"]
    }


def test_remote_write_ok_then_partial(client: TestClient) -> None:
    batch = SampleBatch.from_arrays(
        label_set({"__name__": "rw_metric", "job": "a"}),
        NOW_MS + np.arange(3) * 1000,
        np.array([1.0, 2.0, 3.0]),
    )
    headers = {
        "Content-Type": "application/x-protobuf",
        "Content-Encoding": "snappy",
        "X-Prometheus-Remote-Write-Version": "0.1.0",
    }
    r = client.post("/api/v1/write", content=encode_remote_write(batch), headers=headers)
    assert r.status_code == 204
    assert r.headers["X-Perfintel-Samples-Accepted"] == "3"
    assert values(client, "rw_metric") == {"__name__=rw_metric,job=a": [1.0, 2.0, 3.0]}

    good = SampleBatch.from_arrays(
        label_set({"__name__": "rw_ok"}), np.array([NOW_MS]), np.array([5.0])
    )
    bad = SampleBatch.from_arrays((("__name__", "bad-name"),), np.array([NOW_MS]), np.array([1.0]))
    r = client.post(
        "/api/v1/write",
        content=encode_remote_write(SampleBatch.concat([good, bad])),
        headers=headers,
    )
    assert r.status_code == 400
    body = r.json()
    assert body["accepted"] == 1 and body["rejected"] == 1
    assert "bad-name" in body["errors"][0]
    assert values(client, "rw_ok") == {"__name__=rw_ok": [5.0]}  # the valid one was kept


def test_remote_write_garbage_is_a_clear_400(client: TestClient) -> None:
    r = client.post(
        "/api/v1/write",
        content=bytes(cramjam.snappy.compress_raw(b"\xff\xff\xff")),
        headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"},
    )
    assert r.status_code == 400
    assert r.json()["status"] == "error"
    r = client.post(
        "/api/v1/write",
        content=b"not snappy at all",
        headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"},
    )
    assert r.status_code == 400
    assert "snappy" in r.json()["error"].lower()


def test_prometheus_text_bad_line_keeps_neighbours(client: TestClient) -> None:
    text = f"""# TYPE http_requests_total counter
http_requests_total{{code="200"}} 10 {NOW_MS}
http_requests_total{{code="500"}} abc {NOW_MS}
http_requests_total{{code="404"}} 3 {NOW_MS}
"""
    r = client.post("/api/v1/import/prometheus", content=text.encode())
    assert r.status_code == 400
    body = r.json()
    assert body["accepted"] == 2 and body["rejected"] == 1
    assert body["errors"][0].startswith("line 3")
    got = values(client, "http_requests_total")
    assert set(got) == {
        "__name__=http_requests_total,code=200",
        "__name__=http_requests_total,code=404",
    }


def test_openmetrics_seconds_and_gzip(client: TestClient) -> None:
    text = f'# TYPE om_temp gauge\nom_temp{{room="a"}} 21.5 {NOW_S}.5\n# EOF\n'.encode()
    r = client.post(
        "/api/v1/import/prometheus",
        content=gzip.compress(text),
        headers={
            "Content-Type": "application/openmetrics-text; version=1.0.0",
            "Content-Encoding": "gzip",
        },
    )
    assert r.status_code == 200, r.text
    r = client.get(
        "/api/v1/series/query", params={"match": "om_temp", "start": NOW_S - 10, "end": NOW_S + 10}
    )
    [s] = r.json()["data"]["series"]
    assert s["timestamps"] == [NOW_MS + 500]


def test_influx_v1_v2_precision_and_errors(client: TestClient) -> None:
    r = client.post(
        "/write",
        params={"precision": "s", "db": "x"},
        content=f"cpu,host=h1 usage_idle=90.5,usage_user=2i {NOW_S}\n".encode(),
    )
    assert r.status_code == 204
    r = client.post(
        "/api/v2/write",
        params={"precision": "ms", "org": "o", "bucket": "b"},
        content=f"mem,host=h1 used=1024i {NOW_MS}\nmem,host=h1 used= {NOW_MS}\nmem,host=h2 used=2048i {NOW_MS}\n".encode(),
    )
    assert r.status_code == 400
    assert "line 2" in r.json()["message"]
    assert r.json()["accepted"] == 2
    assert values(client, "cpu_usage_idle") == {"__name__=cpu_usage_idle,host=h1": [90.5]}
    assert values(client, "mem_used") == {
        "__name__=mem_used,host=h1": [1024.0],
        "__name__=mem_used,host=h2": [2048.0],
    }
    r = client.post("/write", params={"precision": "fortnights"}, content=b"x v=1")
    assert r.status_code == 400 and "precision" in r.json()["error"]


def test_json_ingest_and_openapi(client: TestClient) -> None:
    body = {
        "series": [
            {
                "metric": "json_metric",
                "labels": {"env": "prod"},
                "samples": [[NOW_MS, 1.5], [NOW_MS + 1000, "NaN"], [NOW_MS + 2000, "x"]],
            },
            {"metric": "bad metric", "labels": {}, "samples": [[NOW_MS, 1]]},
        ]
    }
    r = client.post("/api/v1/ingest", content=orjson.dumps(body))
    assert r.status_code == 400
    out = r.json()
    assert out["accepted"] == 2 and out["rejected"] == 2
    got = values(client, "json_metric")["__name__=json_metric,env=prod"]
    assert got[0] == 1.5 and got[1] == "NaN"
    r = client.post("/api/v1/ingest", content=b"{not json")
    assert r.status_code == 400 and r.json()["errorType"] == "bad_data"
    schema = client.get("/openapi.json").json()
    assert "requestBody" in schema["paths"]["/api/v1/ingest"]["post"]


def test_payload_limits_give_413(client: TestClient) -> None:
    limit = client.app.state.settings.limits.max_body_bytes  # type: ignore[attr-defined]
    r = client.post("/api/v1/import/prometheus", content=b"x 1\n" * (limit // 4 + 1))
    assert r.status_code == 413
    assert "max_body_bytes" in r.json()["error"]
    bomb = gzip.compress(b"0" * (client.app.state.settings.limits.max_decompressed_bytes + 1))  # type: ignore[attr-defined]
    r = client.post("/api/v1/import/prometheus", content=bomb, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 413


def test_unsupported_encoding_is_415(client: TestClient) -> None:
    r = client.post(
        "/api/v1/import/prometheus", content=b"x 1\n", headers={"Content-Encoding": "br"}
    )
    assert r.status_code == 415
