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
    check_limits,
    label_names_of,
    label_values_of,
)
from perfintel.storage.duckdb import codec
from perfintel.storage.duckdb.cache import BlockCache
from perfintel.storage.duckdb.head import Head
from perfintel.storage.duckdb.index import SeriesIndex
from perfintel.storage.duckdb.options import MaintenanceReport, StoreOptions
from perfintel.storage.duckdb.tiers import RollupTiers, concat_buckets
from perfintel.storage.duckdb.wal import WalSamples, WriteAheadLog
from perfintel.storage.samples import dedupe_last_wins, in_range, rollup

log = logging.getLogger(__name__)
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR


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
        self._touched_windows: set[int] = (
            set()
        )  # block windows flushed to since the last compaction look
        self.newest_flushed_ms = 0  # newest timestamp in the chunks table
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
        self.tiers = RollupTiers(self)
        self.tiers.load()
        row = self._db.execute("SELECT coalesce(max(seq), 0) FROM chunks").fetchone()
        self._seq = int(row[0]) if row else 0
        rng = self._db.execute(
            "SELECT series_id, min(min_ts), max(max_ts) FROM chunks GROUP BY series_id"
        ).fetchnumpy()
        if len(rng["series_id"]):
            self.newest_flushed_ms = int(rng["max(max_ts)"].max())
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
                report.rollup_windows = self.tiers.build(force=True)
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
            report.rollup_windows = self.tiers.build(force=False)
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
        sids, ts, vals = _sort_last_write_wins(sids, ts, vals)
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
                windows = np.unique(table.column("window_start").to_numpy())
                self.tiers.invalidate(windows)
        except Exception:
            self.head.restore(sids, ts, vals)
            raise
        finally:
            self.head.release()
        self._touched_windows.update(windows.tolist())
        self.newest_flushed_ms = max(self.newest_flushed_ms, int(ts.max()))
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
        ts_blobs, val_blobs = codec.encode_chunks(ts, vals, np.r_[starts, len(ts)])
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

    def _compact(self, *, sealed_only: bool = False) -> int:
        """Merge the chunks of each (series, window) that has several into one.

        The background pass looks only at sealed windows a flush has written to
        since it last looked (scanning every chunk's key every few seconds would
        grow with the store); ``sealed_only=False`` (admin flush) looks at all.
        """
        cond = ""
        params: list[int] = []
        if sealed_only:
            now = int(self.clock() * 1000)
            windows = sorted(w for w in self._touched_windows if w + self.opts.block_ms <= now)
            if not windows:
                return 0
            self._touched_windows.difference_update(windows)
            cond = f"WHERE window_start IN ({','.join('?' * len(windows))})"
            params = windows
        else:
            self._touched_windows.clear()
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
            self._seq += 1
            table = self._encode_chunks(*_sort_last_write_wins(sids, ts, vals), self._seq)
            cur.execute(
                "DELETE FROM chunks USING victims v WHERE chunks.series_id = v.series_id "
                "AND chunks.window_start = v.window_start"
            )
            cur.register("merged", table)
            cur.execute("INSERT INTO chunks SELECT * FROM merged")
            cur.unregister("merged")
            cur.unregister("victims")

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
        check_limits(limits, len(sids), 0)
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
                check_limits(limits, len(out), n)
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
        built = max(self.tiers.built_until[t], start_ms)
        parts: dict[int, list[tuple[np.ndarray, ...]]] = {}
        if built > start_ms:
            for sid, arrays in self.tiers.read_cached(t, start_ms, min(built - 1, end_ms), sids):
                parts.setdefault(sid, []).append(arrays)
        if built <= end_ms:
            # After the watermark: buckets from raw samples (head included).
            for s in self.select(selector, built, end_ms, limits=limits):
                raw_sid = self.index.get(s.labels)
                if raw_sid is not None:
                    parts.setdefault(raw_sid, []).append(rollup(s.timestamps, s.values, res))
        out = []
        for sid, ps in parts.items():
            b, mn, mx, sm, cnt, last = concat_buckets(ps)
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
        return label_names_of(self.series(selectors, start_ms, end_ms))

    def label_values(
        self, name: str, selectors: Sequence[Selector], start_ms: int, end_ms: int
    ) -> list[str]:
        return label_values_of(self.series(selectors, start_ms, end_ms), name)

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


def _sort_last_write_wins(
    sids: np.ndarray, ts: np.ndarray, vals: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort samples given in write order by (series, timestamp); of equal keys keep the last."""
    order = None
    if len(ts):
        lo, span = int(ts.min()), int(ts.max()) - int(ts.min()) + 1
        if (int(sids.max()) + 1) * span < 2**62:
            # One int64 key: a stable sort of it is ~4x faster than lexsort on two.
            order = np.argsort(sids.astype(np.int64) * span + (ts - lo), kind="stable")
    if order is None:
        order = np.lexsort((ts, sids))  # stable: equal (sid, ts) keep write order
    sids, ts, vals = sids[order], ts[order], vals[order]
    last = np.ones(len(ts), bool)
    last[:-1] = (sids[1:] != sids[:-1]) | (ts[1:] != ts[:-1])
    return sids[last], ts[last], vals[last]
