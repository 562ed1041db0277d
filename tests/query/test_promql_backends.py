"""The PromQL compatibility corpus answered from DuckDB and from VictoriaMetrics: same answers.

The same generated data goes into a DuckDB store and into a real
VictoriaMetrics (``RemoteStore``); perfintel's engine answers every query of
``test_promql_compat``'s corpus from each. Answers must be identical, byte for
byte, except where VictoriaMetrics itself keeps different data:

* ``odd_values`` holds ordinary NaN samples, which VictoriaMetrics drops on
  ingest (NaN is "no sample" there; staleness markers are kept). A query that
  reads ``odd_values`` then sees one sample fewer per NaN: ``count_over_time``
  is lower and ``sum_over_time`` is a number where DuckDB's is NaN.

So the whole corpus is compared with a second DuckDB store holding the data
as VictoriaMetrics keeps it (NaN samples left out): every answer must be
byte-identical. The queries that differ from the first DuckDB store are
counted and printed; each of them reads ``odd_values``.

Run: ``.venv/bin/python -m pytest tests/query/test_promql_backends.py -s``
"""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from promql_harness import (
    AppServer,
    RawSeries,
    bit_identical,
    compare,
    dataset_base,
    generate_dataset,
    vm_store,
)
from promql_harness import to_batches as batches_of
from test_promql_compat import _corpus, _lookback_edges, _run

from perfintel.api import errors
from perfintel.api.prometheus import router
from perfintel.storage.duckdb import DuckDBStore, StoreOptions
from perfintel.storage.duckdb.options import Tier

pytestmark = pytest.mark.external

NAN_SERIES = "odd_values"  # the only series with ordinary NaN samples


def _app(store: Any) -> FastAPI:
    app = FastAPI()
    errors.install(app)
    app.include_router(router)
    app.state.store = store
    return app


def _duckdb(path: Any) -> DuckDBStore:
    forever = 100 * 365 * 86_400_000
    tiers = tuple(Tier(t.name, t.resolution_ms, forever, t.window_ms) for t in StoreOptions().tiers)
    return DuckDBStore(
        path, StoreOptions(background=False, raw_retention_ms=forever, tiers=tiers, wal_fsync=False)
    )


def _without_nan(series: list[RawSeries]) -> list[RawSeries]:
    return [
        RawSeries(s.labels, s.timestamps[~np.isnan(s.values)], s.values[~np.isnan(s.values)])
        for s in series
    ]


def test_duckdb_and_victoriametrics_answer_the_corpus_alike(
    victoria_metrics: str, tmp_path: Any
) -> None:
    base = dataset_base()
    series = generate_dataset(base)
    duck, kept, vm = (
        _duckdb(tmp_path / "duck"),
        _duckdb(tmp_path / "kept"),
        vm_store(victoria_metrics),
    )
    for store, data in ((duck, series), (kept, _without_nan(series)), (vm, series)):
        for b in batches_of(data):
            store.append(b)
        store.flush(compact=True)
    corpus = _corpus(base) + _lookback_edges(series)
    differ: list[tuple[str, list[str]]] = []
    by_nan: list[str] = []
    same_points = total_points = 0
    with (
        AppServer(_app(duck)) as d,
        AppServer(_app(kept)) as k,
        AppServer(_app(vm)) as v,
        httpx.Client(base_url=d.url, timeout=60) as on_duck,
        httpx.Client(base_url=k.url, timeout=60) as on_kept,
        httpx.Client(base_url=v.url, timeout=60) as on_vm,
    ):
        for kind, query, params in corpus:
            got = _run(on_vm, kind, query, params)
            want = _run(on_kept, kind, query, params)
            diffs = compare(got, want, rel=0.0, ordered=query.startswith("sort"))
            s, t = bit_identical(got, want)
            same_points, total_points = same_points + s, total_points + t
            if diffs:
                differ.append((query, diffs))
            if compare(got, _run(on_duck, kind, query, params), rel=0.0):
                by_nan.append(query)
    print(
        f"\nDuckDB vs VictoriaMetrics: {len(corpus) - len(differ)}/{len(corpus)} queries identical "
        f"(NaN samples left out of DuckDB too), {same_points}/{total_points} points "
        f"byte-identical; with the NaN samples in DuckDB {len(by_nan)} queries differ: {by_nan}"
    )
    for q, diffs in differ:
        print(f"- {q}: {diffs[:3]}")
    duck.close()
    kept.close()
    vm.close()
    assert differ == []
    assert same_points == total_points > 100_000
    assert all(NAN_SERIES in q for q in by_nan)
