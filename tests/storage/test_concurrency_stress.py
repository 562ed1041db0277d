"""Ingest, flush, compaction, tier builds and concurrent queries at once: no
query ever fails with DuckDB's "Resource In Use Error: connection has an
unfinished result from execute()" (once in ~4,000 queries after a bulk load)."""

from __future__ import annotations

import threading
import time
import traceback
from pathlib import Path

import numpy as np
from store_helpers import DAY, HOUR, T0, Clock

from perfintel.batch import SampleBatch
from perfintel.errors import OverloadedError
from perfintel.model import label_set, parse_selector
from perfintel.storage.duckdb import DuckDBStore, StoreOptions

N_SERIES = 1000
NOW = T0 + 3 * DAY


def _load(st: DuckDBStore, start: int, minutes: int) -> None:
    series = [
        label_set({"__name__": "stress", "i": str(i), "mod": str(i % 5)}) for i in range(N_SERIES)
    ]
    ts = start + 60_000 * np.arange(minutes)
    idx = np.repeat(np.arange(N_SERIES, dtype=np.int32), minutes)
    st.append(SampleBatch(series, idx, np.tile(ts, N_SERIES), np.ones(N_SERIES * minutes)))


def test_stats_then_a_sparse_selection_on_the_same_thread(tmp_path: Path) -> None:
    """The cause: ``stats()`` left the thread's cursor holding an unfinished result
    (``fetchone``), and the next read on that thread that registers its series ids
    (a selector matching a sparse set of them) was refused."""
    st = DuckDBStore(tmp_path, StoreOptions(background=False), clock=Clock(NOW))
    _load(st, NOW - 2 * HOUR, 30)
    st.flush()
    st.stats()
    got = st.select(parse_selector('stress{mod="0"}'), NOW - DAY, NOW)  # 200 of 1000 ids
    assert len(got) == 200
    st.close()


def test_ingest_flush_compaction_tiers_and_queries_together(tmp_path: Path) -> None:
    clock = Clock(NOW)
    st = DuckDBStore(
        tmp_path,
        StoreOptions(
            head_max_samples=20_000,
            head_max_age_s=0.05,
            maintenance_interval_s=0.01,
            seal_grace_ms=0,
        ),
        clock=clock,
    )
    _load(st, NOW - 2 * DAY, 60)  # a bulk load of history: blocks to compact and roll up
    errors: list[BaseException] = []
    stop = threading.Event()
    queries = [0]

    def guard(fn: object) -> object:
        def run() -> None:
            try:
                fn()  # type: ignore[operator]
            except BaseException as exc:
                errors.append(exc)
                stop.set()

        return run

    def ingest() -> None:
        k = 0
        while not stop.is_set():
            try:
                _load(st, NOW - 2 * DAY + 60 * 60_000 + k * 60_000, 1)
            except OverloadedError:  # the head is full until a flush catches up: clients retry
                time.sleep(0.01)
                continue
            k += 1

    def maintain() -> None:
        while not stop.is_set():
            st.flush(compact=True)

    def query() -> None:
        sparse, dense = parse_selector('stress{mod="1"}'), parse_selector("stress")
        while not stop.is_set():
            st.stats()
            st.select(sparse, NOW - 3 * DAY, NOW)
            st.select_rollup_columns(dense, NOW - 3 * DAY, NOW, 300_000)
            st.select_rollup_columns(sparse, NOW - 3 * DAY, NOW, 3_600_000)
            st.series([sparse], NOW - 3 * DAY, NOW)
            queries[0] += 4

    threads = [threading.Thread(target=guard(f)) for f in (ingest, maintain, query, query, query)]
    for t in threads:
        t.start()
    # At least 6 s and 400 queries (a loaded CI machine runs fewer per second), at most 60 s.
    began = time.monotonic()
    while not stop.is_set():
        elapsed = time.monotonic() - began
        if elapsed >= 60 or (elapsed >= 6 and queries[0] >= 400):
            break
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join()
    st.close()  # before asserting: a store left open keeps DuckDB threads alive at exit
    assert not errors, "".join(traceback.format_exception(errors[0]))
    assert queries[0] > 100
