"""``POST /api/v1/performance/detect/anomalies`` over a real DuckDB store."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from perfintel.api.app import create_app
from perfintel.batch import SampleBatch
from perfintel.config import load_settings
from perfintel.model import label_set, parse_selector
from perfintel.performance.anomalies import DetectOptions
from perfintel.performance.anomalies import detect as detect_series
from tests.conftest import ANY_PAST_S

MIN = 60_000
DAY = 86_400_000
T0 = 1_790_000_000_000 - 1_790_000_000_000 % DAY  # a midnight (UTC)
START, END = T0 + DAY, T0 + 2 * DAY - MIN  # the scored day; the day before is the warm-up
INCIDENT = (T0 + DAY + 14 * 60 * MIN, T0 + DAY + 14 * 60 * MIN + 4 * MIN)  # 14:00-14:04
PATH = "/api/v1/performance/detect/anomalies"


def shape(ts: np.ndarray, seed: int = 5) -> np.ndarray:
    """A daily sine around 100, noise, and +50 during the incident."""
    v = 100 + 30 * np.sin(2 * np.pi * (ts % DAY) / DAY)
    v = v + np.random.default_rng(seed).normal(0, 1.5, ts.size)
    return np.where((ts >= INCIDENT[0]) & (ts <= INCIDENT[1]), v + 50, v)


@pytest.fixture(
    scope="module",
    params=["duckdb", pytest.param("victoriametrics", marks=pytest.mark.external)],
)
def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """The service over its DuckDB store, or over VictoriaMetrics (a namespace of its own)."""
    data = tmp_path_factory.mktemp("detect") / "data"
    settings = load_settings(
        overrides={"data_dir": data, "storage": {"raw_retention": ANY_PAST_S}}, env={}
    )
    remote = None
    if request.param == "victoriametrics":
        from perfintel.storage.victoriametrics import RemoteStore, RemoteStoreOptions

        data.mkdir()
        url = request.getfixturevalue("victoria_metrics")
        ns = ("pi_test", f"detect-{uuid.uuid4().hex}")
        remote = RemoteStore(RemoteStoreOptions.single_node(url, namespace=ns))
    with TestClient(create_app(settings, store=remote, collectors=False)) as c:
        store = c.app.state.store  # type: ignore[attr-defined]
        ts = np.arange(T0, T0 + 2 * DAY, MIN)
        store.append(
            SampleBatch.from_arrays(
                label_set({"__name__": "api_latency", "host": "a"}), ts, shape(ts)
            )
        )
        fast = np.arange(START, START + 2 * 3_600_000, 15_000)  # 15 s samples for 2 h
        store.append(
            SampleBatch.from_arrays(
                label_set({"__name__": "fast_metric"}), fast, np.sin(fast / 1e6)
            )
        )
        many = SampleBatch.concat(
            SampleBatch.from_arrays(
                label_set({"__name__": "wide", "i": str(i)}), ts[-3:], np.ones(3)
            )
            for i in range(101)
        )
        store.append(many)
        yield c
    if remote is not None:
        remote.close()


def detect(client: TestClient, **body: Any) -> dict[str, Any]:
    payload = {
        "selector": 'api_latency{host="a"}',
        "start": START / 1000,
        "end": END / 1000,
        "warmup": "1d",
    }
    payload.update(body)
    r = client.post(PATH, json=payload)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()["data"]
    return out


@pytest.fixture(scope="module")
def medium(client: TestClient) -> dict[str, Any]:
    return detect(client)


def test_the_incident_is_one_event_with_an_explanation(medium: dict[str, Any]) -> None:
    (s,) = medium["series"]
    assert s["labels"] == {"__name__": "api_latency", "host": "a"}
    assert medium["threshold"] == 0.6
    covering = [e for e in s["anomalies"] if e["start"] <= INCIDENT[1] and e["end"] >= INCIDENT[0]]
    assert len(covering) == 1
    (e,) = covering
    assert INCIDENT[0] <= e["peak_time"] <= INCIDENT[1]
    assert e["peak_value"] > e["expected_upper"] > e["expected"] > e["expected_lower"]
    assert e["severity"] in ("medium", "high", "critical")
    assert e["detector"] in ("seasonal", "shift", "novelty")
    assert "expected" in e["explanation"] and e["explanation"].endswith(
        f"severity {e['severity']}."
    )
    assert e["start_time"].endswith("Z") and e["points"] >= 1
    i = s["timestamps"].index(e["peak_time"])
    assert s["anomaly_score"][i] > 1 and s["yhat_lower"][i] <= s["yhat"][i] <= s["yhat_upper"][i]


def test_warm_up_data_is_learnt_from_but_not_returned(
    client: TestClient, medium: dict[str, Any]
) -> None:
    (s,) = medium["series"]
    assert s["timestamps"][0] == START and s["timestamps"][-1] == END
    assert len(s["timestamps"]) == len(s["score"]) == len(s["yhat"]) == 1440
    assert s["warmup_points"] == 1440 and s["step_seconds"] is None
    assert all(0.0 <= x <= 1.0 for x in s["score"])
    cold = detect(client, warmup="0")["series"][0]
    assert cold["warmup_points"] == 0 and cold["timestamps"] == s["timestamps"]
    assert cold["yhat"] != s["yhat"]  # the warm-up changed what the detector expected


def test_high_sensitivity_finds_at_least_as_many_events_as_low(
    client: TestClient, medium: dict[str, Any]
) -> None:
    low = detect(client, sensitivity="low")
    high = detect(client, sensitivity="high")
    as_number = detect(client, sensitivity=0.75)
    assert (low["threshold"], high["threshold"]) == (0.8, 0.4)
    n = [len(d["series"][0]["anomalies"]) for d in (low, medium, high)]
    assert n[0] <= n[1] <= n[2] and n[0] >= 1
    assert as_number["series"][0]["anomalies"] == high["series"][0]["anomalies"]


def test_steps_and_dense_data_are_bucketed(client: TestClient) -> None:
    five = detect(client, step="5m")["series"][0]
    assert five["step_seconds"] == 300
    assert np.all(np.diff(five["timestamps"]) == 300_000) and len(five["timestamps"]) == 288
    dense = detect(client, selector="fast_metric")["series"][0]
    assert dense["step_seconds"] == 60 and len(dense["timestamps"]) == 120


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("selector", {"selector": "api_latency{"}),
        ("selector", {"selector": '{host=~".*"}'}),
        ("start", {"start": "yesterday"}),
        ("end", {"end": "not a time"}),
        ("start", {"start": END / 1000 + 60}),
        ("sensitivity", {"sensitivity": "extreme"}),
        ("sensitivity", {"sensitivity": 0}),
        ("sensitivity", {"sensitivity": 1.5}),
        ("step", {"step": "0s"}),
        ("step", {"step": "fast"}),
        ("warmup", {"warmup": "abc"}),
        ("warmup", {"warmup": "90d"}),
        ("horizon", {"horizon": "1h"}),
    ],
)
def test_bad_input_is_400_naming_the_field(
    client: TestClient, field: str, change: dict[str, Any]
) -> None:
    payload = {"selector": "api_latency", "start": START / 1000, "end": END / 1000, **change}
    r = client.post(PATH, json=payload)
    assert r.status_code == 400, r.text
    assert r.json()["errorType"] == "bad_data"
    assert f"'{field}'" in r.json()["error"]


def test_too_many_series_is_422_and_none_is_404(client: TestClient) -> None:
    r = client.post(PATH, json={"selector": "wide", "start": START / 1000, "end": END / 1000})
    assert r.status_code == 422 and "at most 100" in r.json()["error"]
    r = client.post(
        PATH, json={"selector": "missing_metric", "start": START / 1000, "end": END / 1000}
    )
    assert r.status_code == 404 and r.json()["errorType"] == "not_found"


def test_the_body_is_in_the_openapi_schema(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "post" in spec["paths"][PATH]
    props = spec["components"]["schemas"]["DetectRequest"]["properties"]
    assert {"selector", "start", "end", "step", "sensitivity", "warmup"} <= set(props)


def test_the_kernel_and_lockstep_paths_agree(client: TestClient) -> None:
    store = client.app.state.store  # type: ignore[attr-defined]
    sel = parse_selector("api_latency")
    opts = {"warmup_ms": DAY, "threshold": 0.6}
    fast = detect_series(store, sel, START, END, DetectOptions(engine="kernel", **opts))
    slow = detect_series(store, sel, START, END, DetectOptions(engine="lockstep", **opts))
    assert (fast.path, slow.path) == ("kernel", "lockstep")
    (a,), (b,) = fast.series, slow.series
    for name in ("score", "anomaly_score", "yhat", "yhat_lower", "yhat_upper"):
        assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), name
    assert a.events == b.events
