"""The rollup planner: when it applies, and how far its answers are from the raw ones.

The tolerances asserted here are the ones documented in
``perfintel.query.promql.planner``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from perfintel.ingest.batch import SampleBatch
from perfintel.model import LabelSet, Selector
from perfintel.query import QuerySettings
from perfintel.query.promql import Engine, QueryResult
from perfintel.storage.base import QueryLimits, SampleReader, SeriesRollup, SeriesSamples

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
