"""DuckDB store specifics: the write-ahead log, tiers, retention, compaction (injected clock)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from store_helpers import DAY, T0, Clock, open_store

from perfintel.batch import SampleBatch
from perfintel.model import label_set, parse_selector
from perfintel.storage.base import ROLLUP_AGGREGATES, RollupColumns
from perfintel.storage.duckdb import DuckDBStore, StoreOptions
from perfintel.storage.duckdb.head import Head
from perfintel.storage.samples import rollup


def gauge(ts: np.ndarray, vals: np.ndarray, **labels: str) -> SampleBatch:
    return SampleBatch.from_arrays(label_set({"__name__": "g", **labels}), ts, vals)


def test_unflushed_samples_survive_reopen_through_the_wal(tmp_path: Path) -> None:
    clock = Clock(T0 + DAY)
    st = open_store(tmp_path, clock)
    ts = T0 + 1000 * np.arange(50)
    st.append(gauge(ts, np.arange(50.0), a="1"))
    st.append(gauge(ts[:5], np.full(5, 7.0), a="2"))
    # No flush, no close: simulate a crash by dropping the object without closing.
    st.wal.close()
    st._db.close()
    st2 = open_store(tmp_path, clock)
    got = {
        dict(s.labels)["a"]: s.values.tolist()
        for s in st2.select(parse_selector("g"), T0, T0 + DAY)
    }
    assert got == {"1": list(np.arange(50.0)), "2": [7.0] * 5}
    st2.close()


def test_torn_wal_tail_is_ignored(tmp_path: Path) -> None:
    clock = Clock(T0 + DAY)
    st = open_store(tmp_path, clock)
    st.append(gauge(T0 + np.arange(3), np.ones(3)))
    seg = st.wal.segments()[-1]
    st.wal.close()
    st._db.close()
    with open(seg, "ab") as f:
        f.write(b"\x10\x00\x00\x00garbage")  # a record header promising more than is there
    st2 = open_store(tmp_path, clock)
    [s] = st2.select(parse_selector("g"), T0, T0 + 10)
    assert s.values.tolist() == [1.0, 1.0, 1.0]
    st2.append(gauge(T0 + np.array([10]), np.array([2.0])))  # the log still appends cleanly
    st2.close()
    st3 = open_store(tmp_path, clock)
    assert st3.select(parse_selector("g"), T0, T0 + 10)[0].values.tolist() == [1.0, 1.0, 1.0, 2.0]
    st3.close()


def test_flushed_data_and_rollups_survive_restart(tmp_path: Path) -> None:
    clock = Clock(T0 + 3 * DAY)
    st = open_store(tmp_path, clock)
    ts = T0 + 10_000 * np.arange(8640)
    st.append(gauge(ts, np.arange(8640.0)))
    st.flush(compact=True)
    st.close()
    st = open_store(tmp_path, clock)
    assert st.select(parse_selector("g"), T0, T0 + DAY)[0].values.sum() == np.arange(8640.0).sum()
    [r] = st.select_rollup(parse_selector("g"), T0, T0 + DAY - 1, 3_600_000) or []
    assert len(r.timestamps) == 24 and r.count.sum() == 8640
    st.close()


def test_retention_per_tier(tmp_path: Path) -> None:
    clock = Clock(T0 + DAY)
    st = open_store(tmp_path, clock)
    ts = T0 + 60_000 * np.arange(1440)  # one day at 1 min
    st.append(gauge(ts, np.ones(1440)))
    st.flush(compact=True)
    assert st.stats().tiers["raw"] == 1440
    clock.ms = T0 + 20 * DAY  # past raw retention (15 d), inside the 5m tier's (90 d)
    st.maintain()
    assert st.stats().tiers["raw"] == 0
    assert st.select(parse_selector("g"), T0, T0 + DAY) == []
    [r] = st.select_rollup(parse_selector("g"), T0, T0 + DAY - 1, 300_000) or []
    assert r.count.sum() == 1440  # still answered from the tier
    clock.ms = T0 + 100 * DAY  # past the 5m tier's retention, inside the 1h tier's
    st.maintain()
    assert st.stats().tiers["5m"] == 0
    assert st.stats().tiers["1h"] == 24
    st.close()


def test_sealed_windows_get_rollups_only_after_grace(tmp_path: Path) -> None:
    clock = Clock(
        T0 + 2 * 3_600_000 + 30 * 60_000
    )  # 02:30, block 00:00-02:00 ended, grace 1h not over
    st = open_store(tmp_path, clock, head_max_age_s=0.0)
    ts = T0 + 10_000 * np.arange(720)  # 00:00-02:00
    st.append(gauge(ts, np.ones(720)))
    st.maintain()
    assert st.stats().tiers["5m"] == 0
    clock.ms = T0 + 3 * 3_600_000 + 1  # 03:00: sealed, flushed, but it is the newest data
    st.maintain()
    assert st.stats().tiers["raw"] == 720
    assert st.stats().tiers["5m"] == 0  # a backfill may still be filling it
    clock.ms = T0 + 4 * 3_600_000 + 2  # an hour without newer data: build it
    st.maintain()
    assert st.stats().tiers["5m"] == 24
    st.close()


def test_live_ingest_rolls_up_blocks_behind_the_newest(tmp_path: Path) -> None:
    clock = Clock(T0 + 3 * 3_600_000 + 1)  # 03:00
    st = open_store(tmp_path, clock, head_max_age_s=0.0)
    ts = T0 + 10_000 * np.arange(3 * 360)  # 00:00-03:00, the newest in the 02:00 block
    st.append(gauge(ts, np.ones(len(ts))))
    st.maintain()  # flushes the complete block, keeps 02:00-03:00 in the head
    clock.ms += 3_600_000  # 04:00: the 00:00 block is sealed and behind the newest flush
    st.append(gauge(T0 + 3 * 3_600_000 + 10_000 * np.arange(360), np.ones(360)))
    st.maintain()
    assert st.stats().tiers["5m"] >= 24
    st.close()


def test_late_data_rebuilds_rollups(tmp_path: Path) -> None:
    clock = Clock(T0 + 2 * DAY)
    st = open_store(tmp_path, clock)
    ts = T0 + 60_000 * np.arange(1440)
    st.append(gauge(ts, np.ones(1440)))
    st.flush(compact=True)
    st.append(gauge(ts[:5], np.full(5, 11.0)))  # overwrite five samples of a rolled-up window
    st.flush(compact=True)
    [r] = st.select_rollup(parse_selector("g"), T0, T0 + DAY - 1, 300_000) or []
    assert r.sum[0] == 55.0 and r.count[0] == 5
    assert r.sum.sum() == 1440 + 50
    st.close()


def test_compaction_merges_chunks_of_a_window(tmp_path: Path) -> None:
    clock = Clock(T0 + DAY)
    st = open_store(tmp_path, clock)
    for i in range(10):
        st.append(gauge(T0 + 1000 * np.arange(i * 10, i * 10 + 10), np.arange(10.0)))
        st.flush()
    assert st._db.execute("SELECT count(*) FROM chunks").fetchone() == (10,)
    st.flush(compact=True)
    assert st._db.execute("SELECT count(*) FROM chunks").fetchone() == (1,)
    assert len(st.select(parse_selector("g"), T0, T0 + DAY)[0].values) == 100
    st.close()


def test_background_thread_flushes(tmp_path: Path) -> None:
    import time

    st = DuckDBStore(tmp_path, StoreOptions(head_max_samples=100, maintenance_interval_s=0.05))
    recent = int(time.time() * 1000) - DAY  # real clock here: inside raw retention
    st.append(gauge(recent + np.arange(1000), np.ones(1000)))
    deadline = time.monotonic() + 10
    while st.stats().tiers["raw"] < 1000 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert st.stats().tiers["raw"] == 1000
    assert st.head.samples == 0
    st.close()


def test_samples_being_flushed_stay_readable(tmp_path: Path) -> None:
    clock = Clock(T0 + DAY)
    st = open_store(tmp_path, clock)
    st.append(gauge(T0 + np.arange(5), np.arange(5.0)))
    st.head.take()  # what a flush does first; the database has nothing yet
    assert st.select(parse_selector("g"), T0, T0 + 10)[0].values.tolist() == [0, 1, 2, 3, 4]
    st.head.release()
    st.close()


class _FlushesOnFirstRead(Head):
    """A head whose first read lets a whole flush run first: the interleaving of a
    query with the maintenance thread that once hid a flush's samples from it."""

    def __init__(self, flush: Callable[[], object]) -> None:
        super().__init__()
        self.flush: Callable[[], object] | None = flush

    def read(self, sids: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        flush, self.flush = self.flush, None
        if flush is not None:
            flush()
        return super().read(sids)


def test_a_flush_between_a_querys_database_and_head_reads_hides_nothing(tmp_path: Path) -> None:
    """A query reads the database and the head; a flush that commits and releases
    the head between the two must not leave its samples in neither (kill -9
    fault test: right after a restart, replayed samples were missing from the
    first query while the maintenance thread flushed them)."""
    clock = Clock(T0 + DAY)
    st = open_store(tmp_path, clock)
    st.append(gauge(T0 + np.arange(5), np.arange(5.0)))
    st.flush()
    st.head = _FlushesOnFirstRead(st.flush)
    st.append(gauge(T0 + 5 + np.arange(5), np.arange(5.0, 10.0)))
    [got] = st.select(parse_selector("g"), T0, T0 + 10)
    assert got.values.tolist() == list(range(10))
    assert st.head.flush is None and st.head.samples == 0  # the flush did run inside the query
    [again] = st.select(parse_selector("g"), T0, T0 + 10)
    assert again.values.tolist() == list(range(10))
    st.close()


def test_block_cache_is_invalidated_by_writes(tmp_path: Path) -> None:
    clock = Clock(T0 + 3 * DAY)
    st = open_store(tmp_path, clock)
    ts = T0 + 60_000 * np.arange(1440)
    st.append(gauge(ts, np.ones(1440)))
    st.flush(compact=True)
    for _ in range(2):  # second round is served from the cache
        assert st.select(parse_selector("g"), T0, T0 + DAY)[0].values.sum() == 1440
        [r] = st.select_rollup(parse_selector("g"), T0, T0 + DAY - 1, 300_000) or []
        assert r.sum.sum() == 1440
    assert st._cache.hits >= 2
    st.append(gauge(ts[:10], np.full(10, 2.0)))
    st.flush(compact=True)
    assert st.select(parse_selector("g"), T0, T0 + DAY)[0].values.sum() == 1450
    [r] = st.select_rollup(parse_selector("g"), T0, T0 + DAY - 1, 300_000) or []
    assert r.sum.sum() == 1450
    st.close()


def test_background_pass_compacts_late_writes_to_a_sealed_window(tmp_path: Path) -> None:
    clock = Clock(T0 + 3_600_000)  # 01:00, inside the 00:00-02:00 block
    st = open_store(tmp_path, clock)
    st.append(gauge(T0 + 1000 * np.arange(10), np.ones(10)))
    st.flush()
    st.append(gauge(T0 + 1000 * np.arange(5, 15), np.full(10, 2.0)))  # overlaps: last write wins
    st.flush()
    st.maintain()
    assert st._db.execute("SELECT count(*) FROM chunks").fetchone() == (2,)  # block not sealed
    clock.ms = T0 + 2 * 3_600_000 + 1
    st.maintain()
    assert st._db.execute("SELECT count(*) FROM chunks").fetchone() == (1,)
    [s] = st.select(parse_selector("g"), T0, T0 + 20_000)
    assert s.values.tolist() == [1.0] * 5 + [2.0] * 10
    st.close()


def _reference_buckets(
    st: DuckDBStore, selector: str, start: int, end: int, res: int
) -> list[tuple[object, tuple[np.ndarray, ...]]]:
    """Per series (label order): the rollup of its raw samples over ``[start, end]``."""
    out = []
    for s in st.select(parse_selector(selector), start, end):
        arrays = rollup(s.timestamps, s.values, res)
        keep = (arrays[0] >= start) & (arrays[0] <= end)
        out.append((s.labels, tuple(a[keep] for a in arrays)))
    return out


@pytest.mark.parametrize(
    "selector",
    [
        "g",  # every id: one id range, nothing filtered
        'g{m2="0"}',  # half the ids of a range: an id range, filtered after the read
        'g{m5="0"}',  # sparse ids: joined against the id list
        'g{i=~"00[0-9]"}',  # a few: through the block cache
    ],
)
def test_rollup_columns_match_rollups_of_the_raw_samples(tmp_path: Path, selector: str) -> None:
    """Built buckets plus those computed after the watermark, in any read shape."""
    res = 300_000
    clock = Clock(T0 + 3 * 3_600_000)  # tiers are built up to here; the rest is raw
    st = open_store(tmp_path, clock)
    ts = T0 + 60_000 * np.arange(6 * 60)
    rng = np.random.default_rng(7)
    for i in range(400):
        labels = {"i": f"{i:03d}", "m2": str(i % 2), "m5": str(i % 5)}
        st.append(gauge(ts, np.round(rng.normal(50, 10, len(ts)), 2), **labels))
    st.flush(compact=True)
    assert T0 < st.tiers.built_until[0] < int(ts[-1])
    start, end = T0 + 600_000, T0 + 6 * 3_600_000 - 1
    want = _reference_buckets(st, selector, start, end, res)
    assert len(want) > 1
    for aggregates in (ROLLUP_AGGREGATES, ("sum", "count")):
        cols = st.select_rollup_columns(
            parse_selector(selector), start, end, res, aggregates=aggregates
        )
        assert cols is not None and cols.resolution_ms == res
        assert cols.labels == [ls for ls, _ in want]
        got = cols.in_order()
        offsets = got.offsets.tolist()
        for i, (_ls, arrays) in enumerate(want):
            sl = slice(offsets[i], offsets[i + 1])
            assert got.timestamps[sl].tolist() == arrays[0].tolist()
            for k, a in zip(ROLLUP_AGGREGATES, arrays[1:], strict=True):
                col = getattr(got, k)
                if k in aggregates:
                    np.testing.assert_allclose(col[sl], a, rtol=1e-12)
                else:
                    assert col is None
    per_series = st.select_rollup(parse_selector(selector), start, end, res) or []
    assert [r.labels for r in per_series] == [ls for ls, _ in want]
    assert [len(r.timestamps) for r in per_series] == [len(a[0]) for _, a in want]
    st.close()


def test_rollup_columns_in_order_sorts_rows_by_series_then_bucket() -> None:
    cols = RollupColumns(
        [(("a", "1"),), (("a", "2"),)],
        10,
        np.array([1, 0, 1, 0, 0]),
        np.array([20, 30, 10, 10, 20]),
        sum=np.array([1.0, 2.0, 3.0, 4.0, 5.0]),
    )
    got = cols.in_order()
    assert got.ordered and got.offsets.tolist() == [0, 3, 5]
    assert got.series_index.tolist() == [0, 0, 0, 1, 1]
    assert got.timestamps.tolist() == [10, 20, 30, 10, 20]
    assert got.sum is not None and got.sum.tolist() == [4.0, 5.0, 2.0, 3.0, 1.0]
    assert got.min is None


def test_rollup_columns_of_nothing(tmp_path: Path) -> None:
    st = open_store(tmp_path, Clock(T0 + DAY))
    st.append(gauge(T0 + 60_000 * np.arange(60), np.ones(60)))
    st.flush(compact=True)
    assert st.select_rollup(parse_selector("nothing"), T0, T0 + DAY, 300_000) == []
    cols = st.select_rollup_columns(parse_selector("nothing"), T0, T0 + DAY, 300_000)
    assert cols is not None and len(cols) == 0 and cols.per_series() == []
    st.close()


def test_a_window_built_block_by_block_ends_as_one_row_per_series(tmp_path: Path) -> None:
    """Live ingestion extends tier 0 two hours at a time; each extension rewrites the
    window's row, so a day ends as one blob row per series, equal to the rollup of
    the raw samples, special values bit for bit."""
    clock = Clock(T0)
    st = open_store(tmp_path, clock, head_max_age_s=0.0, seal_grace_ms=0)
    vals = np.round(np.random.default_rng(3).normal(50, 10, 8640), 2)
    vals[[5, 700, 4000]] = [np.nan, np.inf, -0.0]  # inside buckets 0, 19 and 111
    vals[8000] = np.frombuffer(np.uint64(0x7FF0000000000002).tobytes())[0]  # staleness NaN
    ts = T0 + 10_000 * np.arange(8640)
    for hour in range(0, 24, 2):
        part = (ts >= T0 + hour * 3_600_000) & (ts < T0 + (hour + 2) * 3_600_000)
        clock.ms = T0 + (hour + 2) * 3_600_000 + 1  # the samples arrive as time passes
        for s in ("a", "b"):
            st.append(gauge(ts[part], vals[part], s=s))
        st.maintain()
    clock.ms = T0 + DAY + 3_600_000  # no newer samples since: the last block is complete
    st.maintain()
    assert st.tiers.built_until[0] == T0 + DAY
    assert st._db.execute("SELECT count(*), sum(n) FROM tier_0").fetchone() == (2, 576)
    for r in st.select_rollup(parse_selector('g{s="a"}'), T0, T0 + DAY - 1, 300_000) or []:
        want = rollup(ts, vals, 300_000)
        assert r.timestamps.tolist() == want[0].tolist()
        for got, ref in zip((r.min, r.max, r.sum, r.count, r.last), want[1:], strict=True):
            assert np.asarray(got).tobytes() == np.asarray(ref, got.dtype).tobytes()
    st.close()


def test_tiers_stored_as_rows_are_migrated_to_blobs(tmp_path: Path) -> None:
    """A database from before tiers became blobs: one row per bucket in rollup_0."""
    clock = Clock(T0 + 2 * DAY)
    open_store(tmp_path, clock).close()
    import duckdb

    db = duckdb.connect(str(tmp_path / "samples.duckdb"))
    db.execute("DROP TABLE tier_0")
    db.execute(
        "CREATE TABLE rollup_0(series_id UINTEGER, ts INTEGER, min DOUBLE, max DOUBLE, "
        "sum DOUBLE, count INTEGER, last DOUBLE)"
    )
    db.execute('INSERT INTO series VALUES (0, \'[["__name__","g"]]\')')
    buckets = T0 // 300_000 + np.arange(2 * 288)  # two days: two windows
    db.executemany(
        "INSERT INTO rollup_0 VALUES (0, ?, ?, ?, ?, 30, ?)",
        [[int(b), i - 1.0, i + 1.0, 30.0 * i, float(i)] for i, b in enumerate(buckets)],
    )
    db.execute("INSERT INTO rollup_state VALUES (0, ?)", [T0 + 2 * DAY])
    db.close()
    st = open_store(tmp_path, clock)
    tables = {r[0] for r in st._db.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert "rollup_0" not in tables
    assert st._db.execute("SELECT count(*), sum(n) FROM tier_0").fetchone() == (2, 576)
    [r] = st.select_rollup(parse_selector("g"), T0, T0 + 2 * DAY - 1, 300_000) or []
    assert r.timestamps.tolist() == (buckets * 300_000).tolist()
    assert r.last.tolist() == list(np.arange(576.0))
    assert r.count.tolist() == [30] * 576
    st.close()


def test_a_tier_write_that_fails_half_way_is_repaired_by_the_next_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tier rows go in slices, each its own transaction: when one fails after others
    committed, the watermark has not moved, and the next pass cuts the window's rows
    back and writes them again (here across a restart)."""
    from perfintel.storage.duckdb import tiers

    clock = Clock(T0 + 2 * 3_600_000)
    st = open_store(tmp_path, clock)
    ts = T0 + 60_000 * np.arange(120)
    rng = np.random.default_rng(5)
    vals = {f"{i}": np.round(rng.normal(10, 2, len(ts)), 1) for i in range(6)}
    for i, v in vals.items():
        st.append(gauge(ts, v, i=i))
    st.flush(compact=True)  # the first hour's buckets, as segments of today's window
    built = st.tiers.built_until[0]
    later = T0 + 60_000 * np.arange(120, 600)
    clock.ms = T0 + 12 * 3_600_000
    for i in vals:
        vals[i] = np.r_[vals[i], np.round(rng.normal(10, 2, len(later)), 1)]
        st.append(gauge(later, vals[i][120:], i=i))
    monkeypatch.setattr(tiers, "_WRITE_SLICE_ROWS", 2)
    real_insert = tiers.RollupTiers._insert
    calls = []

    def failing_insert(cur: object, t: int, rows: dict[str, np.ndarray]) -> None:
        calls.append(t)
        if len(calls) == 2:
            raise RuntimeError("disk gone")
        real_insert(cur, t, rows)  # type: ignore[arg-type]

    monkeypatch.setattr(tiers.RollupTiers, "_insert", staticmethod(failing_insert))
    with pytest.raises(Exception, match="disk gone"):
        st.flush(compact=True)
    assert st.tiers.built_until[0] == built  # not moved past the half-written window
    monkeypatch.setattr(tiers.RollupTiers, "_insert", staticmethod(real_insert))
    st.close()
    st = open_store(tmp_path, clock)
    st.flush(compact=True)
    all_ts = np.r_[ts, later]
    got = st.select_rollup(parse_selector("g"), T0, T0 + 10 * 3_600_000 - 1, 300_000) or []
    assert len(got) == len(vals)
    for r in got:
        want = rollup(all_ts, vals[dict(r.labels)["i"]], 300_000)
        assert r.timestamps.tolist() == want[0].tolist()
        np.testing.assert_array_equal(r.sum, want[3])
        np.testing.assert_array_equal(r.count, want[4])
    assert st._db.execute("SELECT count(*) FROM tier_0").fetchone() == (len(vals),)
    st.close()


def test_tiers_wait_for_a_backfill_to_settle(tmp_path: Path) -> None:
    """While old data keeps arriving, rollups of it would be rewritten block after
    block: the tiers are built once the newest flushed sample stops moving."""
    clock = Clock(T0 + 3 * DAY)
    st = open_store(tmp_path, clock, head_max_age_s=5.0)
    ts = T0 + 10_000 * np.arange(8640)
    for hour in range(0, 24, 2):
        part = (ts >= T0 + hour * 3_600_000) & (ts < T0 + (hour + 2) * 3_600_000)
        st.append(gauge(ts[part], np.ones(int(part.sum()))))
        clock.ms += 6_000  # the head is old enough to flush at every pass
        st.maintain()
        assert st.stats().tiers["5m"] == 0
    clock.ms += 6_000  # the last block, quiet now: flushed, which moves the newest once more
    st.maintain()
    assert st.stats().tiers == {"raw": 8640, "5m": 0, "1h": 0}
    clock.ms += 11_000  # twice head_max_age_s without a newer flushed sample
    st.maintain()
    assert st.stats().tiers["5m"] == 264  # up to the newest sample's block, as for live data
    st.close()
