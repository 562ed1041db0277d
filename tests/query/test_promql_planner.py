"""The rollup planner: when it applies, and how far its answers are from the raw ones.

The tolerances asserted here are the ones documented in
``perfintel.query.promql.planner``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from perfintel.batch import SampleBatch
from perfintel.model import LabelSet, Selector
from perfintel.query import QuerySettings
from perfintel.query.promql import Engine, QueryResult, planner
from perfintel.storage.base import (
    QueryLimits,
    RollupColumns,
    SampleReader,
    SeriesRollup,
    SeriesSamples,
)

HOUR = 3_600_000
BASE = 1_700_000_000_000 // HOUR * HOUR
SPAN = 12 * HOUR


class CountingReader:
    """A ``SampleReader`` that records which read path the engine used."""

    def __init__(self, inner: SampleReader) -> None:
        self.inner = inner
        self.rollup_calls = 0
        self.raw_calls = 0

    def select(
        self, selector: Selector, start_ms: int, end_ms: int, *, limits: QueryLimits | None = None
    ) -> list[SeriesSamples]:
        self.raw_calls += 1
        return self.inner.select(selector, start_ms, end_ms, limits=limits)

    def select_rollup(
        self,
        selector: Selector,
        start_ms: int,
        end_ms: int,
        resolution_ms: int,
        *,
        limits: QueryLimits | None = None,
    ) -> list[SeriesRollup] | None:
        self.rollup_calls += 1
        return self.inner.select_rollup(selector, start_ms, end_ms, resolution_ms, limits=limits)

    def series(
        self, selectors: Sequence[Selector], start_ms: int, end_ms: int, *, limit: int | None = None
    ) -> list[LabelSet]:
        return self.inner.series(selectors, start_ms, end_ms, limit=limit)

    def label_names(self, selectors: Sequence[Selector], start_ms: int, end_ms: int) -> list[str]:
        return self.inner.label_names(selectors, start_ms, end_ms)

    def label_values(
        self, name: str, selectors: Sequence[Selector], start_ms: int, end_ms: int
    ) -> list[str]:
        return self.inner.label_values(name, selectors, start_ms, end_ms)


@pytest.fixture
def reader(promql_store_factory: Any) -> CountingReader:
    rng = np.random.default_rng(3)
    ts = np.arange(BASE, BASE + SPAN, 10_000, dtype=np.int64)
    batches = []
    for i in range(4):
        counter = np.cumsum(rng.gamma(2.0, 2.0 + i, len(ts)))
        gauge = 100 + np.cumsum(rng.normal(0, 0.2, len(ts)))
        batches.append(SampleBatch.from_arrays({"__name__": "req_total", "i": str(i)}, ts, counter))
        batches.append(SampleBatch.from_arrays({"__name__": "temp", "i": str(i)}, ts, gauge))
    return CountingReader(promql_store_factory(batches))


def _run(reader: CountingReader, query: str, rollups: bool, step: int = 300_000) -> QueryResult:
    engine = Engine(reader, QuerySettings(use_rollups=rollups))
    return engine.range(query, BASE + 2 * HOUR, BASE + SPAN - HOUR, step)


def _max_rel(a: QueryResult, b: QueryResult) -> float:
    assert [s.labels for s in a.series] == [s.labels for s in b.series]
    worst = 0.0
    for x, y in zip(a.series, b.series, strict=True):
        assert x.timestamps.tolist() == y.timestamps.tolist()
        worst = max(
            worst, float(np.max(np.abs(x.values - y.values) / np.maximum(np.abs(x.values), 1e-12)))
        )
    return worst


@pytest.mark.parametrize(
    ("query", "tolerance"),
    [
        ("count_over_time(temp[1h])", 1 / 360 + 1e-9),
        ("sum_over_time(temp[1h])", 0.005),
        ("avg_over_time(temp[1h])", 0.005),
        ("min_over_time(temp[1h])", 0.01),
        ("max_over_time(temp[1h])", 0.01),
        ("last_over_time(temp[1h])", 0.01),
        ("rate(req_total[1h])", 0.02),
        ("increase(req_total[30m])", 0.04),
    ],
)
def test_rollup_answers_within_documented_tolerance(
    reader: CountingReader, query: str, tolerance: float
) -> None:
    raw = _run(reader, query, rollups=False)
    assert reader.rollup_calls == 0
    planned = _run(reader, query, rollups=True)
    assert reader.rollup_calls == 1
    assert _max_rel(planned, raw) <= tolerance


@pytest.mark.parametrize(
    ("query", "step"),
    [
        ("avg_over_time(temp[7m])", 300_000),  # range not a multiple of a tier
        ("avg_over_time(temp[1h])", 60_000),  # step finer than every tier
        ("rate(temp[1h])", 300_000),  # not a counter
        ("stddev_over_time(temp[1h])", 300_000),  # no rollup form
        ("max_over_time(temp[1h] @ end())", 300_000),  # @ pins the window
    ],
)
def test_rollups_not_used_when_they_do_not_fit(
    reader: CountingReader, query: str, step: int
) -> None:
    raw = _run(reader, query, rollups=False, step=step)
    planned = _run(reader, query, rollups=True, step=step)
    assert _max_rel(planned, raw) == 0.0


def test_instant_queries_never_use_rollups(reader: CountingReader) -> None:
    Engine(reader, QuerySettings()).instant("avg_over_time(temp[1h])", BASE + 6 * HOUR)
    assert reader.rollup_calls == 0


def test_windows_keep_to_their_own_series(promql_store_factory: Any) -> None:
    """A NaN or a huge series costs the series after it (in label order) nothing."""
    # off the step grid, so raw windows and bucket windows hold the same samples
    ts = np.arange(BASE + 3_000, BASE + SPAN, 10_000, dtype=np.int64)
    rng = np.random.default_rng(11)
    huge = 1e15 + np.cumsum(rng.integers(0, 10**6, len(ts))).astype(np.float64)
    poisoned = np.round(rng.normal(10, 1, len(ts)), 2)
    poisoned[1200] = np.nan  # 3 h 20 min in: inside the queried range
    small = np.round(rng.normal(0.5, 0.01, len(ts)), 4)
    batches = [
        SampleBatch.from_arrays({"__name__": "x", "i": "1"}, ts, huge),
        SampleBatch.from_arrays({"__name__": "x", "i": "2"}, ts, poisoned),
        SampleBatch.from_arrays({"__name__": "x", "i": "3"}, ts, small),
    ]
    reader = CountingReader(promql_store_factory(batches))
    # 5-minute windows at a 5-minute step: each window is one bucket.
    raw = _run(reader, "avg_over_time(x[5m])", rollups=False)
    planned = _run(reader, "avg_over_time(x[5m])", rollups=True)
    assert reader.rollup_calls == 1
    by_labels = {dict(s.labels)["i"]: s.values for s in planned.series}
    for s in raw.series:
        got = by_labels[dict(s.labels)["i"]]
        if dict(s.labels)["i"] == "2":
            # only the window holding the NaN; VictoriaMetrics drops NaN samples on ingest
            dropped = promql_store_factory.kind == "victoriametrics"
            assert np.isnan(got).sum() == (0 if dropped else 1)
            got, want = got[~np.isnan(got)], s.values[~np.isnan(s.values)]
        else:
            want = s.values
        np.testing.assert_allclose(got, want, rtol=1e-14)


@pytest.mark.parametrize("window", ["1h", "5h"])  # summed in time order; by prefix sums
def test_counter_resets_are_corrected_within_their_own_series(
    promql_store_factory: Any, window: str
) -> None:
    """``increase`` from rollups corrects resets series by series: a huge counter with
    resets before a small one (in label order) changes the small one's answer not a bit."""
    ts = np.arange(BASE + 3_000, BASE + SPAN, 10_000, dtype=np.int64)
    rng = np.random.default_rng(4)

    def counter(level: float, scale: float) -> np.ndarray:
        c = level + np.cumsum(rng.random(len(ts)) * scale)  # e.g. CPU seconds
        for at in (700, 2100, 3300):  # resets, some inside the queried windows
            c[at:] -= c[at] - rng.random()
        return c

    huge = SampleBatch.from_arrays({"__name__": "c_total", "i": "1"}, ts, counter(3e17, 1e12))
    small = SampleBatch.from_arrays({"__name__": "c_total", "i": "2"}, ts, counter(0.0, 0.3))
    query = f"increase(c_total[{window}])"
    alone = _run(CountingReader(promql_store_factory([small])), query, rollups=True)
    reader = CountingReader(promql_store_factory([huge, small]))
    beside = _run(reader, query, rollups=True)
    assert reader.rollup_calls == 1
    [want] = alone.series
    got = next(s for s in beside.series if dict(s.labels)["i"] == "2")
    assert got.values.tobytes() == want.values.tobytes()


