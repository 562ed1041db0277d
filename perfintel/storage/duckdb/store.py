"""The embedded sample store on DuckDB.

Layout of ``DATA_DIR``::

    samples.duckdb   the database (schema below)
    wal/*.log        the write-ahead log of samples not yet in the database

Write path: ``append`` resolves label sets to series ids, writes one WAL
record (fsynced) and appends to the in-memory head, then returns: the samples
are durable and readable. A single maintenance thread owns every database
write: it flushes the head into compressed chunks (one per series and block
window), merges a window's chunks into one (compaction), builds the rollup
tiers for windows that can no longer change, and enforces retention.

Schema::

    series(id UINTEGER, labels VARCHAR)                    -- JSON label pairs
    chunks(series_id UINTEGER, window_start BIGINT, seq BIGINT,
           min_ts BIGINT, max_ts BIGINT, n INTEGER, ts BLOB, vals BLOB)
    rollup_<i>(series_id UINTEGER, ts BIGINT, min DOUBLE, max DOUBLE,
               sum DOUBLE, count INTEGER, last DOUBLE)     -- one table per tier
    rollup_state(tier INTEGER, built_until BIGINT)         -- each tier's watermark

Chunks use ``codec`` (delta/decimal/XOR + zstd). ``seq`` orders chunks of the
same window by flush, so a later write of the same timestamp wins. Rollup
tier ``i`` stores, per series and tier window, buckets of ``min, max, sum,
count, last``; tier 0 is built from raw chunks, tier ``i`` from tier ``i-1``.
Rollup buckets are plain rows, so DuckDB's own column compression (ALP for
doubles, bit-packing for integers) stores them and scans read them
vectorised. Each tier has a watermark: everything before it is built. Reads of a rollup range combine the
built part with buckets computed on the fly from raw samples after the
watermark, so answers never have holes. Late data behind a watermark lowers
it, and the affected windows are rebuilt.

Thread-safety: ``append`` may be called from any thread (serialised by a
lock). Reads run concurrently on per-thread cursors and see the head, the
in-flight flush and committed chunks, newest last.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import orjson
import pyarrow as pa

from perfintel.errors import OverloadedError, StorageError
from perfintel.ingest.batch import SampleBatch
from perfintel.model import LabelSet, Selector
from perfintel.storage.base import (
    AppendResult,
    QueryLimits,
    SeriesRollup,
    SeriesSamples,
    StoreStats,
)
from perfintel.storage.duckdb import codec
from perfintel.storage.duckdb.cache import BlockCache
from perfintel.storage.duckdb.head import Head
from perfintel.storage.duckdb.index import SeriesIndex
from perfintel.storage.duckdb.wal import WalSamples, WriteAheadLog
from perfintel.storage.memory import _check
from perfintel.storage.samples import dedupe_last_wins, in_range, rollup

ROLLUP_FIELDS = ("ts", "min", "max", "sum", "count", "last")
log = logging.getLogger(__name__)
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR


@dataclass(frozen=True)
class Tier:
    """A rollup tier: bucket ``resolution_ms``, kept for ``retention_ms``, stored per ``window_ms``."""

    name: str
    resolution_ms: int
    retention_ms: int
    window_ms: int


@dataclass(frozen=True)
class StoreOptions:
    block_ms: int = 2 * HOUR
    raw_retention_ms: int = 15 * DAY
    tiers: tuple[Tier, ...] = (
        Tier("5m", 5 * MINUTE, 90 * DAY, DAY),
        Tier("1h", HOUR, 730 * DAY, 8 * DAY),
    )
    head_max_samples: int = 2_000_000
    head_max_age_s: float = 120.0
    seal_grace_ms: int = HOUR  # a window is final this long after it ends
    maintenance_interval_s: float = 5.0
    wal_fsync: bool = True
    background: bool = True
    memory_limit: str = "256MB"
    threads: int = 2


@dataclass
class MaintenanceReport:
    flushed: int = 0
    compacted_groups: int = 0
    rollup_windows: int = 0
    deleted_chunks: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class DuckDBStore:
    def __init__(
        self,
        data_dir: Path,
        options: StoreOptions | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dir = Path(data_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.opts = options or StoreOptions()
        self.clock = clock
        self.path = self.dir / "samples.duckdb"
        try:
            self._db = duckdb.connect(str(self.path))
            self._db.execute(f"SET memory_limit='{self.opts.memory_limit}'")
            self._db.execute(f"SET threads={int(self.opts.threads)}")
            self._create_schema()
        except duckdb.Error as exc:
            raise StorageError(f"cannot open the sample database {self.path}: {exc}") from exc
        self._local = threading.local()
        self._append_lock = threading.Lock()
        self._write_lock = threading.RLock()  # the single database writer
        self.index = SeriesIndex()
        self.head = Head()
        self._version = 0  # bumped after every database write; invalidates the block cache
        self._newest_seen = -1  # newest flushed timestamp, and when it last moved (ms)
        self._newest_moved_at = 0
        self._cache = BlockCache()
        self._persisted_series = 0
        self._seq = 0
        self._head_since = self.clock()
        self._load()
        self.wal = WriteAheadLog(self.dir / "wal", fsync=self.opts.wal_fsync)
        self._replay()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        if self.opts.background:
            self._thread = threading.Thread(
                target=self._maintenance_loop, name="perfintel-store", daemon=True
            )
            self._thread.start()

    # -- set-up -------------------------------------------------------------
    def _create_schema(self) -> None:
        self._db.execute(
            """
            CREATE TABLE IF NOT EXISTS series(id UINTEGER, labels VARCHAR);
            CREATE TABLE IF NOT EXISTS chunks(series_id UINTEGER, window_start BIGINT, seq BIGINT,
                min_ts BIGINT, max_ts BIGINT, n INTEGER, ts BLOB, vals BLOB);
            CREATE TABLE IF NOT EXISTS rollup_state(tier INTEGER, built_until BIGINT);
            """
        )
        for t in range(len(self.opts.tiers)):
            self._db.execute(
                f"CREATE TABLE IF NOT EXISTS rollup_{t}(series_id UINTEGER, ts INTEGER, min DOUBLE, "
                "max DOUBLE, sum DOUBLE, count INTEGER, last DOUBLE)"
            )

    def _load(self) -> None:
        for sid, labels in self._db.execute("SELECT id, labels FROM series ORDER BY id").fetchall():
            self.index.add(tuple((str(k), str(v)) for k, v in orjson.loads(labels)), sid)
        self._persisted_series = len(self.index)
        self._built_until = [-1] * len(self.opts.tiers)
        self._rebuild_from: int | None = None
        for t, until in self._db.execute("SELECT tier, built_until FROM rollup_state").fetchall():
            if t < len(self._built_until):
                self._built_until[t] = int(until)
        row = self._db.execute("SELECT coalesce(max(seq), 0) FROM chunks").fetchone()
        self._seq = int(row[0]) if row else 0
        rng = self._db.execute(
            "SELECT series_id, min(min_ts), max(max_ts) FROM chunks GROUP BY series_id"
        ).fetchnumpy()
        if len(rng["series_id"]):
            sids = rng["series_id"].astype(np.int64)
            self.index.note_range(sids, rng["min(min_ts)"].astype(np.int64))
            self.index.note_range(sids, rng["max(max_ts)"].astype(np.int64))
        # Rollup-only series (raw expired) still exist for long-range queries.
        for t in range(len(self.opts.tiers)):
            rr = self._db.execute(
                f"SELECT series_id, min(ts)::BIGINT * {self.opts.tiers[t].resolution_ms} AS lo "
                f"FROM rollup_{t} GROUP BY series_id"
            ).fetchnumpy()
            if len(rr["series_id"]):
                self.index.note_range(rr["series_id"].astype(np.int64), rr["lo"].astype(np.int64))

    def _replay(self) -> None:
        for rec in self.wal.replay():
            if isinstance(rec, WalSamples):
                self.head.append(rec.sids, rec.timestamps, rec.values)
                self.index.note_range(rec.sids, rec.timestamps)
            else:
                for sid, labels in rec:
                    if sid >= len(self.index):
                        self.index.add(labels, sid)

    # -- writes -------------------------------------------------------------
    def append(self, batch: SampleBatch) -> AppendResult:
        n = len(batch)
        if n == 0:
            return AppendResult(accepted=0)
        if self.head.samples > 4 * self.opts.head_max_samples:
            self._wake.set()
            raise OverloadedError("the write head is full while a flush catches up; retry shortly")
        with self._append_lock:
            ids, new = self.index.resolve(batch.series)
            sids = ids[batch.series_idx]
            records = [self.wal.write_series(new)] if new else []
            records.append(self.wal.write_samples(sids, batch.timestamps, batch.values))
            try:
                position = self.wal.write(*records)
            except OSError as exc:
                raise StorageError(f"cannot write the write-ahead log: {exc}") from exc
            self.head.append(sids, batch.timestamps, batch.values)
            self.index.note_range(sids, batch.timestamps)
        try:
            self.wal.sync(position)  # outside the lock: concurrent appends share one fsync
        except OSError as exc:
            raise StorageError(f"cannot sync the write-ahead log: {exc}") from exc
        if self.head.samples >= self.opts.head_max_samples:
            self._wake.set()
        return AppendResult(accepted=n)

    def flush(self, *, compact: bool = False) -> MaintenanceReport:
        """Write the head to the database now; with ``compact`` also merge chunks,
        build every rollup window that has ended (ignoring the grace period) and
        enforce retention. Used by the admin API, tests and benchmarks."""
        with self._write_lock:
            report = MaintenanceReport(flushed=self._flush_head(everything=True))
            if compact:
                report.compacted_groups = self._compact()
                report.rollup_windows = self._build_rollups(force=True)
                report.deleted_chunks = self._enforce_retention()
                self._db.execute("CHECKPOINT")
            return report

    def maintain(self) -> MaintenanceReport:
        """One pass of background work (what the maintenance thread runs)."""
        with self._write_lock:
            report = MaintenanceReport()
            age = self.clock() - self._head_since
            if self.head.samples >= self.opts.head_max_samples or (
                self.head.samples and age >= self.opts.head_max_age_s
            ):
                report.flushed = self._flush_head()
                if self.head.samples >= self.opts.head_max_samples // 2:
                    report.flushed += self._flush_head(everything=True)  # memory first
            report.compacted_groups = self._compact(sealed_only=True)
            report.rollup_windows = self._build_rollups(force=False)
            report.deleted_chunks = self._enforce_retention()
            return report

    def _maintenance_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.opts.maintenance_interval_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.maintain()
            except Exception:  # keep the loop alive; the next pass retries
                log.exception("storage maintenance failed")

    def _flush_head(self, *, everything: bool = False) -> int:
        """Move the head's samples into chunks.

        Only (series, block) groups that are complete go: the series already has
        samples after the block, or the block ended more than the grace period
        ago. The rest stays in the head (re-logged into the fresh WAL segment),
        so in-order ingestion writes each block once and compaction has nothing
        to rewrite. ``everything`` (memory pressure, shutdown, admin flush)
        flushes partial blocks too.
        """
        with self._append_lock:
            closed = self.wal.rotate()
            sids, ts, vals = self.head.take()
            self._head_since = self.clock()
            n_series = len(self.index)
        if not len(ts):
            self.head.release()
            self._delete(closed)
            return 0
        order = np.lexsort((ts, sids))  # stable: equal (sid, ts) keep write order
        sids, ts, vals = sids[order], ts[order], vals[order]
        last = np.ones(len(ts), bool)
        last[:-1] = (sids[1:] != sids[:-1]) | (ts[1:] != ts[:-1])
        sids, ts, vals = sids[last], ts[last], vals[last]  # last write wins
        if not everything:
            block_end = ts - np.mod(ts, self.opts.block_ms) + self.opts.block_ms
            now = int(self.clock() * 1000)
            done = (block_end <= self.index.max_ts[sids]) | (
                block_end + self.opts.seal_grace_ms <= now
            )
            if not done.all():
                hold = ~done
                with self._append_lock:
                    position = self.wal.write(
                        self.wal.write_samples(sids[hold], ts[hold], vals[hold])
                    )
                    self.head.restore(sids[hold], ts[hold], vals[hold])
                self.wal.sync(position)
                sids, ts, vals = sids[done], ts[done], vals[done]
                if not len(ts):
                    self.head.release()
                    self._delete(closed)
                    return 0
        try:
            self._seq += 1
            table = self._encode_chunks(sids, ts, vals, self._seq)
            with self._transaction() as cur:
                self._persist_series(cur, n_series)
                cur.register("new_chunks", table)
                cur.execute("INSERT INTO chunks SELECT * FROM new_chunks")
                cur.unregister("new_chunks")
                self._invalidate_rollups(cur, np.unique(table.column("window_start").to_numpy()))
        except Exception:
            self.head.restore(sids, ts, vals)
            raise
        finally:
            self.head.release()
        self._delete(closed)
        return len(ts)

    def _persist_series(self, cur: duckdb.DuckDBPyConnection, upto: int) -> None:
        if upto <= self._persisted_series:
            return
        ids = list(range(self._persisted_series, upto))
        labels = [orjson.dumps(self.index.labels[i]).decode() for i in ids]
        cur.register("new_series", pa.table({"id": pa.array(ids, pa.uint32()), "labels": labels}))
        cur.execute("INSERT INTO series SELECT * FROM new_series")
        cur.unregister("new_series")
        self._persisted_series = upto

    def _encode_chunks(
        self, sids: np.ndarray, ts: np.ndarray, vals: np.ndarray, seq: int
    ) -> pa.Table:
        """One chunk per (series, block window) of sorted, deduplicated samples."""
        win = ts - np.mod(ts, self.opts.block_ms)
        starts = np.flatnonzero(np.r_[True, (sids[1:] != sids[:-1]) | (win[1:] != win[:-1])])
        ends = np.r_[starts[1:], len(ts)]
        ts_blobs = []
        val_blobs = []
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            ts_blobs.append(codec.encode_timestamps(ts[a:b]))
            val_blobs.append(codec.encode_values(vals[a:b]))
        return pa.table(
            {
                "series_id": pa.array(sids[starts], pa.uint32()),
                "window_start": win[starts],
                "seq": np.full(len(starts), seq, np.int64),
                "min_ts": ts[starts],
                "max_ts": ts[ends - 1],
                "n": (ends - starts).astype(np.int32),
                "ts": pa.array(ts_blobs, pa.binary()),
                "vals": pa.array(val_blobs, pa.binary()),
            }
        )

    def _invalidate_rollups(self, cur: duckdb.DuckDBPyConnection, windows: np.ndarray) -> None:
        """New raw data behind tier 0's watermark: the tiers rebuild from there."""
        if not len(windows):
            return
        earliest = int(windows.min())
        if earliest < self._built_until[0]:
            self._rebuild_from = (
                earliest if self._rebuild_from is None else min(self._rebuild_from, earliest)
            )

    def _compact(self, *, sealed_only: bool = False) -> int:
        """Merge the chunks of each (series, window) that has several into one."""
        cond = ""
        params: list[int] = []
        if sealed_only:
            cond = "WHERE window_start + ? <= ?"
            params = [self.opts.block_ms, int(self.clock() * 1000)]
        groups = self._db.execute(
            f"SELECT series_id, window_start FROM chunks {cond} GROUP BY ALL HAVING count(*) > 1",
            params,
        ).fetchnumpy()
        total = len(groups["series_id"])
        step = 20_000
        for i in range(0, total, step):
            victims = pa.table(
                {
                    "series_id": pa.array(groups["series_id"][i : i + step], pa.uint32()),
                    "window_start": groups["window_start"][i : i + step],
                }
            )
            self._compact_groups(victims)
        return total

    def _compact_groups(self, victims: pa.Table) -> None:
        with self._transaction() as cur:
            cur.register("victims", victims)
            rows = cur.execute(
                """SELECT c.series_id, c.window_start, c.ts, c.vals FROM chunks c
                   JOIN victims v USING (series_id, window_start)
                   ORDER BY c.series_id, c.window_start, c.seq"""
            ).fetchall()
            s_parts, t_parts, v_parts = [], [], []
            for sid, _w, tsb, vb in rows:
                t = codec.decode_timestamps(tsb)
                s_parts.append(np.full(len(t), sid, np.int64))
                t_parts.append(t)
                v_parts.append(codec.decode_values(vb))
            sids = np.concatenate(s_parts)
            ts = np.concatenate(t_parts)
            vals = np.concatenate(v_parts)
            order = np.lexsort((ts, sids))
            sids, ts, vals = sids[order], ts[order], vals[order]
            keep = np.ones(len(ts), bool)
            keep[:-1] = (sids[1:] != sids[:-1]) | (ts[1:] != ts[:-1])
            self._seq += 1
            table = self._encode_chunks(sids[keep], ts[keep], vals[keep], self._seq)
            cur.execute(
                "DELETE FROM chunks USING victims v WHERE chunks.series_id = v.series_id "
                "AND chunks.window_start = v.window_start"
            )
            cur.register("merged", table)
            cur.execute("INSERT INTO chunks SELECT * FROM merged")
            cur.unregister("merged")
            cur.unregister("victims")

    def _build_rollups(self, *, force: bool) -> int:
        """Advance each tier's watermark over sealed data; returns the buckets written.

        Tier 0 advances over raw blocks once they are sealed (or have ended,
        with ``force``); tier ``i`` follows tier ``i-1`` one source window at a
        time (as far as it can, with ``force``).
        """
        now = int(self.clock() * 1000)
        block = self.opts.block_ms
        if self._rebuild_from is not None:
            self._lower_watermarks(self._rebuild_from)
            self._rebuild_from = None
        written = 0
        grace = 0 if force else self.opts.seal_grace_ms
        target0 = (now - grace) - (now - grace) % block
        if not force:
            # Not into the block of the newest flushed sample while that still moves:
            # a backfill arriving in time order would otherwise find its blocks
            # already rolled up, and rebuild them.
            row = self._db.execute("SELECT max(max_ts) FROM chunks").fetchone()
            newest = int(row[0]) if row and row[0] is not None else 0
            if newest != self._newest_seen:
                self._newest_seen, self._newest_moved_at = newest, now
            if now - self._newest_moved_at < self.opts.seal_grace_ms:
                target0 = min(target0, newest - newest % block)
        for t, tier in enumerate(self.opts.tiers):
            if t == 0:
                target = target0
            else:
                src = self.opts.tiers[t - 1]
                target = self._built_until[t - 1]
                unit = tier.resolution_ms if force else max(tier.resolution_ms, src.window_ms)
                target -= target % unit
            lo = self._built_until[t]
            if lo < 0:  # never built: start at the oldest data
                row = self._db.execute("SELECT min(min_ts) FROM chunks").fetchone()
                if not row or row[0] is None:
                    return written
                lo = int(row[0]) - int(row[0]) % tier.window_ms
            while lo < target:
                hi = min(lo - lo % tier.window_ms + tier.window_ms, target)
                written += self._extend_tier(t, tier, lo, hi)
                lo = hi
            if lo != self._built_until[t]:
                with self._transaction() as cur:
                    self._set_watermark(cur, t, lo)
        return written

    def _set_watermark(self, cur: duckdb.DuckDBPyConnection, t: int, until: int) -> None:
        cur.execute("DELETE FROM rollup_state WHERE tier = ?", [t])
        cur.execute("INSERT INTO rollup_state VALUES (?, ?)", [t, until])
        self._built_until[t] = until  # after the statements: a failed write leaves it as it was

    def _lower_watermarks(self, ts: int) -> None:
        """Forget tier buckets from the block holding ``ts`` on, so they are rebuilt."""
        for t, tier in enumerate(self.opts.tiers):
            unit = max(self.opts.block_ms, tier.resolution_ms)
            w = ts - ts % unit
            if self._built_until[t] > w:
                with self._transaction() as cur:
                    cur.execute(
                        f"DELETE FROM rollup_{t} WHERE ts >= ?", [-(-w // tier.resolution_ms)]
                    )
                    self._set_watermark(cur, t, w)

    def _extend_tier(self, t: int, tier: Tier, lo: int, hi: int) -> int:
        """Write the buckets of ``[lo, hi)``.

        Rows go in slices of fewer than a row group, each its own transaction:
        DuckDB writes bigger inserts to the file uncompressed ahead of commit and
        frees those blocks at the next checkpoint, which bloats the file. A
        crash between slices is harmless: the watermark has not moved, and the
        next pass deletes the partial buckets before writing them again.
        """
        cols: dict[str, list[np.ndarray]] = {k: [] for k in ROLLUP_FIELDS}
        ids: list[np.ndarray] = []
        if t == 0:
            for sid, ts, vals in self._read_raw_range(lo, hi):
                sl = in_range(ts, lo, hi - 1)
                if sl.stop > sl.start:
                    arrays = rollup(ts[sl], vals[sl], tier.resolution_ms)
                    ids.append(np.full(len(arrays[0]), sid, np.uint32))
                    for k, a in zip(ROLLUP_FIELDS, arrays, strict=True):
                        cols[k].append(a)
        else:
            src = self.opts.tiers[t - 1]
            for sid, arrays in self._read_tier(t - 1, lo, hi - 1, None):
                arrays = _coarsen(arrays, src.resolution_ms, tier.resolution_ms)
                ids.append(np.full(len(arrays[0]), sid, np.uint32))
                for k, a in zip(ROLLUP_FIELDS, arrays, strict=True):
                    cols[k].append(a)
        if not ids:
            return 0
        columns = {k: np.concatenate(v) for k, v in cols.items()}
        columns["ts"] = (columns["ts"] // tier.resolution_ms).astype(
            np.int32
        )  # stored as bucket number
        columns["count"] = columns["count"].astype(np.int32)
        table = pa.table({"series_id": np.concatenate(ids), **columns})
        with self._transaction() as cur:
            cur.execute(f"DELETE FROM rollup_{t} WHERE ts >= ?", [-(-lo // tier.resolution_ms)])
        for off in range(0, table.num_rows, 100_000):
            with self._transaction() as cur:
                cur.register("new_rollups", table.slice(off, 100_000))
                cur.execute(f"INSERT INTO rollup_{t} SELECT * FROM new_rollups")
                cur.unregister("new_rollups")
        return table.num_rows

    def _rows_for(
        self,
        sql: str,
        params: list[object],
        sids: np.ndarray | None,
        cur: duckdb.DuckDBPyConnection | None = None,
    ) -> list[tuple]:
        """Run ``sql`` (ending in a WHERE clause) restricted to ``sids``."""
        cur = cur or self._cursor()
        try:
            if sids is None:
                return cur.execute(sql, params).fetchall()
            if len(sids) <= 32:
                marks = ",".join("?" * len(sids))
                return cur.execute(
                    f"{sql} AND series_id IN ({marks})", [*params, *sids.tolist()]
                ).fetchall()
            cur.register("want", pa.table({"want_id": pa.array(sids, pa.uint32())}))
            try:
                return cur.execute(
                    f"{sql} AND series_id IN (SELECT want_id FROM want)", params
                ).fetchall()
            finally:
                cur.unregister("want")
        except duckdb.Error as exc:
            raise StorageError(f"reading the sample database failed: {exc}") from exc

    def _read_raw_range(
        self, start: int, end: int, cur: duckdb.DuckDBPyConnection | None = None
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Committed raw samples of every series in blocks overlapping ``[start, end)``."""
        rows = self._rows_for(
            "SELECT series_id, ts, vals FROM chunks WHERE window_start >= ? AND window_start < ? "
            "ORDER BY series_id, window_start, seq",
            [start - start % self.opts.block_ms, end],
            None,
            cur,
        )
        yield from _merge_rows(
            (sid, codec.decode_timestamps(a), codec.decode_values(b)) for sid, a, b in rows
        )

    def _read_tier(
        self,
        t: int,
        start: int,
        end: int,
        sids: np.ndarray | None,
        cur: duckdb.DuckDBPyConnection | None = None,
    ) -> Iterator[tuple[int, tuple[np.ndarray, ...]]]:
        """Built buckets of tier ``t`` with start in ``[start, end]``, per series."""
        cur = cur or self._cursor()
        sql = (
            f"SELECT series_id, {', '.join(ROLLUP_FIELDS)} FROM rollup_{t} "
            "WHERE ts >= ? AND ts <= ?"
        )
        res_ms = self.opts.tiers[t].resolution_ms
        start, end = -(-start // res_ms), end // res_ms  # bucket numbers
        try:
            if sids is not None and len(sids) <= 32:
                marks = ",".join("?" * len(sids))
                res = cur.execute(
                    f"{sql} AND series_id IN ({marks})", [start, end, *sids.tolist()]
                ).fetchnumpy()
            elif sids is not None:
                cur.register("want", pa.table({"want_id": pa.array(sids, pa.uint32())}))
                try:
                    res = cur.execute(
                        f"{sql} AND series_id IN (SELECT want_id FROM want)", [start, end]
                    ).fetchnumpy()
                finally:
                    cur.unregister("want")
            else:
                res = cur.execute(sql, [start, end]).fetchnumpy()
        except duckdb.Error as exc:
            raise StorageError(f"reading rollups failed: {exc}") from exc
        sid_col = np.asarray(res["series_id"], np.int64)
        if not len(sid_col):
            return
        ts_col = np.asarray(res["ts"], np.int64) * res_ms
        order = np.lexsort((ts_col, sid_col))
        sid_col = sid_col[order]
        arrays = [ts_col[order]] + [np.asarray(res[k])[order] for k in ROLLUP_FIELDS[1:]]
        arrays[4] = arrays[4].astype(np.int64)
        bounds = np.flatnonzero(np.r_[True, sid_col[1:] != sid_col[:-1], True])
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            yield int(sid_col[a]), tuple(x[a:b] for x in arrays)

    def _cached_tier(
        self, t: int, start: int, end: int, sids: np.ndarray
    ) -> Iterator[tuple[int, tuple[np.ndarray, ...]]]:
        """``_read_tier`` through the block cache."""
        version = self._version
        missing = []
        for sid in sids.tolist():
            hit = self._cache.get(("r", t, sid), version, start, end)
            if hit is None:
                missing.append(sid)
            elif len(hit[0]):
                keep = (hit[0] >= start) & (hit[0] <= end)
                yield sid, tuple(a[keep] for a in hit)
        if not missing:
            return
        fresh = dict(self._read_tier(t, start, end, np.asarray(missing, np.int64)))
        empty = tuple(np.empty(0, np.int64 if i in (0, 4) else np.float64) for i in range(6))
        for sid in missing:
            arrays = fresh.get(sid, empty)
            self._cache.put(
                ("r", t, sid), version, start, end, arrays, 64 + sum(a.nbytes for a in arrays)
            )
            if len(arrays[0]):
                yield sid, arrays

    def _enforce_retention(self) -> int:
        now = int(self.clock() * 1000)
        cut = now - self.opts.raw_retention_ms
        with self._transaction() as cur:
            row = cur.execute("SELECT count(*) FROM chunks WHERE max_ts < ?", [cut]).fetchone()
            deleted = int(row[0]) if row else 0
            if deleted:
                cur.execute("DELETE FROM chunks WHERE max_ts < ?", [cut])
            for t, tier in enumerate(self.opts.tiers):
                cutoff = (now - tier.retention_ms) // tier.resolution_ms
                cur.execute(f"DELETE FROM rollup_{t} WHERE ts < ?", [cutoff])
        return deleted

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._write_lock:
            cur = self._db.cursor()
            try:
                cur.execute("BEGIN")
                yield cur
                cur.execute("COMMIT")
                self._version += 1
            except duckdb.Error as exc:
                with contextlib.suppress(duckdb.Error):
                    cur.execute("ROLLBACK")
                raise StorageError(f"database write failed: {exc}") from exc
            finally:
                cur.close()

    @staticmethod
    def _delete(paths: Sequence[Path]) -> None:
        for p in paths:
            p.unlink(missing_ok=True)

    # -- reads --------------------------------------------------------------
    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cur = getattr(self._local, "cur", None)
        if cur is None:
            cur = self._local.cur = self._db.cursor()
        return cur

    def _matching(
        self, selector: Selector, start_ms: int, end_ms: int, limits: QueryLimits | None
    ) -> np.ndarray:
        sids = self.index.overlapping(self.index.match(selector), start_ms, end_ms)
        _check(limits, len(sids), 0)
        return sids

    def _chunk_rows(
        self, sids: np.ndarray, start_ms: int, end_ms: int
    ) -> list[tuple[int, bytes, bytes]]:
        """Chunk blobs of ``sids`` overlapping the range, by series then flush order."""
        version = self._version
        found: dict[int, list[tuple[int, bytes, bytes]]] = {}
        missing = []
        for sid in sids.tolist():
            hit = self._cache.get(("c", sid), version, start_ms, end_ms)
            if hit is None:
                missing.append(sid)
            else:
                found[sid] = hit
        if missing:
            rows = self._rows_for(
                "SELECT series_id, ts, vals, seq FROM chunks WHERE max_ts >= ? AND min_ts <= ?",
                [start_ms, end_ms],
                np.asarray(missing, np.int64),
            )
            rows.sort(key=lambda r: (r[0], r[3]))  # by series, then flush order
            fresh: dict[int, list[tuple[int, bytes, bytes]]] = {sid: [] for sid in missing}
            for r in rows:
                fresh[r[0]].append((r[0], r[1], r[2]))
            for sid, rs in fresh.items():
                nbytes = 64 + sum(len(r[1]) + len(r[2]) for r in rs)
                self._cache.put(("c", sid), version, start_ms, end_ms, rs, nbytes)
            found.update(fresh)
        return [r for sid in sorted(found) for r in found[sid]]

    def select(
        self, selector: Selector, start_ms: int, end_ms: int, *, limits: QueryLimits | None = None
    ) -> list[SeriesSamples]:
        start_ms, end_ms = int(start_ms), int(end_ms)
        sids = self._matching(selector, start_ms, end_ms, limits)
        if not len(sids):
            return []
        parts: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        for sid, tsb, vb in self._chunk_rows(sids, start_ms, end_ms):
            parts.setdefault(sid, []).append(
                (codec.decode_timestamps(tsb), codec.decode_values(vb))
            )
        for sid, tv in self.head.read(sids).items():
            parts.setdefault(sid, []).append(tv)
        out = []
        n = 0
        for sid, ps in parts.items():
            ts = np.concatenate([p[0] for p in ps])
            vals = np.concatenate([p[1] for p in ps])
            ts, vals = dedupe_last_wins(ts, vals)
            sl = in_range(ts, start_ms, end_ms)
            if sl.stop > sl.start:
                out.append(SeriesSamples(self.index.labels[sid], ts[sl], vals[sl]))
                n += sl.stop - sl.start
                _check(limits, len(out), n)
        out.sort(key=lambda s: s.labels)
        return out

    def select_rollup(
        self,
        selector: Selector,
        start_ms: int,
        end_ms: int,
        resolution_ms: int,
        *,
        limits: QueryLimits | None = None,
    ) -> list[SeriesRollup] | None:
        fitting = [
            (t, tier)
            for t, tier in enumerate(self.opts.tiers)
            if tier.resolution_ms <= resolution_ms
        ]
        if not fitting:
            return None
        t, tier = fitting[-1]
        res = tier.resolution_ms
        start_ms, end_ms = int(start_ms), int(end_ms)
        start_ms -= start_ms % res
        sids = self._matching(selector, start_ms, end_ms, limits)
        if not len(sids):
            return []
        built = max(self._built_until[t], start_ms)
        parts: dict[int, list[tuple[np.ndarray, ...]]] = {}
        if built > start_ms:
            for sid, arrays in self._cached_tier(t, start_ms, min(built - 1, end_ms), sids):
                parts.setdefault(sid, []).append(arrays)
        if built <= end_ms:
            # After the watermark: buckets from raw samples (head included).
            for s in self.select(selector, built, end_ms, limits=limits):
                raw_sid = self.index.get(s.labels)
                if raw_sid is not None:
                    parts.setdefault(raw_sid, []).append(rollup(s.timestamps, s.values, res))
        out = []
        for sid, ps in parts.items():
            b, mn, mx, sm, cnt, last = _cat(ps)
            if len(b):
                out.append(SeriesRollup(self.index.labels[sid], res, b, mn, mx, sm, cnt, last))
        out.sort(key=lambda s: s.labels)
        return out

    def series(
        self, selectors: Sequence[Selector], start_ms: int, end_ms: int, *, limit: int | None = None
    ) -> list[LabelSet]:
        if selectors:
            ids = np.unique(np.concatenate([self.index.match(s) for s in selectors]))
        else:
            ids = np.arange(len(self.index))
        ids = self.index.overlapping(ids, start_ms, end_ms)
        out = sorted(self.index.labels[i] for i in ids.tolist())
        return out[:limit] if limit else out

    def label_names(self, selectors: Sequence[Selector], start_ms: int, end_ms: int) -> list[str]:
        return sorted({k for ls in self.series(selectors, start_ms, end_ms) for k, _ in ls})

    def label_values(
        self, name: str, selectors: Sequence[Selector], start_ms: int, end_ms: int
    ) -> list[str]:
        return sorted(
            {v for ls in self.series(selectors, start_ms, end_ms) for k, v in ls if k == name}
        )

    # -- status -------------------------------------------------------------
    def disk_bytes(self) -> int:
        files = [self.path, self.path.with_name(self.path.name + ".wal"), *self.wal.segments()]
        return sum(p.stat().st_size for p in files if p.exists())

    def stats(self) -> StoreStats:
        tiers = {"raw": 0}
        with contextlib.suppress(duckdb.Error):
            row = self._cursor().execute("SELECT coalesce(sum(n), 0) FROM chunks").fetchone()
            tiers["raw"] = int(row[0]) if row else 0
            for t, tier in enumerate(self.opts.tiers):
                row = self._cursor().execute(f"SELECT count(*) FROM rollup_{t}").fetchone()
                tiers[tier.name] = int(row[0]) if row else 0
        return StoreStats(
            series=len(self.index),
            samples_in_head=self.head.samples,
            disk_bytes=self.disk_bytes(),
            tiers=tiers,
        )

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        with contextlib.suppress(Exception), self._write_lock:
            self._flush_head(everything=True)
            self._db.execute("CHECKPOINT")
        self.wal.close()
        self._db.close()


def _merge_rows(
    rows: Iterator[tuple[int, np.ndarray, np.ndarray]],
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    cur: int | None = None
    ts_parts: list[np.ndarray] = []
    v_parts: list[np.ndarray] = []
    for sid, ts, vals in rows:
        if cur is not None and sid != cur:
            yield cur, *dedupe_last_wins(np.concatenate(ts_parts), np.concatenate(v_parts))
            ts_parts, v_parts = [], []
        cur = sid
        ts_parts.append(ts)
        v_parts.append(vals)
    if cur is not None:
        yield cur, *dedupe_last_wins(np.concatenate(ts_parts), np.concatenate(v_parts))


def _cat(parts: Sequence[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    if len(parts) == 1:
        return parts[0]
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(6))


def _coarsen(arrays: tuple[np.ndarray, ...], src_res: int, res: int) -> tuple[np.ndarray, ...]:
    """Combine finer buckets into coarser ones (min of mins, sum of sums, last of lasts)."""
    b, mn, mx, sm, cnt, last = arrays
    if not len(b):
        return arrays
    nb = b - np.mod(b, res)
    starts = np.flatnonzero(np.r_[True, nb[1:] != nb[:-1]])
    ends = np.r_[starts[1:], len(nb)]
    return (
        nb[starts],
        np.minimum.reduceat(mn, starts),
        np.maximum.reduceat(mx, starts),
        np.add.reduceat(sm, starts),
        np.add.reduceat(cnt, starts),
        last[ends - 1],
    )
