"""Detect, predict and capacity accept any PromQL expression (issue 10, item 13).

Before, ``rate(...)``, ``histogram_quantile(...)`` or arithmetic were refused
(HTTP 400: not a selector). Now an expression is evaluated as a range query
over the requested range at the analysis step and each result series is
analysed; a plain selector keeps its fast path (raw samples, rollup tiers).
The data is real: counters and histogram buckets stored in a DuckDB store,
through the ingest API.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from perfintel.api.app import create_app
from perfintel.config import load_settings
from perfintel.errors import BadInputError, QueryTooComplexError
from perfintel.performance.expression import (
    STEPS_PER_PIECE,
    Expression,
    evaluate_range,
    parse_analysis_query,
)
from perfintel.query.promql.engine import Engine
from perfintel.query.settings import QuerySettings

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
END = (int(time.time() * 1000) // HOUR) * HOUR - HOUR
START = END - DAY  # the day analysed; the day before is the warm-up
INCIDENT = (END - 6 * HOUR, END - 6 * HOUR + 20 * MIN)
LE = ("0.05", "0.1", "0.25", "0.5", "1", "+Inf")
DETECT = "/api/v1/performance/detect/anomalies"
PREDICT = "/api/v1/performance/predict/metrics"
CAPACITY = "/api/v1/performance/capacity/analyze"
RATE = "sum by (service) (rate(http_requests_total[5m]))"
P99 = "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))"


def _exposition(ts: np.ndarray, requests: np.ndarray, buckets: np.ndarray, used: np.ndarray) -> str:
    """Prometheus text, one block per family (HELP/TYPE once, then every sample)."""
    t = [int(x) for x in ts]
    lines = ["# HELP http_requests_total Requests served.", "# TYPE http_requests_total counter"]
    for code, share in (("200", 1.0), ("500", 0.01)):
        lines += [
            f'http_requests_total{{service="api",code="{code}"}} {r * share:.3f} {ti}'
            for ti, r in zip(t, requests.tolist(), strict=True)
        ]
    lines.append("# TYPE http_request_duration_seconds histogram")
    for le, row in zip(LE, buckets, strict=True):
        lines += [
            f'http_request_duration_seconds_bucket{{le="{le}"}} {b:.3f} {ti}'
            for ti, b in zip(t, row.tolist(), strict=True)
        ]
    lines += [
        f'disk_used_bytes{{host="a"}} {u:.1f} {ti}' for ti, u in zip(t, used.tolist(), strict=True)
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """Two days of one-minute scrapes: a request rate with a daily cycle that triples during
    the incident, latencies that jump to the 0.5-1 s bucket during it, a disk that fills."""
    data = tmp_path_factory.mktemp("expr") / "data"
    settings = load_settings(overrides={"data_dir": data}, env={})
    with TestClient(create_app(settings, collectors=False)) as c:
        ts = np.arange(END - 2 * DAY, END + MIN, MIN)
        rng = np.random.default_rng(11)
        per_min = 600 + 200 * np.sin(2 * np.pi * (ts % DAY) / DAY) + rng.normal(0, 10, ts.size)
        hit = (ts >= INCIDENT[0]) & (ts < INCIDENT[1])
        per_min = np.where(hit, per_min * 3, per_min)
        requests = np.cumsum(per_min)
        slow_share = np.where(hit, 0.5, 0.001)
        shares = np.stack(
            [
                0.6 * (1 - slow_share),
                0.3 * (1 - slow_share),
                0.1 * (1 - slow_share),
                np.zeros(ts.size),
                slow_share,
                np.zeros(ts.size),
            ]
        )
        buckets = np.cumsum(np.cumsum(shares * per_min, axis=0), axis=1)  # cumulative in le and t
        used = 500e9 + 5e9 * (ts - END) / DAY + rng.normal(0, 1e8, ts.size)
        body = _exposition(ts, requests, buckets, used)
        r = c.post("/api/v1/import/prometheus", content=body.encode())
        assert r.status_code == 200, r.text
        yield c


def _post(client: TestClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post(path, json=body)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


def _query_range(client: TestClient, query: str, start_ms: int, end_ms: int, step_ms: int) -> Any:
    r = client.get(
        "/api/v1/query_range",
        params={
            "query": query,
            "start": start_ms / 1000,
            "end": end_ms / 1000,
            "step": step_ms / 1000,
        },
    )
    assert r.status_code == 200, r.text
    return r.json()["data"]["result"]


def _in_incident(events: list[dict[str, Any]]) -> bool:
    return any(e["start"] <= INCIDENT[1] and e["end"] >= INCIDENT[0] for e in events)


def test_detect_on_a_rate_finds_the_traffic_incident(client: TestClient) -> None:
    data = _post(
        client, DETECT, {"selector": RATE, "start": START / 1000, "end": END / 1000, "warmup": "1d"}
    )
    [series] = data["series"]
    assert series["labels"] == {"service": "api"}
    assert series["step_seconds"] == 60 and series["warmup_points"] > 1000
    assert _in_incident(series["anomalies"])
    # the values analysed are exactly what query_range gives for the same instants
    [ref] = _query_range(client, RATE, START, END, MIN)
    want = {round(float(t) * 1000): float(v) for t, v in ref["values"]}
    got = dict(zip(series["timestamps"], series["values"], strict=True))
    assert len(got) > 1000
    assert all(abs(got[t] - want[t]) <= 1e-9 * abs(want[t]) for t in got)


def test_detect_on_histogram_quantile_finds_the_latency_incident(client: TestClient) -> None:
    data = _post(
        client,
        DETECT,
        {"selector": P99, "start": START / 1000, "end": END / 1000, "warmup": "1d", "step": "2m"},
    )
    [series] = data["series"]
    assert series["labels"] == {}
    assert series["step_seconds"] == 120
    assert _in_incident(series["anomalies"])
    peak = max(e["peak_value"] for e in series["anomalies"] if _in_incident([e]))
    assert 0.5 < peak <= 1.0  # the p99 sits in the 0.5-1 s bucket during the incident


def test_predict_an_arithmetic_expression(client: TestClient) -> None:
    expr = (
        'sum(rate(http_requests_total{code="500"}[5m])) / sum(rate(http_requests_total[5m])) * 100'
    )
    data = _post(
        client,
        PREDICT,
        {"selector": expr, "horizon": "2h", "history": "1d", "step": "5m", "end": END / 1000},
    )
    assert data["source"] == "promql"
    [series] = data["series"]
    assert series["labels"] == {}
    assert len(series["mean"]) == 24
    assert all(0.5 < m < 1.5 for m in series["mean"])  # errors are 1 % of requests, about 0.99 %


def test_predict_writes_back_an_expression_under_its_text(client: TestClient) -> None:
    r = client.post(
        PREDICT,
        json={
            "selector": RATE,
            "horizon": "30m",
            "history": "1d",
            "step": "5m",
            "write_back": True,
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["written"] > 0
    r = client.get("/api/v1/series", params={"match[]": 'yhat{model_alias="forecast"}'})
    assert {s["for"] for s in r.json()["data"]} == {RATE}


def test_capacity_with_expressions_for_usage_and_capacity(client: TestClient) -> None:
    body = {
        "usage": "disk_used_bytes / 1e9",
        "capacity": 'max_over_time(disk_used_bytes{host="a"}[1d]) * 0 + 600e9 / 1e9',
        "match_on": [],
        "horizon_days": 60,
        "history": "2d",
        "step": "1h",
        "end": END / 1000,
        "resource": "disk",
    }
    data = _post(client, CAPACITY, body)
    assert data["source"] == "promql"
    [res] = data["resources"]
    assert res["labels"] == {"host": "a"}
    assert res["capacity"] == pytest.approx(600.0)
    p50 = res["scenarios"][0]["exhaustion"]["p50"]
    assert p50 is not None and 10 < p50["days"] < 30  # 100 GB free at 5 GB a day: 20 days
    # a number as capacity, the usage still an expression
    data = _post(client, CAPACITY, {**body, "capacity": 600})
    assert data["resources"][0]["capacity"] == 600


def test_selectors_keep_the_fast_path(client: TestClient) -> None:
    data = _post(
        client, PREDICT, {"selector": 'disk_used_bytes{host="a"}', "horizon": "1h", "history": "1d"}
    )
    assert data["source"] != "promql"
    data = _post(
        client,
        DETECT,
        {"selector": "disk_used_bytes", "start": START / 1000, "end": END / 1000, "warmup": 0},
    )
    assert data["series"][0]["labels"]["__name__"] == "disk_used_bytes"


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        (DETECT, {"selector": "rate(http_requests_total[5m]"}, "selector"),
        (DETECT, {"selector": "http_requests_total[5m]"}, "range vector"),
        (DETECT, {"selector": '"a string"'}, "string"),
        (DETECT, {"selector": "abs(" * 200 + "x" + ")" * 200}, "query.max_depth"),
        (PREDICT, {"selector": "sum(", "horizon": "1h"}, "selector"),
        (CAPACITY, {"usage": "up +", "capacity": 1}, "usage"),
        (CAPACITY, {"usage": "up", "capacity": "rate(x[5m]"}, "capacity"),
    ],
)
def test_bad_expressions_are_400_naming_the_field(
    client: TestClient, path: str, body: dict[str, Any], needle: str
) -> None:
    r = client.post(path, json=body)
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]


def test_expressions_are_bounded_by_the_query_limits(tmp_path: Path) -> None:
    settings = load_settings(
        overrides={"data_dir": tmp_path / "d", "query": {"max_series": 1}}, env={}
    )
    with TestClient(create_app(settings, collectors=False)) as c:
        c.post("/api/v1/import/prometheus", content=b'm{a="1"} 1\nm{a="2"} 2\n')
        r = c.post(DETECT, json={"selector": "m * 2", "start": "now-1h", "warmup": 0})
        assert r.status_code == 422, r.text
        assert "max_series" in r.json()["error"] or "series" in r.json()["error"]


def test_evaluate_range_joins_pieces_exactly() -> None:
    """A range longer than one engine query is evaluated in pieces: every instant is there
    once, and each value equals the instant query at that time."""
    from perfintel.batch import SampleBatch
    from perfintel.model import label_set
    from perfintel.storage.memory import MemoryStore

    store = MemoryStore()
    ts = np.arange(0, 2 * DAY, 15_000)
    store.append(SampleBatch.from_arrays(label_set({"__name__": "c", "x": "1"}), ts, ts / 1000.0))
    step = 10_000
    end = 2 * DAY - 7_000
    expr = Expression("rate(c[1m]) * 60")
    [series] = evaluate_range(store, expr, 0, end, step, settings=QuerySettings())
    n = end // step + 1
    assert n > 1.5 * STEPS_PER_PIECE
    # instants 3 s and 13 s see one sample (rate needs two): the first value is at 23 s
    assert len(series.timestamps) == n - 2 and series.timestamps[0] == 23_000
    assert np.all(np.diff(series.timestamps) == step) and series.timestamps[-1] == end
    engine = Engine(store)
    for t in series.timestamps[[0, STEPS_PER_PIECE - 3, STEPS_PER_PIECE - 2, -1]]:
        [point] = engine.instant(expr.text, int(t)).series
        i = int(np.searchsorted(series.timestamps, t))
        assert series.values[i] == point.values[0]


def test_parse_analysis_query() -> None:
    from perfintel.model import Selector

    assert isinstance(parse_analysis_query('up{job="a"}'), Selector)
    assert isinstance(parse_analysis_query("rate(up[5m])"), Expression)
    with pytest.raises(BadInputError, match="'usage'"):
        parse_analysis_query("rate(", name="usage")
    with pytest.raises(QueryTooComplexError, match=r"'usage'.*max_length"):
        parse_analysis_query("x+" * 40_000 + "x", name="usage")
