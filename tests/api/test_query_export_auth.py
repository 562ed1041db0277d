"""Series query, export/import round trip, self-metrics, auth scopes — through the app."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from perfintel.api.app import create_app
from perfintel.batch import SampleBatch
from perfintel.config import load_settings
from perfintel.model import STALE_NAN, label_set

HOUR = 3_600_000
END = (int(time.time() * 1000) // HOUR) * HOUR - HOUR
START = END - 6 * HOUR


def load(client: TestClient) -> None:
    ts = np.arange(START, END, 10_000)
    store = client.app.state.store  # type: ignore[attr-defined]
    for svc in ("api", "db"):
        for inst in range(3):
            vals = np.full(len(ts), 10.0 * (inst + 1))
            store.append(
                SampleBatch.from_arrays(
                    label_set({"__name__": "cpu", "service": svc, "instance": str(inst)}), ts, vals
                )
            )


def test_series_query_step_fn_agg(client: TestClient) -> None:
    load(client)
    params = {
        "match": "cpu",
        "start": START / 1000,
        "end": (END - 1) / 1000,
        "step": "5m",
        "fn": "avg",
        "agg": "sum",
        "by": "service",
    }
    r = client.get("/api/v1/series/query", params=params)
    assert r.status_code == 200, r.text
    series = r.json()["data"]["series"]
    assert [s["labels"] for s in series] == [{"service": "api"}, {"service": "db"}]
    assert all(v == 60.0 for s in series for v in s["values"])
    assert len(series[0]["timestamps"]) == 72
    # after a flush the same answer comes from the 5m tier
    client.app.state.store.flush(compact=True)  # type: ignore[attr-defined]
    r2 = client.get("/api/v1/series/query", params=params)
    assert r2.json()["data"]["series"] == series
    assert r2.json()["data"]["source"] == "tier:300000"
    r = client.get("/api/v1/series/query", params={**params, "fn": "count", "agg": "max", "by": ""})
    assert r.json()["data"]["series"][0]["values"][0] == 30.0


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"match": "cpu{"}, "match"),
        ({"match": "cpu", "step": "-5m"}, "step"),
        ({"match": "cpu", "start": "yesterday"}, "start"),
        ({"match": "cpu", "step": "5m", "fn": "median"}, "fn"),
        ({"match": "cpu", "agg": "sum"}, "step"),
        ({"match": '{job=~"("}'}, "match"),
    ],
)
def test_series_query_bad_input_names_the_parameter(
    client: TestClient, params: dict[str, str], needle: str
) -> None:
    r = client.get("/api/v1/series/query", params=params)
    assert r.status_code == 400
    assert needle in r.json()["error"]


def test_export_import_roundtrip_keeps_special_values(client: TestClient, tmp_path: Path) -> None:
    ts = np.arange(START, START + 10_000, 1000)
    vals = np.arange(10.0)
    vals[2], vals[3], vals[4] = np.nan, np.inf, STALE_NAN
    client.app.state.store.append(
        SampleBatch.from_arrays(label_set({"__name__": "x", "a": "1"}), ts, vals)
    )  # type: ignore[attr-defined]
    r = client.get(
        "/api/v1/export",
        params={"match[]": '{__name__=~"x|y"}', "start": str(START / 1000), "end": str(END / 1000)},
    )
    assert r.status_code == 200
    exported = r.content
    settings = load_settings(overrides={"data_dir": tmp_path / "other"}, env={})
    with TestClient(create_app(settings, collectors=False)) as other:
        r = other.post("/api/v1/import", content=exported)
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == 10
        [s] = other.app.state.store.select(__import__("perfintel").parse_selector("x"), START, END)  # type: ignore[attr-defined]
        assert np.array_equal(s.timestamps, ts)
        assert np.array_equal(s.values[[0, 1, 5]], vals[[0, 1, 5]])
        assert np.isnan(s.values[2]) and s.values[3] == np.inf
    # VictoriaMetrics' own export writes NaN/+Inf bare and staleness markers as null; so do we.
    line = exported.splitlines()[0]
    assert line.startswith(b'{"metric":{"__name__":"x","a":"1"},"values":[0,1,NaN,+Inf,null,5,')
    assert (
        orjson.loads(line.replace(b"NaN", b"null").replace(b"+Inf", b"null"))["timestamps"][0]
        == START
    )


def test_export_needs_a_selector(client: TestClient) -> None:
    r = client.get("/api/v1/export")
    assert r.status_code == 400 and "match[]" in r.json()["error"]


def test_metrics_health_ready(client: TestClient) -> None:
    load(client)
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    client.post("/api/v1/import/prometheus", content=b"x 1\nbad{ 2\n")
    assert client.app.state.anomaly.wait_idle(timeout=60)  # type: ignore[attr-defined]
    body = client.get("/metrics").text
    assert 'perfintel_ingested_samples_total{protocol="prometheus"} 1' in body
    assert 'perfintel_rejected_samples_total{protocol="prometheus",reason="invalid"} 1' in body
    assert "perfintel_series 11" in body  # 6 cpu series + x + x's 4 online anomaly outputs
    assert "perfintel_store_bytes" in body
    client.get("/api/v1/series/query", params={"match": "cpu"})
    assert (
        'perfintel_query_duration_seconds_count{endpoint="series_query"} 1'
        in client.get("/metrics").text
    )


def test_bearer_token_scopes(tmp_path: Path) -> None:
    tokens = [
        {"token": "reader-token-0123456789", "scopes": ["read"]},
        {"token": "writer-token-0123456789", "scopes": ["write"]},
        {"token": "admin-token-01234567890", "scopes": ["admin"]},
    ]
    settings = load_settings(
        overrides={"data_dir": tmp_path / "d", "auth": {"tokens": tokens}}, env={}
    )
    with TestClient(create_app(settings, collectors=False)) as c:

        def hdr(t: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {t}"}

        assert c.post("/api/v1/import/prometheus", content=b"x 1\n").status_code == 401
        assert (
            c.post(
                "/api/v1/import/prometheus", content=b"x 1\n", headers=hdr("wrong-token-0123456789")
            ).status_code
            == 401
        )
        assert (
            c.post(
                "/api/v1/import/prometheus", content=b"x 1\n", headers=hdr(tokens[0]["token"])
            ).status_code
            == 403
        )  # type: ignore[arg-type]
        assert (
            c.post(
                "/api/v1/import/prometheus", content=b"x 1\n", headers=hdr(tokens[1]["token"])
            ).status_code
            == 200
        )  # type: ignore[arg-type]
        assert (
            c.get(
                "/api/v1/series/query", params={"match": "x"}, headers=hdr(tokens[1]["token"])
            ).status_code
            == 403
        )  # type: ignore[arg-type]
        assert (
            c.get(
                "/api/v1/series/query", params={"match": "x"}, headers=hdr(tokens[0]["token"])
            ).status_code
            == 200
        )  # type: ignore[arg-type]
        assert c.post("/api/v1/admin/flush", headers=hdr(tokens[0]["token"])).status_code == 403  # type: ignore[arg-type]
        assert c.post("/api/v1/admin/flush", headers=hdr(tokens[2]["token"])).status_code == 200  # type: ignore[arg-type]
        assert (
            c.post(
                "/write", content=b"m v=1", headers={"Authorization": f"Token {tokens[1]['token']}"}
            ).status_code
            == 204
        )
        assert c.get("/healthz").status_code == 200  # health stays open for probes


def test_non_loopback_without_tokens_refuses_to_start(tmp_path: Path) -> None:
    from perfintel.errors import ConfigError

    with pytest.raises(ConfigError, match=r"auth\.tokens"):
        load_settings(overrides={"data_dir": tmp_path, "host": "0.0.0.0"}, env={})
