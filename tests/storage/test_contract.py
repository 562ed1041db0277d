"""The storage contract, run against every Store implementation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from perfintel.batch import SampleBatch
from perfintel.errors import QueryLimitError
from perfintel.model import STALE_NAN, is_stale, label_set, parse_selector
from perfintel.storage.base import QueryLimits, Store
from perfintel.storage.duckdb import DuckDBStore, StoreOptions
from perfintel.storage.memory import MemoryStore
from perfintel.storage.victoriametrics import RemoteStore

T0 = 1_700_000_000_000 - 1_700_000_000_000 % 86_400_000  # midnight, so windows align


@pytest.fixture(
    params=["memory", "duckdb", pytest.param("victoriametrics", marks=pytest.mark.external)]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "victoriametrics":
        yield request.getfixturevalue("vm_store")  # a real server; this test's series only
        return
    st = DuckDBStore(
        tmp_path / "db", StoreOptions(background=False), clock=lambda: T0 / 1000 + 10 * 86400
    )
    yield st
    st.close()


def _flush(store: Store) -> None:
    store.flush(compact=True)


def _remote(store: Store) -> bool:
    return isinstance(store, RemoteStore)


def _as_vm_keeps(vals: np.ndarray) -> np.ndarray:
    """What VictoriaMetrics reads back: ordinary NaNs dropped (kept: staleness markers), -0 as 0."""
    keep = ~np.isnan(vals) | is_stale(vals)
    out = vals[keep].copy()
    out[out == 0] = 0.0
    return out


def _same_values(store: Store, got: np.ndarray, wrote: np.ndarray) -> None:
    """Bit-exact on the embedded stores; on VictoriaMetrics specials bit-exact and numbers to
    its ~12 significant decimal digits (its decimal encoding; see the RemoteStore docs)."""
    if not _remote(store):
        assert np.array_equal(got.view(np.uint64), wrote.view(np.uint64))
        return
    want = _as_vm_keeps(wrote)
    special = ~np.isfinite(want)
    assert np.array_equal(got[special].view(np.uint64), want[special].view(np.uint64))
    assert np.allclose(got[~special], want[~special], rtol=1e-11, atol=0)
    assert not np.signbit(got[want == 0]).any()


def batch(name: str, ts: np.ndarray, vals: np.ndarray, **labels: str) -> SampleBatch:
    return SampleBatch.from_arrays(label_set({"__name__": name, **labels}), ts, vals)


@pytest.mark.parametrize("flush", [False, True])
def test_roundtrip_with_special_values(store: Store, flush: bool) -> None:
    ts = T0 + 10_000 * np.arange(100)
    vals = np.linspace(0, 1, 100)
    vals[3] = np.nan
    vals[4] = np.inf
    vals[5] = -np.inf
    vals[6] = STALE_NAN
    store.append(batch("m", ts, vals, job="a"))
    if flush:
        _flush(store)
    [s] = store.select(parse_selector("m"), int(ts[0]), int(ts[-1]))
    kept = ts[~np.isnan(vals) | is_stale(vals)] if _remote(store) else ts
    assert np.array_equal(s.timestamps, kept)
    _same_values(store, s.values, vals)  # bit-exact, stale marker too


@pytest.mark.parametrize("flush", [False, True])
def test_negative_zero_survives_among_decimals(store: Store, flush: bool) -> None:
    ts = T0 + 10_000 * np.arange(6)
    vals = np.array([0.5, -0.0, 1.25, 0.0, -2.75, 3.0])  # decimals: the compact encoding
    store.append(batch("m", ts, vals))
    if flush:
        _flush(store)
    [s] = store.select(parse_selector("m"), int(ts[0]), int(ts[-1]))
    _same_values(store, s.values, vals)  # VictoriaMetrics: -0 reads back as 0


def test_out_of_order_and_duplicates_last_write_wins(store: Store) -> None:
    ts = T0 + 10_000 * np.arange(10)
    store.append(batch("m", ts[::-1], np.arange(10.0)))  # reversed order
    _flush(store)
    store.append(batch("m", ts[[2, 5]], np.array([100.0, 200.0])))  # overwrite two, after a flush
    store.append(batch("m", ts[[5]], np.array([300.0])))  # and one of them again
    [s] = store.select(parse_selector("m"), int(ts[0]), int(ts[-1]))
    assert np.array_equal(s.timestamps, ts)
    expected = np.arange(10.0)[::-1].copy()
    expected[2], expected[5] = 100.0, 300.0
    assert np.array_equal(s.values, expected)
    _flush(store)
    [s] = store.select(parse_selector("m"), int(ts[0]), int(ts[-1]))
    assert np.array_equal(s.values, expected)


def test_rewritten_timestamp_keeps_one_sample(store: Store) -> None:
    """Embedded stores: the last write wins. VictoriaMetrics keeps every write of a timestamp;
    the remote store then reads the largest value (VictoriaMetrics' own dedup rule)."""
    ts = T0 + 10_000 * np.arange(3)
    store.append(batch("m", ts, np.array([5.0, 5.0, 5.0])))
    _flush(store)
    store.append(batch("m", ts[[0, 1]], np.array([1.0, 9.0])))  # a smaller and a larger one
    [s] = store.select(parse_selector("m"), int(ts[0]), int(ts[-1]))
    assert np.array_equal(s.timestamps, ts)
    assert s.values.tolist() == ([5.0, 9.0, 5.0] if _remote(store) else [1.0, 9.0, 5.0])


def test_matchers_all_four_kinds(store: Store) -> None:
    ts = T0 + np.arange(3) * 1000
    for name, job in [
        ("http_requests", "api"),
        ("http_errors", "x"),
        ("cpu", "api"),
        ("http_latency", ""),
    ]:
        labels = {"job": job} if job else {}
        store.append(batch(name, ts, np.ones(3), **labels))
    _flush(store)

    def names(sel: str) -> list[str]:
        return [
            dict(s.labels)["__name__"] for s in store.select(parse_selector(sel), T0, T0 + 10_000)
        ]

    assert names('{__name__=~"http_.*",job!="x"}') == ["http_latency", "http_requests"]
    assert names('{__name__!~"http_.*",__name__=~".+"}') == ["cpu"]
    assert names('{job="api"}') == ["cpu", "http_requests"]
    assert names('{__name__=~"http_.*",job=""}') == ["http_latency"]
    assert names('{__name__=~"h.*",job=~"a.*|x"}') == ["http_errors", "http_requests"]
    assert store.label_values("job", [], T0, T0 + 10_000) == ["api", "x"]
    assert "job" in store.label_names([parse_selector("cpu")], T0, T0 + 10_000)
    assert len(store.series([parse_selector('{__name__=~".+"}')], T0, T0 + 10_000)) == 4


def test_time_range_is_inclusive_and_filters(store: Store) -> None:
    ts = T0 + 1000 * np.arange(10)
    store.append(batch("m", ts, np.arange(10.0)))
    _flush(store)
    [s] = store.select(parse_selector("m"), int(ts[2]), int(ts[5]))
    assert s.values.tolist() == [2.0, 3.0, 4.0, 5.0]
    assert store.select(parse_selector("m"), int(ts[-1]) + 1, int(ts[-1]) + 10) == []


def test_rollups_match_raw(store: Store) -> None:
    rng = np.random.default_rng(1)
    ts = T0 + 10_000 * np.arange(3 * 8640)  # three days at 10 s
    vals = np.round(rng.normal(50, 10, len(ts)), 2)
    store.append(batch("g", ts, vals, instance="a"))
    _flush(store)
    res = 300_000
    rolled = store.select_rollup(parse_selector("g"), int(ts[0]), int(ts[-1]), res)
    assert rolled is not None
    [r] = rolled
    assert r.resolution_ms == res
    buckets = (ts - ts % res).reshape(-1, 30)
    v = vals.reshape(-1, 30)
    assert np.array_equal(r.timestamps, buckets[:, 0])
    assert np.allclose(r.sum, v.sum(axis=1), rtol=1e-12)
    assert np.array_equal(r.min, v.min(axis=1))
    assert np.array_equal(r.max, v.max(axis=1))
    assert np.array_equal(r.count, np.full(len(r.count), 30))
    assert np.array_equal(r.last, v[:, -1])
    hourly = store.select_rollup(parse_selector("g"), int(ts[0]), int(ts[-1]), 3_600_000)
    assert hourly is not None
    assert np.allclose(hourly[0].sum, vals.reshape(-1, 360).sum(axis=1), rtol=1e-12)
    assert store.select_rollup(parse_selector("g"), int(ts[0]), int(ts[-1]), 60_000) is None


def test_limits(store: Store) -> None:
    ts = T0 + np.arange(100) * 1000
    for i in range(5):
        store.append(batch("m", ts, np.ones(100), i=str(i)))
    with pytest.raises(QueryLimitError, match="max_series"):
        store.select(parse_selector("m"), T0, T0 + 10**6, limits=QueryLimits(max_series=3))
    with pytest.raises(QueryLimitError, match="max_samples"):
        store.select(parse_selector("m"), T0, T0 + 10**6, limits=QueryLimits(max_samples=250))
