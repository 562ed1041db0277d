"""Regular histories for the models: the step policy, the source (raw or tier), gaps."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pytest
from fastapi.testclient import TestClient

from perfintel.batch import SampleBatch
from perfintel.errors import BadInputError, QueryLimitError
from perfintel.model import LabelSet, Selector, label_set, parse_selector
from perfintel.performance.history import (
    DAY_MS,
    HOUR_MS,
    MAX_POINTS,
    MINUTE_MS,
    choose_window,
    load_history,
)
from perfintel.storage.base import QueryLimits, SampleReader, SeriesRollup, SeriesSamples

END = (int(time.time() * 1000) // HOUR_MS) * HOUR_MS - HOUR_MS


@pytest.mark.parametrize(
    ("horizon", "step", "history"),
    [
        (MINUTE_MS, MINUTE_MS, 7 * DAY_MS),
        (4 * HOUR_MS, MINUTE_MS, 7 * DAY_MS),
        (6 * HOUR_MS, MINUTE_MS, 7 * DAY_MS),
        (6 * HOUR_MS + MINUTE_MS, 5 * MINUTE_MS, 28 * DAY_MS),
        (3 * DAY_MS, 5 * MINUTE_MS, 28 * DAY_MS),
        (3 * DAY_MS + HOUR_MS, HOUR_MS, 365 * DAY_MS),
        (365 * DAY_MS, HOUR_MS, 365 * DAY_MS),
    ],
)
def test_default_step_and_history_by_horizon(horizon: int, step: int, history: int) -> None:
    w = choose_window(horizon)
    assert (w.step_ms, w.history_ms) == (step, history)
    assert w.history_points <= MAX_POINTS
    assert w.horizon_steps == -(-horizon // step)


def test_overrides_within_limits() -> None:
    w = choose_window(4 * HOUR_MS, step_ms=5 * MINUTE_MS)
    assert (w.step_ms, w.history_ms, w.horizon_steps) == (5 * MINUTE_MS, 7 * DAY_MS, 48)
    w = choose_window(4 * HOUR_MS, history_ms=2 * DAY_MS)
    assert (w.step_ms, w.history_ms) == (MINUTE_MS, 2 * DAY_MS)
    # a default history that would pass MAX_POINTS at a short explicit step is shortened
    w = choose_window(4 * HOUR_MS, step_ms=10_000)
    assert w.history_points == MAX_POINTS
    # an odd history is cut to whole steps
    assert choose_window(30 * DAY_MS, history_ms=10 * DAY_MS + 5).history_ms == 10 * DAY_MS


@pytest.mark.parametrize(
    ("kwargs", "field_name"),
    [
        ({"horizon_ms": 30_000}, "horizon"),
        ({"horizon_ms": 366 * DAY_MS}, "horizon"),
        ({"horizon_ms": HOUR_MS, "step_ms": 2 * HOUR_MS}, "step"),
        ({"horizon_ms": HOUR_MS, "step_ms": 500}, "step"),
        ({"horizon_ms": 300 * DAY_MS, "step_ms": MINUTE_MS}, "step"),
        ({"horizon_ms": HOUR_MS, "history_ms": 400 * DAY_MS}, "history"),
        ({"horizon_ms": HOUR_MS, "history_ms": 30 * DAY_MS}, "history"),  # 43,200 1m steps
        ({"horizon_ms": HOUR_MS, "history_ms": MINUTE_MS}, "history"),
    ],
)
def test_out_of_limits_names_the_field(kwargs: dict[str, int], field_name: str) -> None:
    with pytest.raises(BadInputError, match=f"'{field_name}'"):
        choose_window(**kwargs)


def _append(client: TestClient, labels: dict[str, str], ts: np.ndarray, vals: np.ndarray) -> None:
    store = client.app.state.store  # type: ignore[attr-defined]
    store.append(SampleBatch.from_arrays(label_set(labels), ts, vals))


def test_gaps_become_nan_and_history_starts_where_data_does(client: TestClient) -> None:
    ts = np.arange(END - 2 * DAY_MS, END, 15_000)  # 15 s samples for two days
    vals = (ts // MINUTE_MS % 100).astype(np.float64)
    gap = (ts >= END - DAY_MS) & (ts < END - DAY_MS + 10 * MINUTE_MS)
    _append(client, {"__name__": "g", "k": "a"}, ts[~gap], vals[~gap])
    store = client.app.state.store  # type: ignore[attr-defined]
    w = choose_window(4 * HOUR_MS)
    hist = load_history(store, parse_selector("g"), END, w)
    assert hist.source == "raw" and hist.step_ms == MINUTE_MS
    (s,) = hist.series
    assert s.labels == label_set({"__name__": "g", "k": "a"})
    # the grid is regular, starts at the first minute with data (not 7 days back) and
    # ends with the bucket holding END (empty here: a trailing NaN)
    assert np.all(np.diff(s.timestamps) == MINUTE_MS)
    assert s.timestamps[0] == END - 2 * DAY_MS and s.timestamps[-1] == END == hist.last_ms
    assert np.isnan(s.values[-1])
    missing = np.flatnonzero(np.isnan(s.values[:-1]))
    assert s.timestamps[missing].tolist() == [END - DAY_MS + k * MINUTE_MS for k in range(10)]
    # each bucket is the mean of its four samples (all equal within a minute)
    ok = ~np.isnan(s.values)
    assert np.array_equal(s.values[ok], (s.timestamps[ok] // MINUTE_MS % 100).astype(float))


@dataclass
class RecordingReader:
    """The real store behind the ``SampleReader`` protocol, noting which reads were made."""

    inner: SampleReader
    calls: list[str] = field(default_factory=list)

    def select(
        self, selector: Selector, start_ms: int, end_ms: int, *, limits: QueryLimits | None = None
    ) -> list[SeriesSamples]:
        self.calls.append("select")
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
        self.calls.append(f"select_rollup:{resolution_ms}")
        return self.inner.select_rollup(selector, start_ms, end_ms, resolution_ms, limits=limits)

    def series(
        self, selectors: Sequence[Selector], start_ms: int, end_ms: int, *, limit: int | None = None
    ) -> list[LabelSet]:
        self.calls.append("series")
        return self.inner.series(selectors, start_ms, end_ms, limit=limit)

    def label_names(self, selectors: Sequence[Selector], start_ms: int, end_ms: int) -> list[str]:
        return self.inner.label_names(selectors, start_ms, end_ms)

    def label_values(
        self, name: str, selectors: Sequence[Selector], start_ms: int, end_ms: int
    ) -> list[str]:
        return self.inner.label_values(name, selectors, start_ms, end_ms)


def test_long_horizon_reads_the_hourly_tier(client: TestClient) -> None:
    ts = np.arange(END - 40 * DAY_MS, END, 5 * MINUTE_MS)
    vals = 50 + 10 * np.sin(2 * np.pi * ts / DAY_MS)
    _append(client, {"__name__": "disk_used", "dev": "a"}, ts, vals)
    store = client.app.state.store  # type: ignore[attr-defined]
    store.flush(compact=True)  # build the rollup tiers (raw older than 15 days expires)
    reader = RecordingReader(store)
    hist = load_history(reader, parse_selector("disk_used"), END, choose_window(30 * DAY_MS))
    assert hist.source == f"tier:{HOUR_MS}"
    assert "select" not in reader.calls  # never a raw scan
    assert reader.calls == ["series", f"select_rollup:{HOUR_MS}"]
    (s,) = hist.series
    assert s.timestamps[0] == END - 40 * DAY_MS  # "what exists", not 365 days of NaN
    assert len(s.values) == 40 * 24 + 1 and np.isnan(s.values[-1])
    assert np.nanmax(np.abs(s.values[:-1] - 50)) < 10.0001
    # and through the API: the source field says the same
    r = client.post(
        "/api/v1/performance/predict/metrics",
        json={"selector": "disk_used", "horizon": "30d", "end": END / 1000},
    )
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["source"] == f"tier:{HOUR_MS}" and data["step_seconds"] == 3600
    assert len(data["series"][0]["mean"]) == 30 * 24
    # a 2-day horizon reads the 5-minute tier
    hist = load_history(reader, parse_selector("disk_used"), END, choose_window(2 * DAY_MS))
    assert hist.source == f"tier:{5 * MINUTE_MS}"


def test_too_many_series_is_a_limit_error_before_reading(client: TestClient) -> None:
    store = client.app.state.store  # type: ignore[attr-defined]
    ts = np.array([END - HOUR_MS], dtype=np.int64)
    store.append(
        SampleBatch.concat(
            SampleBatch.from_arrays(label_set({"__name__": "many", "i": str(i)}), ts, np.ones(1))
            for i in range(6)
        )
    )
    reader = RecordingReader(store)
    with pytest.raises(QueryLimitError, match="more than 5 series"):
        load_history(reader, parse_selector("many"), END, choose_window(HOUR_MS), max_series=5)
    assert reader.calls == ["series"]
    assert len(load_history(store, parse_selector("many"), END, choose_window(HOUR_MS)).series) == 6
