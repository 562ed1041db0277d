"""The memory-lean parts of the DuckDB store give the same answers as the plain ones:
the compact series index, the sliced flush, the direct WAL record, the skipped
all-held flush."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from store_helpers import DAY, HOUR, T0, Clock

from perfintel.batch import SampleBatch
from perfintel.model import LabelSet, Matcher, MatchOp, Selector, label_set, parse_selector
from perfintel.storage.duckdb import DuckDBStore, StoreOptions, maintenance
from perfintel.storage.duckdb.index import SeriesIndex
from perfintel.storage.duckdb.wal import SEGMENT_MAGIC, WriteAheadLog


def test_index_matches_like_the_selector() -> None:
    rnd = random.Random(1)
    idx = SeriesIndex()
    sets: list[LabelSet] = []
    for _ in range(2000):
        d = {"__name__": rnd.choice(["a", "b", "c_total"])}
        for k in ("job", "instance", "mode"):
            if rnd.random() < 0.6:
                d[k] = rnd.choice(["v1", "v2", "foo", f"bar{rnd.randint(0, 40)}"])
        ls = label_set(d)
        if idx.get(ls) is None:
            assert idx.add(ls) == len(sets)
            sets.append(ls)
    assert idx.labels == sets
    assert idx.label_names() == ["__name__", "instance", "job", "mode"]
    values = ["", "v1", "a", "foo", "bar1", "bar.*", "v.", ".*", ".+", "c_.*", "nope"]
    for _ in range(2000):
        sel = Selector(
            tuple(
                Matcher(
                    rnd.choice(["__name__", "job", "instance", "mode", "absent"]),
                    rnd.choice(list(MatchOp)),
                    rnd.choice(values),
                )
                for _ in range(rnd.randint(1, 3))
            )
        )
        want = [i for i, ls in enumerate(sets) if sel.matches(ls)]
        assert idx.match(sel).tolist() == want, sel


def test_index_shares_equal_label_pairs() -> None:
    idx = SeriesIndex()
    a = idx.labels[idx.add(label_set({"__name__": "m", "job": "x", "i": "1"}))]
    b = idx.labels[idx.add(label_set({"__name__": "m", "job": "x", "i": "2"}))]
    assert a[0] is b[0] and a[2] is b[2] and a[1] is not b[1]
    with pytest.raises(ValueError, match="dense"):
        idx.add(label_set({"__name__": "m"}), 5)


def test_wal_direct_record_is_the_same_bytes(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, fsync=False)
    sids = np.array([3, 1, 2], np.int32)
    ts = np.array([5, -6, 7], np.int64)
    vals = np.array([0.5, np.nan, -np.inf])
    wal.write(wal.write_samples(sids, ts, vals))
    wal.write_samples_direct(sids, ts, vals)
    wal.close()
    data = wal.segments()[0].read_bytes()[len(SEGMENT_MAGIC) :]
    assert data[: len(data) // 2] == data[len(data) // 2 :]


def _random_writes(seed: int, n_series: int) -> list[SampleBatch]:
    rng = np.random.default_rng(seed)
    series = [label_set({"__name__": "g", "i": str(i)}) for i in range(n_series)]
    batches = []
    for _ in range(12):
        n = int(rng.integers(1, 400))
        idx = rng.integers(0, n_series, n).astype(np.int32)
        ts = T0 + 60_000 * rng.integers(0, 6 * 60, n)  # six hours: three 2 h blocks
        batches.append(SampleBatch(series, idx, ts, rng.integers(0, 5, n).astype(np.float64)))
    return batches


def _contents(st: DuckDBStore) -> dict[LabelSet, tuple[list[int], list[float]]]:
    return {
        s.labels: (s.timestamps.tolist(), s.values.tolist())
        for s in st.select(parse_selector('{__name__="g"}'), T0 - DAY, T0 + DAY)
    }


@pytest.mark.parametrize("everything", [True, False])
def test_sliced_flush_writes_what_one_slice_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, everything: bool
) -> None:
    results = []
    for slice_samples in (1 << 30, 37):
        monkeypatch.setattr(maintenance, "_FLUSH_SLICE_SAMPLES", slice_samples)
        st = DuckDBStore(
            tmp_path / str(slice_samples),
            StoreOptions(background=False),
            clock=Clock(T0 + 4 * HOUR + 10 * 60_000),  # the last block is still open
        )
        for b in _random_writes(7, 50):
            st.append(b)
        before = _contents(st)
        flushed = st._flush_head(everything=everything)
        assert _contents(st) == before  # nothing lost or changed by the flush
        rows = st._db.execute(
            "SELECT series_id, window_start, min_ts, max_ts, n FROM chunks ORDER BY ALL"
        ).fetchall()
        results.append((flushed, rows, st.head.samples, before))
        st.close()
    assert results[0] == results[1]
    assert results[0][0] > 0 and (everything or results[0][2] > 0)


def test_failed_flush_puts_everything_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(maintenance, "_FLUSH_SLICE_SAMPLES", 37)
    st = DuckDBStore(
        tmp_path, StoreOptions(background=False), clock=Clock(T0 + 4 * HOUR + 10 * 60_000)
    )
    for b in _random_writes(3, 40):
        st.append(b)
    before = _contents(st)
    segments = st.wal.segments()

    def boom(*_a: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(st, "_persist_series", boom)
    with pytest.raises(RuntimeError):
        st._flush_head()
    assert _contents(st) == before
    assert set(segments) <= set(st.wal.segments())  # the closed segments stay
    monkeypatch.undo()
    st.flush()
    assert _contents(st) == before and st.head.samples == 0
    st.close()


def test_flush_with_nothing_complete_leaves_head_and_wal_alone(tmp_path: Path) -> None:
    clock = Clock(T0 + 10 * 60_000)
    st = DuckDBStore(tmp_path, StoreOptions(background=False), clock=clock)
    st.append(SampleBatch.from_arrays(label_set({"__name__": "g"}), T0 + np.arange(5), np.ones(5)))
    segments = st.wal.segments()
    assert st._flush_head() == 0
    assert st.wal.segments() == segments and st.head.samples == 5
    clock.ms += 4 * HOUR  # the block and its grace period are over
    assert st._flush_head() == 5
    assert st.head.samples == 0
    st.close()


def test_compaction_in_small_steps_merges_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = []
    for step in (1 << 30, 50):
        monkeypatch.setattr(maintenance, "_COMPACT_STEP_SAMPLES", step)
        st = DuckDBStore(
            tmp_path / str(step), StoreOptions(background=False), clock=Clock(T0 + DAY)
        )
        for b in _random_writes(11, 30):
            st.append(b)
            st.flush()  # one chunk per (series, window) per flush
        before = _contents(st)
        merged = st._compact()
        assert merged > 0 and _contents(st) == before
        groups = st._db.execute(
            "SELECT count(*) FROM (SELECT 1 FROM chunks GROUP BY series_id, window_start "
            "HAVING count(*) > 1)"
        ).fetchone()
        assert groups == (0,)
        rows = st._db.execute(
            "SELECT series_id, window_start, min_ts, max_ts, n FROM chunks ORDER BY ALL"
        ).fetchall()
        results.append((merged, rows, before))
        st.close()
    assert results[0] == results[1]


def test_rollups_keep_nan_and_inf(tmp_path: Path) -> None:
    # Rollup rows go to DuckDB as numpy arrays, whose scan reads NaN as NULL.
    st = DuckDBStore(tmp_path, StoreOptions(background=False), clock=Clock(T0 + 3 * DAY))
    ts = T0 + 60_000 * np.arange(1440)
    vals = np.ones(1440)
    vals[5], vals[700] = np.nan, np.inf
    series = [label_set({"__name__": "g", "i": str(i)}) for i in range(40)]
    st.append(
        SampleBatch(
            series,
            np.repeat(np.arange(40, dtype=np.int32), 1440),
            np.tile(ts, 40),
            np.tile(vals, 40),
        )
    )
    st.flush(compact=True)
    out = st.select_rollup(parse_selector('{__name__="g"}'), T0, T0 + DAY - 1, 300_000) or []
    assert len(out) == 40
    r = out[0]
    assert np.isnan(r.min[1]) and np.isnan(r.sum[1]) and r.count[1] == 5
    assert r.max[140] == np.inf and r.sum.dtype == np.float64 and r.count.dtype == np.int64
    assert np.nansum(r.sum) == np.inf and r.count.sum() == 1440
    st.close()
