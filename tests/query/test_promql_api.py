"""The Prometheus HTTP API router: envelopes, status codes, parameters, rendering."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st

from perfintel.api import errors
from perfintel.api.prometheus import router
from perfintel.batch import SampleBatch
from perfintel.errors import BadInputError
from perfintel.query import QuerySettings
from perfintel.query.promql.format import (
    format_points,
    format_timestamp,
    format_value,
    format_values,
)
from perfintel.timeparse import parse_duration_ms as parse_duration
from perfintel.timeparse import parse_time_ms as parse_time

T0 = 1_700_000_040_000


def make_app(store: Any, settings: QuerySettings | None = None) -> FastAPI:
    app = FastAPI()
    errors.install(app)
    app.include_router(router)
    app.state.store = store
    if settings is not None:
        app.state.query_settings = settings
    return app


def call(app: FastAPI, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


@pytest.fixture
def store(promql_store_factory: Any) -> Any:
    ts = np.arange(T0, T0 + 600_000, 15_000, dtype=np.int64)
    batches = [
        SampleBatch.from_arrays({"__name__": "up", "job": j}, ts, np.ones(len(ts)) * (i + 0.5))
        for i, j in enumerate(("a", "b"))
    ]
    return promql_store_factory(batches)


def test_query_range_envelope_and_formatting(store: Any) -> None:
    app = make_app(store)
    r = call(
        app,
        "GET",
        "/api/v1/query_range",
        params={"query": "up", "start": T0 / 1000, "end": T0 / 1000 + 60, "step": "30s"},
    )
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "success"
    assert body["data"]["resultType"] == "matrix"
    first = body["data"]["result"][0]
    assert first["metric"] == {"__name__": "up", "job": "a"}
    assert first["values"][0] == [T0 / 1000, "0.5"]
    assert len(first["values"]) == 3


def test_instant_query_scalar_and_string(store: Any) -> None:
    app = make_app(store)
    r = call(app, "POST", "/api/v1/query", data={"query": "1/0", "time": "2023-11-14T22:14:00.5Z"})
    assert r.json()["data"] == {"resultType": "scalar", "result": [1700000040.5, "+Inf"]}
    r = call(app, "GET", "/api/v1/query", params={"query": '"hi"', "time": "10"})
    assert r.json()["data"] == {"resultType": "string", "result": [10, "hi"]}


def test_bad_query_is_400_bad_data(store: Any) -> None:
    r = call(make_app(store), "GET", "/api/v1/query", params={"query": "sum(", "time": "1"})
    assert r.status_code == 400
    assert r.json()["status"] == "error" and r.json()["errorType"] == "bad_data"


def test_bad_parameters_read_like_prometheus(store: Any) -> None:
    app = make_app(store)
    r = call(
        app,
        "GET",
        "/api/v1/query_range",
        params={"query": "up", "start": "abc", "end": "1", "step": "1"},
    )
    assert r.status_code == 400
    assert r.json()["error"] == 'invalid parameter "start": cannot parse "abc" to a valid timestamp'
    r = call(
        app,
        "GET",
        "/api/v1/query_range",
        params={"query": "up", "start": "1", "end": "2", "step": "x"},
    )
    assert r.json()["error"] == 'invalid parameter "step": cannot parse "x" to a valid duration'
    r = call(
        app,
        "GET",
        "/api/v1/query_range",
        params={"query": "up", "start": "1", "end": "100000", "step": "1"},
    )
    assert "11,000 points" in r.json()["error"]
    r = call(
        app,
        "GET",
        "/api/v1/query_range",
        params={"query": "up", "start": "2", "end": "1", "step": "1"},
    )
    assert r.json()["error"] == "end timestamp must not be before start time"


def test_execution_errors_are_422(store: Any) -> None:
    r = call(
        make_app(store),
        "GET",
        "/api/v1/query",
        params={"query": "up + on() up", "time": str(T0 / 1000 + 60)},
    )
    assert r.status_code == 422
    assert r.json()["errorType"] == "execution"


def test_limits_are_422(store: Any) -> None:
    app = make_app(store, QuerySettings(max_series=1))
    r = call(app, "GET", "/api/v1/query", params={"query": "up", "time": str(T0 / 1000 + 60)})
    assert r.status_code == 422
    assert r.json()["errorType"] == "execution"


def test_timeout_is_503(store: Any) -> None:
    app = make_app(store, QuerySettings(timeout_s=0.0))
    r = call(app, "GET", "/api/v1/query", params={"query": "up", "time": str(T0 / 1000 + 60)})
    assert r.status_code == 503
    assert r.json()["errorType"] == "timeout"


def test_series_labels_values(store: Any) -> None:
    app = make_app(store)
    r = call(app, "GET", "/api/v1/series", params={"match[]": "up"})
    assert r.json()["data"] == [{"__name__": "up", "job": "a"}, {"__name__": "up", "job": "b"}]
    assert call(app, "GET", "/api/v1/series").status_code == 400
    assert call(app, "GET", "/api/v1/labels").json()["data"] == ["__name__", "job"]
    r = call(app, "GET", "/api/v1/label/job/values", params={"match[]": 'up{job="b"}'})
    assert r.json()["data"] == ["b"]
    r = call(app, "GET", "/api/v1/label/job/values", params={"limit": "1"})
    assert r.json()["data"] == ["a"] and r.json()["warnings"]
    assert call(app, "GET", "/api/v1/label/bad-name/values").status_code == 400


def test_parse_time_and_duration() -> None:
    assert parse_time("1.5", "t") == 1500
    assert parse_time("2023-11-14T22:13:20Z", "t") == 1_700_000_000_000
    assert parse_time("2023-11-14T23:13:20.123456789+01:00", "t") == 1_700_000_000_123
    assert parse_duration("1m30s", "step") == 90_000
    assert parse_duration("0.25", "step") == 250
    assert parse_duration("1h", "step") == 3_600_000


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_format_value_round_trips_and_uses_exponent_like_prometheus(x: float) -> None:
    text = format_value(x)
    assert float(text) == x
    assert ("e" in text) == (x != 0 and (abs(x) < 1e-6 or abs(x) >= 1e21))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(width=64), max_size=20),
    st.lists(st.integers(-(10**13), 10**13), max_size=20),
    st.sampled_from([1, 1000]),
)
def test_array_formatting_equals_the_per_value_functions(
    values: list[float], stamps: list[int], scale: int
) -> None:
    """The array paths (a fast path for plain decimals, whole-second timestamps)
    write exactly what the per-value functions write."""
    vals = np.array(values, np.float64)
    assert format_values(vals) == [format_value(v) for v in values]
    ts = np.array(stamps[: len(values)], np.int64) * scale
    vals = vals[: len(ts)]
    want = ",".join(
        f'[{format_timestamp(t)},"{format_value(v)}"]'
        for t, v in zip(ts.tolist(), vals.tolist(), strict=True)
    )
    assert format_points(ts, vals) == want


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_parameter_parsers_reject_garbage_cleanly(text: str) -> None:
    for parse in (parse_time, parse_duration):
        try:
            assert isinstance(parse(text, "p"), int)
        except BadInputError as exc:
            assert errors.status_for(exc) == (400, "bad_data")


def test_queries_never_run_on_the_event_loop_however_often_repeated(store: Any) -> None:
    """Regression: a query shape once fast ran on the event loop the next time (where it
    could stall every request for as long as it had become slow)."""
    import threading

    loop_threads: set[int] = set()
    reads_on_loop: list[str] = []

    class Watched:
        def __getattr__(self, name: str) -> Any:
            attr = getattr(store, name)
            if not callable(attr):
                return attr

            def watched(*args: Any, **kwargs: Any) -> Any:
                if threading.get_ident() in loop_threads:
                    reads_on_loop.append(name)
                return attr(*args, **kwargs)

            return watched

    app = make_app(Watched())

    async def main() -> None:
        loop_threads.add(threading.get_ident())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for _ in range(4):
                for path, params in (
                    ("/api/v1/query", {"query": "up", "time": T0 / 1000 + 60}),
                    (
                        "/api/v1/query_range",
                        {"query": "sum(up)", "start": T0 / 1000, "end": T0 / 1000 + 60, "step": 15},
                    ),
                ):
                    r = await client.get(path, params=params)
                    assert r.status_code == 200, r.text

    asyncio.run(main())
    assert reads_on_loop == []
