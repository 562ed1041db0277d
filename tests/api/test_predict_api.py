"""``POST /api/v1/performance/predict/metrics`` over a real DuckDB store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from perfintel.api.app import create_app
from perfintel.batch import SampleBatch
from perfintel.config import load_settings
from perfintel.model import label_set

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
END = (int(time.time() * 1000) // HOUR) * HOUR - HOUR
PATH = "/api/v1/performance/predict/metrics"


def daily_shape(ts: np.ndarray) -> np.ndarray:
    """A business-hours bump peaking 2 hours after END, every day, on a base of 50."""
    hours = ((ts - END) % DAY) / HOUR
    hours = np.where(hours > 12, hours - 24, hours)
    return 50 + 40 * np.exp(-0.5 * ((hours - 2) / 0.8) ** 2)


def ingest(client: TestClient, labels: dict[str, str], ts: np.ndarray, vals: np.ndarray) -> None:
    store = client.app.state.store  # type: ignore[attr-defined]
    store.append(SampleBatch.from_arrays(label_set(labels), ts, vals))


@pytest.fixture(params=["duckdb", pytest.param("victoriametrics", marks=pytest.mark.external)])
def backend_client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    """The service over its DuckDB store, or over a RemoteStore on the session's VictoriaMetrics."""
    if request.param == "duckdb":
        yield request.getfixturevalue("client")
        return
    (tmp_path / "vm").mkdir()
    settings = load_settings(overrides={"data_dir": tmp_path / "vm"}, env={})
    store = request.getfixturevalue("vm_store")
    with TestClient(create_app(settings, store=store, collectors=False)) as c:
        yield c


@pytest.fixture
def seasonal(backend_client: TestClient) -> TestClient:
    ts = np.arange(END - 7 * DAY, END, MIN)
    noise = np.random.default_rng(7).normal(0, 1.0, ts.size)
    ingest(backend_client, {"__name__": "web_load", "host": "a"}, ts, daily_shape(ts) + noise)
    return backend_client


