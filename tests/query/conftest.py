"""Fixtures of the query tests.

``promql_store_factory`` builds the store the PromQL tests query: every PromQL
test, the Prometheus compatibility suite included, runs against both the
in-memory store, the real DuckDB store (data flushed, rollups built) and a
real VictoriaMetrics (``RemoteStore``, each store in a namespace of its own).
``PERFINTEL_PROMQL_STORE=memory``, ``=duckdb`` or ``=victoriametrics``
narrows a run to one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from promql_harness import vm_store

from perfintel.batch import SampleBatch
from perfintel.model import Selector, is_stale
from perfintel.storage.base import SampleReader
from perfintel.storage.memory import MemoryStore

StoreFactory = Callable[[Iterable[SampleBatch]], SampleReader]


_KINDS = [
    pytest.param(k, marks=[pytest.mark.external] if k == "victoriametrics" else [])
    for k in ("memory", "duckdb", "victoriametrics")
    if os.environ.get("PERFINTEL_PROMQL_STORE", k) == k
]


def _expected_visible(batches: list[SampleBatch]) -> int:
    """Samples VictoriaMetrics keeps of ``batches``: ordinary NaNs are dropped (staleness
    markers kept) and a repeated timestamp of one series is one sample."""
    keys: set[tuple[object, int]] = set()
    for b in batches:
        keep = ~np.isnan(b.values) | is_stale(b.values)
        for i, t in zip(b.series_idx[keep].tolist(), b.timestamps[keep].tolist(), strict=True):
            keys.add((b.series[i], t))
    return len(keys)


def wait_until_visible(store: Any, batches: list[SampleBatch], timeout_s: float = 15.0) -> None:
    """Every test here compares answers over one data set, so it must read the whole of it.
    The store calls VictoriaMetrics' ``/internal/force_flush`` before reading, yet a read
    right after it was seen to miss samples (once in about four full CI runs, VictoriaMetrics
    1.79): wait until every written sample reads back, and fail loudly if it never does."""
    if not batches:
        return
    want = _expected_visible(batches)
    lo = min(int(b.timestamps.min()) for b in batches if len(b))
    hi = max(int(b.timestamps.max()) for b in batches if len(b))
    deadline = time.monotonic() + timeout_s
    while True:
        got = sum(len(s.timestamps) for s in store.select(Selector(), lo, hi))
        if got == want:
            return
        if time.monotonic() > deadline:
            pytest.fail(
                f"VictoriaMetrics shows {got} of {want} written samples after {timeout_s} s"
            )
        time.sleep(0.1)


@pytest.fixture(params=_KINDS)
def promql_store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    stores: list[Any] = []
    kind = request.param

    def make(batches: Iterable[SampleBatch]) -> SampleReader:
        if kind == "victoriametrics":
            store: Any = vm_store(request.getfixturevalue("victoria_metrics"))
        elif kind == "duckdb":
            from perfintel.storage.duckdb import DuckDBStore, StoreOptions
            from perfintel.storage.duckdb.options import Tier

            # The unit tests use fixed 2023 timestamps: keep raw data and rollups
            # forever (else retention would empty the tiers, and every query
            # that fits a tier would quietly fall back to raw samples).
            forever = 100 * 365 * 86_400_000
            tiers = tuple(
                Tier(t.name, t.resolution_ms, forever, t.window_ms) for t in StoreOptions().tiers
            )
            options = StoreOptions(
                background=False, raw_retention_ms=forever, tiers=tiers, wal_fsync=False
            )
            store = DuckDBStore(tmp_path / f"store{len(stores)}", options)
        else:
            store = MemoryStore()
        stores.append(store)
        batches_seen: list[SampleBatch] = []
        for batch in batches:
            store.append(batch)
            batches_seen.append(batch)
        store.flush(compact=True)
        if kind == "victoriametrics":
            wait_until_visible(store, batches_seen)
        return store  # type: ignore[no-any-return]

    make.kind = kind  # type: ignore[attr-defined]  # tests that state a backend difference read it
    yield make
    for store in stores:
        store.close()