_SPECIALS = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1e300, -1e300, 2.5])


@pytest.mark.parametrize("seed", range(6))
def test_dense_grid_and_sorted_rows_give_the_same_windows(seed: int) -> None:
    """Both ways of evaluating rollup windows agree to the bit (NaN, ±inf, -0.0 included)."""
    rng = np.random.default_rng(seed)
    res = 300_000
    for _ in range(40):
        n, nb = int(rng.integers(1, 10)), int(rng.integers(1, 50))
        series, starts = [], []
        for i in range(n):
            keep = rng.random(nb) < rng.uniform(0.2, 1.0)
            keep[rng.integers(0, nb)] = True
            series.append(np.full(int(keep.sum()), i))
            starts.append(BASE + res * np.flatnonzero(keep))
        rows = len(np.concatenate(starts))

        def column(rows: int = rows) -> np.ndarray:
            v = rng.normal(0, 100, rows)
            odd = rng.random(rows) < 0.2
            v[odd] = rng.choice(_SPECIALS, int(odd.sum()))
            return v

        shuffle = rng.permutation(rows)
        cols = RollupColumns(
            [(("i", f"{i:02d}"),) for i in range(n)],
            res,
            np.concatenate(series)[shuffle],
            np.concatenate(starts)[shuffle],
            column()[shuffle],
            column()[shuffle],
            column()[shuffle],
            rng.integers(1, 30, rows)[shuffle],
            column()[shuffle],
        )
        k = int(rng.choice([1, 2, 12, 40]))  # 40: prefix sums
        step = res * int(rng.choice([1, 3]))
        ends = np.arange(BASE + res * int(rng.integers(-3, 8)), BASE + res * (nb + 4), step)
        if len(ends) < 2:
            continue
        for name in ("avg_over_time", "sum_over_time", "count_over_time", "last_over_time"):
            for extreme in ("min_over_time", "max_over_time"):
                name = extreme if rng.random() < 0.3 else name
            with np.errstate(all="ignore"):
                dense = planner._evaluate_dense(name, cols, ends, k * res, res)
                rows_way = planner._evaluate_rows(name, cols.in_order(), ends, k * res, res)
            assert dense is not None
            assert np.array_equal(dense[1], rows_way[1])
            a, b = dense[0][dense[1]], rows_way[0][rows_way[1]]
            assert np.array_equal(a, b, equal_nan=True)
            assert np.array_equal(np.signbit(a) & ~np.isnan(a), np.signbit(b) & ~np.isnan(b))
