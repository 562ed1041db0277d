"""Fuzzing the PromQL entry points through the HTTP API (issue 10: fuzzing).

Hypothesis generates PromQL: expressions from the grammar (selectors with
matchers, functions, aggregations, binary operators, subqueries, offsets, @)
and nasty text (deep nesting of every kind, huge and odd numbers, unicode and
very long label values, random bytes of the PromQL alphabet). Each goes to
``/api/v1/query`` and ``/api/v1/query_range`` of the whole app over a real
DuckDB store. Never a 5xx, never a crash, never slower than the query timeout,
and the process's memory stays bounded. Budget: the file runs in about a
minute (``max_examples``), so it runs in CI on every change.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import psutil
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perfintel.api.app import create_app
from perfintel.batch import SampleBatch
from perfintel.config import load_settings
from perfintel.model import label_set

TIMEOUT_S = 5.0
NOW = 1_790_000_000
RSS_GROWTH_LIMIT = 400 * 1024**2


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data = tmp_path_factory.mktemp("fuzz") / "data"
    settings_ = load_settings(
        overrides={
            "data_dir": data,
            "query": {"timeout": TIMEOUT_S, "max_samples": 2_000_000},
            "anomaly": {"enabled": False},
        },
        env={},
    )
    with TestClient(create_app(settings_, collectors=False)) as c:
        store = c.app.state.store  # type: ignore[attr-defined]
        ts = np.arange((NOW - 3 * 3600) * 1000, NOW * 1000, 15_000)
        for job in ("api", "db"):
            for code in ("200", "500"):
                store.append(
                    SampleBatch.from_arrays(
                        label_set({"__name__": "http_requests_total", "job": job, "code": code}),
                        ts,
                        np.cumsum(np.full(ts.size, 3.0 if code == "200" else 0.1)),
                    )
                )
            for le in ("0.1", "0.5", "+Inf"):
                store.append(
                    SampleBatch.from_arrays(
                        label_set({"__name__": "lat_bucket", "job": job, "le": le}),
                        ts,
                        np.cumsum(np.full(ts.size, {"0.1": 1.0, "0.5": 2.0, "+Inf": 3.0}[le])),
                    )
                )
            store.append(
                SampleBatch.from_arrays(
                    label_set({"__name__": "temp", "job": job, "ünï": "cødé ✓"}),
                    ts,
                    np.sin(ts / 1e6),
                )
            )
        yield c


# -- generators ---------------------------------------------------------------------

_names = st.sampled_from(["http_requests_total", "lat_bucket", "temp", "up", "nothing_here"])
_label_values = st.one_of(
    st.sampled_from(["api", "db", "200", ".*", "a|b", "(", "\\\\", '\\"']),
    st.text(max_size=12),
    st.text(min_size=1, max_size=2).map(lambda s: s * 5000),  # very long values
)


def _quote(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


_matcher = st.builds(
    lambda n, op, v: f"{n}{op}{_quote(v)}",
    st.sampled_from(["job", "code", "le", "__name__", "ünï", "x"]),
    st.sampled_from(["=", "!=", "=~", "!~"]),
    _label_values,
)
_selector = st.builds(
    lambda name, ms: name + ("{" + ",".join(ms) + "}" if ms else ""),
    _names,
    st.lists(_matcher, max_size=3),
)
_duration = st.sampled_from(["1m", "5m", "90s", "1h", "1h30m", "500ms", "0s", "1y", "15"])
_number = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["1e309", "-1e309", "NaN", "Inf", "0x1F", "1_000", "9" * 400, ".5", "5."]),
)
_range_fn = st.sampled_from(
    ["rate", "irate", "increase", "delta", "avg_over_time", "max_over_time", "count_over_time"]
)
_fn = st.sampled_from(["abs", "ceil", "exp", "ln", "sqrt", "sort", "timestamp", "vector", "scalar"])
_agg = st.sampled_from(["sum", "avg", "min", "max", "count", "stddev", "group"])
_binop = st.sampled_from(
    ["+", "-", "*", "/", "%", "^", "==", "!=", ">", "<=", "and", "or", "unless", "> bool", "atan2"]
)


def _extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.builds(lambda a, op, b: f"{a} {op} {b}", inner, _binop, inner),
        st.builds(lambda f, s, d: f"{f}({s}[{d}])", _range_fn, _selector, _duration),
        st.builds(lambda f, e: f"{f}({e})", _fn, inner),
        st.builds(lambda a, e: f"{a}({e})", _agg, inner),
        st.builds(lambda a, e: f"{a} by (job) ({e})", _agg, inner),
        st.builds(lambda k, e: f"topk({k}, {e})", _number, inner),
        st.builds(lambda q, e: f"histogram_quantile({q}, {e})", _number, inner),
        st.builds(lambda e, d: f"max_over_time(({e})[{d}:1m])", inner, _duration),
        st.builds(lambda e, d: f"{e} offset {d}", _selector, _duration),
        st.builds(lambda e: f"{e} @ {NOW}", _selector),
        inner.map(lambda e: f"({e})"),
        inner.map(lambda e: f"-{e}"),
    )


_grammar = st.recursive(st.one_of(_selector, _number), _extend, max_leaves=12)

_nasty = st.one_of(
    st.builds(
        lambda n, a, b: a * n + "1" + b * n, st.integers(1, 20_000), st.just("("), st.just(")")
    ),
    st.builds(lambda n: "abs(" * n + "vector(1)" + ")" * n, st.integers(1, 3000)),
    st.builds(lambda n: "sum(" * n + "up" + ")" * n, st.integers(1, 3000)),
    st.builds(
        lambda n, op: op.join(["1"] * n),
        st.integers(1, 10_000),
        st.sampled_from(["+", " or ", "^", "*"]),
    ),
    st.builds(lambda n: "-" * n + "1", st.integers(1, 10_000)),
    st.builds(lambda n: "up" + "[1m:1m]" * n, st.integers(1, 500)),
    st.builds(lambda n: "{" * n + "}" * n, st.integers(1, 10_000)),
    st.builds(lambda n: "[" * n, st.integers(1, 10_000)),
    st.builds(lambda n: '"' * n, st.integers(1, 5000)),
    st.builds(lambda n: "# comment\n" * n + "up", st.integers(1, 2000)),
    st.text(
        alphabet=st.sampled_from(list("(){}[]\"'`,=~!+-*/%^<>@:.#0123456789aeobfxnuiy \n\\")),
        max_size=300,
    ),
    st.text(max_size=200),  # any unicode
)


# -- the properties -----------------------------------------------------------------


def _check(client: TestClient, query: str) -> None:
    for path, params in (
        ("/api/v1/query", {"query": query, "time": str(NOW)}),
        (
            "/api/v1/query_range",
            {"query": query, "start": str(NOW - 3600), "end": str(NOW), "step": "60"},
        ),
    ):
        t0 = time.perf_counter()
        r = client.post(path, data=params)
        elapsed = time.perf_counter() - t0
        assert r.status_code < 500, (path, query[:200], r.text[:300])
        body = r.json()
        assert body["status"] == ("success" if r.status_code == 200 else "error"), body
        # bounded by the query timeout (plus parsing and HTTP), whatever the text
        assert elapsed < TIMEOUT_S + 2, (path, query[:200], elapsed)


_rss: dict[str, int] = {}


def _baseline() -> None:
    _rss.setdefault("before", psutil.Process().memory_info().rss)


@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(_grammar)
def test_grammar_expressions(client: TestClient, query: str) -> None:
    _baseline()
    _check(client, query)


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(_nasty)
def test_nasty_text(client: TestClient, query: str) -> None:
    _baseline()
    _check(client, query)


def test_memory_stayed_bounded(client: TestClient) -> None:
    """After both fuzzers (this test runs after them): the process grew by less than the
    bound (the deep-nesting requests alone grew it by 2.2 GB before)."""
    _baseline()
    grown = psutil.Process().memory_info().rss - _rss["before"]
    assert grown < RSS_GROWTH_LIMIT, f"RSS grew by {grown / 1024**2:.0f} MiB"
