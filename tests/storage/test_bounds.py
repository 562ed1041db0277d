"""Timestamp bounds: samples older than the raw retention or too far ahead are
refused (the good ones beside them stored) with a message naming the likely
cause; a sample at ts=0 can no longer wipe the rollup tiers."""

from __future__ import annotations

import numpy as np
import pytest
from store_helpers import DAY, HOUR, T0, Clock, open_store

from perfintel.batch import SampleBatch
from perfintel.model import label_set, parse_selector
from perfintel.storage.duckdb import DuckDBStore

NOW = T0 + 30 * DAY


def _batch(points: dict[str, list[int]]) -> SampleBatch:
    series, idx, ts = [], [], []
    for i, (name, stamps) in enumerate(points.items()):
        series.append(label_set({"__name__": name}))
        idx += [i] * len(stamps)
        ts += stamps
    return SampleBatch(series, np.array(idx, np.int32), np.array(ts, np.int64), np.ones(len(ts)))


@pytest.mark.parametrize(
    ("ts", "hint"),
    [
        ((NOW - HOUR) // 1000, "seconds sent where milliseconds are expected?"),
        ((NOW - HOUR) * 1000, "microseconds sent where milliseconds are expected?"),
        ((NOW - HOUR) * 1_000_000, "nanoseconds sent where milliseconds are expected?"),
        (0, "timestamp 0"),
        (-5, "negative timestamp"),
        (-2_208_988_800_000, "negative timestamp"),  # 1900
        (32_503_680_000_000, "clock right?"),  # 3000
        (NOW - 16 * DAY, "old data"),
        (NOW + 2 * HOUR, "clock right?"),
    ],
)
def test_out_of_bounds_samples_are_refused_and_the_rest_stored(
    tmp_path: object, ts: int, hint: str
) -> None:
    st = open_store(tmp_path, Clock(NOW))  # type: ignore[arg-type]
    good = [NOW - DAY, NOW - 14 * DAY, NOW + 30 * 60_000]  # inside 15 days back, 1 h ahead
    res = st.append(_batch({"good": good, "mixed": [NOW - 1000, ts], "bad_only": [ts]}))
    assert (res.accepted, res.rejected) == (4, 2)
    [msg] = res.errors
    assert msg.startswith("2 sample(s) refused, timestamp ")
    assert hint in msg, msg
    assert "mixed" in msg
    if ts == (NOW - HOUR) // 1000:
        assert "1970-01-" in msg  # the example: seconds read as ms land in January 1970
    assert [dict(s)["__name__"] for s in st.series([], 0, 2**62)] == ["good", "mixed"]
    assert res.kept is not None and len(res.kept) == 4
    st.close()


def test_a_batch_of_only_good_samples_is_unchanged(tmp_path: object) -> None:
    st = open_store(tmp_path, Clock(NOW))  # type: ignore[arg-type]
    res = st.append(_batch({"good": [NOW - 1, NOW]}))
    assert (res.accepted, res.rejected, res.errors, res.kept) == (2, 0, [], None)
    st.close()


def _tier_rows(st: DuckDBStore) -> list[tuple[int, int]]:
    rows = st._db.execute("SELECT count(*), coalesce(sum(n), 0) FROM tier_0").fetchall()
    return [(int(a), int(b)) for a, b in rows]


def test_a_sample_at_zero_no_longer_wipes_the_rollup_tiers(tmp_path: object) -> None:
    """Rollups of days whose raw samples retention deleted cannot be rebuilt: a late
    sample at ts=0 (replayed from a WAL written before appends were bounded) brought
    the tier watermark down to 1970, deleted every row after it, and rebuilt decades
    of empty windows from the raw samples left (minutes at 100 % CPU, rows lost)."""
    clock = Clock(T0)
    st = open_store(tmp_path, clock, raw_retention_ms=2 * DAY)  # type: ignore[arg-type]
    for day in range(6):
        clock.ms = T0 + (day + 1) * DAY + 2 * HOUR
        ts = T0 + day * DAY + 60_000 * np.arange(1440)
        st.append(SampleBatch.from_arrays(label_set({"__name__": "m"}), ts, np.ones(1440)))
        st.flush(compact=True)
    assert st._db.execute("SELECT min(min_ts) FROM chunks").fetchone()[0] >= T0 + 3 * DAY
    before = _tier_rows(st)
    assert before[0][1] == 6 * 288  # six days of 5-minute buckets, though raw kept two

    refused = st.append(SampleBatch.from_arrays(label_set({"__name__": "m"}), [0], [1.0]))
    assert (refused.accepted, refused.rejected) == (0, 1)

    # The same sample in the WAL of an older version: replayed, flushed, compacted.
    position = st.wal.write(
        st.wal.write_samples(np.array([0]), np.array([0], np.int64), np.array([1.0]))
    )
    st.wal.sync(position)
    st.wal.close()
    st._db.close()
    st = open_store(tmp_path, clock, raw_retention_ms=2 * DAY)  # type: ignore[arg-type]
    st.flush(compact=True)
    assert _tier_rows(st) == before
    got = st.select_rollup(parse_selector("m"), T0, T0 + 6 * DAY - 1, 300_000)
    assert got is not None and sum(len(r.timestamps) for r in got) == 6 * 288
    st.close()


def test_a_first_tier_build_starts_within_the_tier_retention(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stray ts=0 chunk (from before appends were bounded) made the first build walk
    every day since 1970, one window at a time (~20,000 steps at 100 % CPU)."""
    from perfintel.storage.duckdb.tiers import RollupTiers

    st = open_store(tmp_path, Clock(NOW))  # type: ignore[arg-type]
    st.append(SampleBatch.from_arrays(label_set({"__name__": "m"}), [NOW - DAY], [1.0]))
    position = st.wal.write(
        st.wal.write_samples(np.array([0]), np.array([0], np.int64), np.array([1.0]))
    )
    st.wal.sync(position)
    st.wal.close()
    st._db.close()
    st = open_store(tmp_path, Clock(NOW))  # type: ignore[arg-type]  # replays it
    st.flush()  # the stray sample is a chunk now, older than every retention
    assert st._db.execute("SELECT min(min_ts) FROM chunks").fetchall() == [(0,)]
    steps = []
    real = RollupTiers._extend_tier

    def counted(self: RollupTiers, t: int, *a: object, **kw: object) -> int:
        steps.append(t)
        return real(self, t, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(RollupTiers, "_extend_tier", counted)
    st.flush(compact=True)
    assert steps.count(0) <= 92  # the 5-minute tier: 90 days of one-day windows, and edges
    got = st.select_rollup(parse_selector("m"), NOW - 2 * DAY, NOW, 300_000)
    assert got is not None and [len(r.timestamps) for r in got] == [1]
    st.close()
