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
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from promql_harness import vm_store

from perfintel.batch import SampleBatch
from perfintel.storage.base import SampleReader
from perfintel.storage.memory import MemoryStore

StoreFactory = Callable[[Iterable[SampleBatch]], SampleReader]


_KINDS = [
    pytest.param(k, marks=[pytest.mark.external] if k == "victoriametrics" else [])
    for k in ("memory", "duckdb", "victoriametrics")
    if os.environ.get("PERFINTEL_PROMQL_STORE", k) == k
]


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
        for batch in batches:
            store.append(batch)
        store.flush(compact=True)
        return store  # type: ignore[no-any-return]

    make.kind = kind  # type: ignore[attr-defined]  # tests that state a backend difference read it
    yield make
    for store in stores:
        store.close()