def test_predict_4h_tracks_the_daily_pattern(seasonal: TestClient) -> None:
    r = seasonal.post(
        PATH, json={"selector": 'web_load{host="a"}', "horizon": "4h", "end": END / 1000}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success"
    data = body["data"]
    assert data["step_seconds"] == 60 and data["source"] == "raw" and data["levels"] == [80, 95]
    (s,) = data["series"]
    assert s["labels"] == {"__name__": "web_load", "host": "a"}
    # the history's last bucket is the one holding END; the forecast starts one step later
    assert s["timestamps"] == [END + k * MIN for k in range(1, 241)]
    mean = np.array(s["mean"])
    assert mean.shape == (240,) and sorted(s["bands"]) == ["80", "95"]
    lo80, hi80 = np.array(s["bands"]["80"]["lower"]), np.array(s["bands"]["80"]["upper"])
    lo95, hi95 = np.array(s["bands"]["95"]["lower"]), np.array(s["bands"]["95"]["upper"])
    assert np.all(lo95 <= lo80) and np.all(lo80 <= mean) and np.all(mean <= hi80)
    assert np.all(hi80 <= hi95)
    truth = daily_shape(np.array(s["timestamps"]))
    assert np.corrcoef(mean, truth)[0, 1] > 0.8
    assert np.mean(np.abs(mean - truth)) < 5  # noise sd is 1, the bump 40 high
    assert s["model"] and s["backtest"]["smape"] >= 0 and s["backtest"]["mase"] > 0
    assert data["written"] == 0


def test_write_back_creates_yhat_series(seasonal: TestClient) -> None:
    r = seasonal.post(
        PATH,
        json={
            "selector": "web_load",
            "horizon": "1h",
            "levels": [95, 80],
            "write_back": True,
            "end": END / 1000,
        },
    )
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["written"] == 3 * 60
    mean = data["series"][0]["mean"]
    window = {"start": END / 1000, "end": (END + 2 * HOUR) / 1000}
    q = seasonal.get(
        "/api/v1/series/query",
        params={"match": 'yhat{for="web_load",model_alias="forecast"}', **window},
    )
    assert q.status_code == 200, q.text
    (yhat,) = q.json()["data"]["series"]
    assert yhat["labels"] == {
        "__name__": "yhat",
        "for": "web_load",
        "host": "a",
        "model_alias": "forecast",
    }
    assert yhat["timestamps"] == data["series"][0]["timestamps"]
    assert yhat["values"] == pytest.approx(mean)
    q = seasonal.get(
        "/api/v1/series/query", params={"match": '{__name__=~"yhat_.*",for="web_load"}', **window}
    )
    got = {s["labels"]["__name__"]: s for s in q.json()["data"]["series"]}
    assert sorted(got) == ["yhat_lower", "yhat_upper"]
    assert got["yhat_upper"]["labels"]["level"] == "95"  # the widest level
    assert got["yhat_upper"]["values"] == pytest.approx(data["series"][0]["bands"]["95"]["upper"])


def test_missing_values_are_null_and_a_dead_series_fails_softly(client: TestClient) -> None:
    ts = np.arange(END - DAY, END, MIN)
    ingest(client, {"__name__": "dead"}, ts, np.full(ts.size, np.nan))
    r = client.post(PATH, json={"selector": "dead", "horizon": "10m", "end": END / 1000})
    assert r.status_code == 200, r.text
    (s,) = r.json()["data"]["series"]
    assert s["model"] == "failed" and s["mean"] == [None] * 10
    assert s["bands"]["95"]["upper"] == [None] * 10 and s["notes"]


@pytest.mark.parametrize(
    ("body", "field_name"),
    [
        ({"selector": "web_load{", "horizon": "4h"}, "selector"),
        ({"selector": '{a=""}', "horizon": "4h"}, "selector"),
        ({"selector": "web_load", "horizon": "30s"}, "horizon"),
        ({"selector": "web_load", "horizon": "366d"}, "horizon"),
        ({"selector": "web_load", "horizon": "soon"}, "horizon"),
        ({"selector": "web_load", "horizon": "4h", "levels": [80, 100]}, "levels"),
        ({"selector": "web_load", "horizon": "4h", "levels": [0]}, "levels"),
        ({"selector": "web_load", "horizon": "4h", "levels": []}, "levels"),
        ({"selector": "web_load", "horizon": "4h", "step": "1x"}, "step"),
        ({"selector": "web_load", "horizon": "4h", "step": "5h"}, "step"),
        ({"selector": "web_load", "horizon": "4h", "history": "400d"}, "history"),
        ({"selector": "web_load", "horizon": "4h", "end": "yesterday"}, "end"),
        ({"selector": "web_load", "horizon": "4h", "horizn": "5h"}, "horizn"),
        ({"horizon": "4h"}, "selector"),
    ],
)
def test_bad_input_is_400_naming_the_field(
    client: TestClient, body: dict[str, object], field_name: str
) -> None:
    r = client.post(PATH, json=body)
    assert r.status_code == 400, r.text
    err = r.json()
    assert err["status"] == "error" and err["errorType"] == "bad_data"
    assert f"'{field_name}'" in err["error"]


def test_no_series_is_404_and_too_many_is_422(client: TestClient) -> None:
    r = client.post(PATH, json={"selector": "nothing_here", "horizon": "4h"})
    assert r.status_code == 404 and "nothing_here" in r.json()["error"]
    ts = np.array([END - HOUR], dtype=np.int64)
    store = client.app.state.store  # type: ignore[attr-defined]
    store.append(
        SampleBatch.concat(
            SampleBatch.from_arrays(label_set({"__name__": "wide", "i": str(i)}), ts, np.ones(1))
            for i in range(201)
        )
    )
    r = client.post(PATH, json={"selector": "wide", "horizon": "4h", "end": END / 1000})
    assert r.status_code == 422 and "200" in r.json()["error"]


def test_openapi_documents_the_body(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    op = spec["paths"][PATH]["post"]
    ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    props = spec["components"]["schemas"][ref]["properties"]
    assert {"selector", "horizon", "levels", "history", "step", "write_back"} <= set(props)


def test_write_back_needs_the_write_scope(tmp_path: Path) -> None:
    tokens = [
        {"token": "reader-token-0123456789", "scopes": ["read"]},
        {"token": "both-token-01234567890", "scopes": ["read", "write"]},
    ]
    settings = load_settings(
        overrides={"data_dir": tmp_path / "d", "auth": {"tokens": tokens}}, env={}
    )
    with TestClient(create_app(settings, collectors=False)) as c:
        ts = np.arange(END - DAY, END, MIN)
        ingest(c, {"__name__": "m"}, ts, daily_shape(ts))
        body = {"selector": "m", "horizon": "10m", "end": END / 1000}

        def post(token: str | None, **extra: object) -> int:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return c.post(PATH, json={**body, **extra}, headers=headers).status_code

        assert post(None) == 401
        assert post(tokens[0]["token"]) == 200
        assert post(tokens[0]["token"], write_back=True) == 403
        assert post(tokens[1]["token"], write_back=True) == 200
