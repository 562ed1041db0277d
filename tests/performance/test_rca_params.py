"""A stored root cause is fetched and ranked with one set of constants (``rca.root_causes``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from perfintel.analysis.rootcause import RootCauseParams
from perfintel.batch import SampleBatch
from perfintel.model import label_set, metric_name, parse_selector
from perfintel.performance import rca
from perfintel.performance.rca import RootCauseReport
from perfintel.storage.duckdb import DuckDBStore, StoreOptions

MIN = 60_000
HOUR = 60 * MIN
NOW = (int(time.time() * 1000) // HOUR) * HOUR - HOUR  # inside raw retention
ASKED = NOW - 30 * MIN


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStore]:
    """Asked when a fault is injected: a pool fills 15 minutes later and its latency follows a
    minute after; another service's CPU shifted 10 minutes before the asked time (smaller)."""
    s = DuckDBStore(tmp_path / "db", StoreOptions(background=False, wal_fsync=False))
    rng = np.random.default_rng(7)
    ts = NOW - 5 * HOUR + MIN * np.arange(5 * 60)
    pool = 20.0 + rng.normal(0, 1.0, ts.size)
    pool[ts >= ASKED + 15 * MIN] = 50.0
    latency = 0.1 + rng.normal(0, 0.002, ts.size)
    latency[ts >= ASKED + 16 * MIN] += 0.2
    cpu = 5.0 + rng.normal(0, 0.2, ts.size)
    cpu[ts >= ASKED - 10 * MIN] += 3.0
    a = {"service": "a", "instance": "a-0"}
    series = {
        label_set({"__name__": "pool_in_use", **a}): pool,
        label_set({"__name__": "request_latency_seconds", **a}): latency,
        label_set({"__name__": "cpu_usage", "service": "b", "instance": "b-0"}): cpu,
    }
    for ls, v in series.items():
        s.append(SampleBatch.from_arrays(ls, ts, v))
    s.flush(compact=True)
    yield s
    s.close()


def _asked(store: DuckDBStore, params: RootCauseParams = rca.ROOT_CAUSE_PARAMS) -> RootCauseReport:
    """Every series ranked at the asked time: a 30-minute window, a 3-hour baseline."""
    return rca.root_causes(
        store,
        parse_selector('{__name__=~".+"}'),
        ASKED,
        window_ms=30 * MIN,
        baseline_ms=3 * HOUR,
        step_ms=MIN,
        limit=None,
        params=params,
    )


def test_the_fetch_reaches_as_far_as_the_ranking_counts(store: DuckDBStore) -> None:
    # a cause may begin up to the first symptom, here 16 minutes after the asked time: with
    # 20 minutes of symptom_minutes the fetch must reach that far for the pool to be seen
    far = replace(rca.ROOT_CAUSE_PARAMS, symptom_minutes=20.0)
    rep = _asked(store, far)
    assert rep.grid.time(rep.grid.size - 1) >= ASKED + 20 * MIN
    assert metric_name(rep.labels[rep.causes[0].index]) == "pool_in_use"
    # the defaults (10 minutes) see neither: the other service's CPU comes first
    rep = _asked(store)
    assert metric_name(rep.labels[rep.causes[0].index]) == "cpu_usage"


def test_the_fetch_holds_a_whole_baseline_before_the_window_opened_back(
    store: DuckDBStore,
) -> None:
    # with story on, the window may open back by story × its length: the grid starts a whole
    # baseline before that (it started a baseline before the unopened window: 165 of 180 steps)
    for story in (0.0, 0.5):
        params = replace(rca.ROOT_CAUSE_PARAMS, story=story)
        rep = _asked(store, params)
        opened = int(story * 30) * MIN
        assert rep.grid.start_ms <= ASKED - 30 * MIN - opened - 3 * HOUR
