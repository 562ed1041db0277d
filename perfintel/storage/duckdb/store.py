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
    tier_<i>(series_id UINTEGER, b_lo INTEGER, b_hi INTEGER, n INTEGER,
             ts BLOB, min BLOB, max BLOB, sum BLOB, count BLOB, last BLOB)
                                                           -- one table per rollup tier
    rollup_state(tier INTEGER, built_until BIGINT)         -- each tier's watermark

Chunks use ``codec`` (delta/decimal/XOR + zstd). ``seq`` orders chunks of the
same window by flush, so a later write of the same timestamp wins. Rollup
tier ``i`` stores, per series and tier window, buckets of ``min, max, sum,
count, last``, one row per series and tier window with each column a codec
blob; tier 0 is built from raw chunks, tier ``i`` from tier ``i-1``. Each tier
has a watermark: everything before it is built. Reads of a rollup range combine
the built part with buckets computed on the fly from raw samples after the
watermark, so answers never have holes. Late data behind a watermark lowers
it, and the affected windows are rebuilt.

Thread-safety: ``append`` may be called from any thread (serialised by a
lock). Reads run concurrently on per-thread cursors and see the head, the
in-flight flush and committed chunks, newest last.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import itertools
import logging
import shutil
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

import duckdb
import numpy as np
import orjson

from perfintel.batch import SampleBatch
from perfintel.errors import (
    DiskFullError,
    OverloadedError,
    SeriesRateLimitError,
    StorageError,
    TooManyNewSeriesError,
)
from perfintel.model import LabelSet, Selector
from perfintel.storage.base import (
    ROLLUP_AGGREGATES,
    AppendResult,
    QueryLimits,
    RollupColumns,
    SeriesRollup,
    SeriesSamples,
    SnapshotReport,
    StoreSize,
    StoreStats,
    check_limits,
    label_names_of,
    label_values_of,
)
from perfintel.storage.bounds import split_out_of_bounds
from perfintel.storage.duckdb import codec
from perfintel.storage.duckdb.cache import BlockCache
from perfintel.storage.duckdb.head import Head
from perfintel.storage.duckdb.index import SeriesIndex
from perfintel.storage.duckdb.options import MaintenanceReport, StoreOptions
from perfintel.storage.duckdb.tables import object_column, series_filter
from perfintel.storage.duckdb.tiers import ROLLUP_FIELDS, RollupTiers, tier_table_sql
from perfintel.storage.duckdb.wal import WalSamples, WriteAheadLog
from perfintel.storage.samples import dedupe_last_wins, in_range, rollup

log = logging.getLogger(__name__)
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
LOST_SERIES_NAME = "perfintel_wal_lost_series"  # series whose WAL definition was damaged


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
        self._connect()
        self._generation = 0  # bumped when the database is opened again
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
        self._held_back = 0
        self._unlogged_series: list[tuple[int, LabelSet]] = []
        self._series_tokens = float(self.opts.max_new_series_per_minute)
        self._series_bucket_at = time.monotonic()
        self._latest_at_last_look = np.empty(0, np.int64)  # index.max_ts when a flush last looked
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
            _WITH_MAINTENANCE.add(self)

    # -- set-up -------------------------------------------------------------
    def _connect(self) -> None:
        try:
            self._db = duckdb.connect(str(self.path))
            self._db.execute(f"SET memory_limit='{self.opts.memory_limit}'")
            self._db.execute(f"SET threads={int(self.opts.threads)}")
            self._create_schema()
        except duckdb.Error as exc:
            raise StorageError(f"cannot open the sample database {self.path}: {exc}") from exc

    def _reopen_if_invalidated(self, exc: BaseException) -> bool:
        """DuckDB invalidates a database after a fatal error (a checkpoint that
        hit a full disk) until it is opened again: do that, so the store
        recovers by itself once there is space. Committed data is in DuckDB's
        own log; what the failed write held is still in the head and our WAL."""
        seen: BaseException | None = exc
        while seen is not None and not isinstance(seen, duckdb.FatalException):
            seen = seen.__cause__
        if seen is None:
            return False
        with self._write_lock:
            log.warning("the sample database was invalidated (%s); opening it again", seen)
            with contextlib.suppress(duckdb.Error):
                self._db.close()
            self._connect()
            self._generation += 1  # every thread's cursor is of the closed connection
            [row] = self._db.execute(
                "SELECT count(*), (SELECT coalesce(max(seq), 0) FROM chunks) FROM series"
            ).fetchall()
            if row:
                self._persisted_series = min(int(row[0]), self._persisted_series)
                self._seq = max(self._seq, int(row[1]))
            self.tiers.load()
            self._version += 1
        return True

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
            self._db.execute(tier_table_sql(t))

    def _load(self) -> None:
        for sid, labels in self._db.execute("SELECT id, labels FROM series ORDER BY id").fetchall():
            self.index.add(tuple((str(k), str(v)) for k, v in orjson.loads(labels)), sid)
        self._persisted_series = len(self.index)
        self.tiers = RollupTiers(_TierHandle(self))
        self.tiers.load()
        [(seq,)] = self._db.execute("SELECT coalesce(max(seq), 0) FROM chunks").fetchall()
        self._seq = int(seq)
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
                f"SELECT series_id, min(b_lo)::BIGINT * {self.opts.tiers[t].resolution_ms} AS lo "
                f"FROM tier_{t} GROUP BY series_id"
            ).fetchnumpy()
            if len(rr["series_id"]):
                self.index.note_range(rr["series_id"].astype(np.int64), rr["lo"].astype(np.int64))

    def _replay(self) -> None:
        # All records first: a series definition can follow samples of it (it is
        # written again after a failed append), and ids must be added in order.
        recs = list(self.wal.replay())
        defs: dict[int, LabelSet] = {}
        for rec in recs:
            if not isinstance(rec, WalSamples):
                for sid, labels in rec:
                    defs.setdefault(sid, labels)
        orphans = 0
        for rec in recs:
            if isinstance(rec, WalSamples):
                if len(rec.sids):
                    orphans += self._add_replayed_series(int(rec.sids.max()), defs)
                self.head.append(rec.sids, rec.timestamps, rec.values)
                self.index.note_range(rec.sids, rec.timestamps)
            else:
                for sid, _ in rec:
                    orphans += self._add_replayed_series(sid, defs)
        if orphans:
            log.error(
                "write-ahead log: the definitions of %d series were in a damaged record; their "
                'samples are kept as {__name__="%s", series_id="<id>"}',
                orphans,
                LOST_SERIES_NAME,
            )

    def _add_replayed_series(self, upto: int, defs: dict[int, LabelSet]) -> int:
        """Register series ids up to ``upto`` from the WAL's definitions; an id whose
        definition was lost with a damaged record gets a placeholder label set
        (ids stay dense, its samples stay readable). Returns the placeholders added."""
        lost = 0
        while len(self.index) <= upto:
            sid = len(self.index)
            labels = defs.get(sid)
            if labels is None:
                labels = (("__name__", LOST_SERIES_NAME), ("series_id", str(sid)))
                lost += 1
            self.index.add(labels, sid)
        return lost

    # -- writes -------------------------------------------------------------
    def append(self, batch: SampleBatch) -> AppendResult:
        if len(batch) == 0:
            return AppendResult(accepted=0)
        now = int(self.clock() * 1000)
        retention, future = self.opts.raw_retention_ms, self.opts.max_future_ms
        batch, refused, errors = split_out_of_bounds(
            batch, now - retention, now + future, retention, future
        )
        n = len(batch)
        if n == 0:
            return AppendResult(accepted=0, rejected=refused, errors=errors)
        if self.head.samples > 4 * self.opts.head_max_samples:
            self._wake.set()
            raise OverloadedError("the write head is full while a flush catches up; retry shortly")
        with self._append_lock:
            self._check_new_series(batch.series)
            ids, new = self.index.resolve(batch.series)
            sids = ids[batch.series_idx]
            # Series registered by appends whose log write failed are defined again.
            new = self._unlogged_series + new
            records = [self.wal.write_series(new)] if new else []
            records.append(self.wal.write_samples(sids, batch.timestamps, batch.values))
            try:
                position = self.wal.write(*records)
            except OSError as exc:
                self._unlogged_series = new
                raise self._wal_error("write", exc) from exc
            self._unlogged_series = []
            self.head.append(sids, batch.timestamps, batch.values)
            self.index.note_range(sids, batch.timestamps)
        try:
            self.wal.sync(position)  # outside the lock: concurrent appends share one fsync
        except OSError as exc:
            with self._append_lock:  # their definition may be among the lost pages
                self._unlogged_series = new + self._unlogged_series
            raise self._wal_error("sync", exc) from exc
        if self.head.samples >= self.opts.head_max_samples:
            self._wake.set()
        return AppendResult(
            accepted=n, rejected=refused, errors=errors, kept=batch if refused else None
        )

    def _check_new_series(self, series: list[LabelSet]) -> None:
        """Refuse an append that would register too many series, in one go or per
        minute (each costs memory in the index for as long as the store is open).
        A token bucket: ``max_new_series_per_minute`` tokens, refilled evenly."""
        get = self.index.get
        n = sum(1 for ls in series if get(ls) is None)
        if not n:
            return
        per_append, per_minute = (
            self.opts.max_new_series_per_append,
            self.opts.max_new_series_per_minute,
        )
        if n > per_append:
            raise TooManyNewSeriesError(
                f"the request would create {n} new series, more than "
                f"limits.max_new_series_per_request ({per_append}); nothing was stored"
            )
        now = time.monotonic()
        elapsed = now - self._series_bucket_at
        self._series_bucket_at = now
        self._series_tokens = min(
            float(per_minute), self._series_tokens + elapsed * per_minute / 60.0
        )
        if n > self._series_tokens:
            raise SeriesRateLimitError(
                f"new series arrive faster than limits.max_new_series_per_minute ({per_minute}): "
                f"this request has {n}; nothing was stored, retry shortly"
            )
        self._series_tokens -= n

    def _wal_error(self, what: str, exc: OSError) -> StorageError:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return DiskFullError(
                f"the disk of {self.dir} is full: cannot {what} the write-ahead log; "
                "nothing of this request was stored, retry when space is free"
            )
        return StorageError(f"cannot {what} the write-ahead log: {exc}")

    def flush(self, *, compact: bool = False) -> MaintenanceReport:
        """Write the head to the database now; with ``compact`` also merge chunks,
        build every rollup window that has ended (ignoring the grace period) and
        enforce retention. Used by the admin API, tests and benchmarks."""
        with self._write_lock:
            try:
                report = MaintenanceReport(flushed=self._flush_head(everything=True))
                if compact:
                    report.compacted_groups = self._compact()
                    report.rollup_windows = self.tiers.build(force=True)
                    report.deleted_chunks = self._enforce_retention()
                    self._checkpoint()
            except (duckdb.Error, StorageError) as exc:
                with contextlib.suppress(Exception):
                    self._reopen_if_invalidated(exc)
                if isinstance(exc, StorageError):
                    raise
                raise StorageError(f"database write failed: {exc}") from exc
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
                # Memory first when complete blocks alone cannot bring the head down
                # (many series, each with a partial block). Not by the head's size
                # now: appends during the flush count there, and flushing their
                # partial blocks would only make chunks that compaction rewrites.
                if self._held_back >= self.opts.head_max_samples // 2:
                    report.flushed += self._flush_head(everything=True)
            report.compacted_groups = self._compact(sealed_only=True)
            report.rollup_windows = self.tiers.build(force=False)
            report.deleted_chunks = self._enforce_retention()
            return report

    def _maintenance_loop(self) -> None:
        failures = 0  # passes failed in a row
        last_log = 0.0
        while not self._stop.is_set():
            # After failures (a full disk) wait longer, up to a minute, so retries
            # neither spin nor fill the freed space with re-logged samples.
            wait = self.opts.maintenance_interval_s * 2 ** min(failures, 10)
            if failures:
                self._stop.wait(min(wait, _MAX_MAINTENANCE_BACKOFF_S))
            else:
                self._wake.wait(wait)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.maintain()
            except Exception as exc:  # keep the loop alive; the next pass retries
                with contextlib.suppress(Exception):
                    self._reopen_if_invalidated(exc)
                failures += 1
                now = time.monotonic()
                if failures == 1:
                    log.exception("storage maintenance failed; retrying with backoff")
                elif now - last_log >= _MAX_MAINTENANCE_BACKOFF_S:
                    log.error("storage maintenance still failing (%d passes): %s", failures, exc)
                else:
                    continue
                last_log = now
            else:
                if failures:
                    log.info("storage maintenance recovered after %d failed passes", failures)
                failures = 0

    def _flush_head(self, *, everything: bool = False) -> int:
        """Move the head's samples into chunks.

        Only (series, block) groups that are complete go: the series already has
        samples after the block, or the block ended more than the grace period
        ago. The rest stays in the head (re-logged into the fresh WAL segment),
        so in-order ingestion writes each block once and compaction has nothing
        to rewrite. When nothing is complete, the head and its WAL segments are
        left as they are (re-logging all of it would change nothing).
        ``everything`` (memory pressure, shutdown, admin flush) flushes partial
        blocks too.

        Memory: the taken samples are sorted and encoded a range of series ids
        at a time (about ``_FLUSH_SLICE_SAMPLES`` samples), so beside the head
        a flush holds one slice's copies and the encoded chunks, not copies of
        the whole head. The chunks of every slice go in one transaction.
        """
        with self._append_lock:
            latest, current = self.index.max_ts.copy(), self.head.parts()
        quiet = self._quiet_series(latest)
        if not everything and not any(
            self._complete(s, t, latest, quiet).any() for s, t, _ in current
        ):
            self._held_back = self.head.samples
            self._head_since = self.clock()
            return 0
        with self._append_lock:
            try:
                closed = self.wal.rotate()
            except OSError as exc:  # the current segment stays open: appends go on
                raise self._wal_error("rotate", exc) from exc
            parts = self.head.take_parts()
            # Each series' latest timestamp as of this take: a block is complete
            # only if the taken samples hold all of it (appends go on meanwhile).
            latest = self.index.max_ts.copy()
            self._head_since = self.clock()
            n_series = len(self.index)
        quiet = np.pad(quiet, (0, len(latest) - len(quiet)))  # series added since: not quiet
        tables: list[dict[str, np.ndarray]] = []
        position = 0
        self._held_back = 0  # samples of incomplete blocks this flush puts back
        flushed, newest = 0, self.newest_flushed_ms
        try:
            seq = self._seq + 1
            for piece in _series_slices(parts, _FLUSH_SLICE_SAMPLES):
                sids, ts, vals = _sort_parts_last_write_wins(piece)
                del piece
                if not everything:
                    done = self._complete(sids, ts, latest, quiet)
                    if not done.all():
                        hold = ~done
                        self._held_back += int(hold.sum())
                        with self._append_lock:
                            try:
                                position = self.wal.write_samples_direct(
                                    sids[hold], ts[hold], vals[hold]
                                )
                            except OSError as exc:
                                raise self._wal_error("write", exc) from exc
                            self.head.restore(sids[hold], ts[hold], vals[hold])
                        sids, ts, vals = sids[done], ts[done], vals[done]
                if len(ts):
                    tables.append(self._encode_chunks(sids, ts, vals, seq))
                    flushed += len(ts)
                    newest = max(newest, int(ts.max()))
            if position:
                try:
                    self.wal.sync(position)
                except OSError as exc:
                    raise self._wal_error("sync", exc) from exc
            if tables:
                self._seq = seq
                self._persist_series(n_series)
                windows = np.unique(np.concatenate([t["window_start"] for t in tables]))
                with self._transaction() as cur:
                    for table in tables:
                        cur.register("new_chunks", table)
                        cur.execute("INSERT INTO chunks SELECT * FROM new_chunks")
                        cur.unregister("new_chunks")
                    self.tiers.invalidate(cur, windows)
                self._touched_windows.update(windows.tolist())
                self.newest_flushed_ms = newest
        except Exception:
            # Everything taken goes back (samples already put back as held come
            # again, older: reads and the next flush keep the last write anyway),
            # and the closed WAL segments stay.
            self.head.restore_parts(parts)
            raise
        finally:
            self.head.release()
        self._delete(closed)
        return flushed

    def _quiet_series(self, latest: np.ndarray) -> np.ndarray:
        """Per series id: no newer sample since the previous flush looked, given
        each series' ``latest`` timestamp now."""
        before = self._latest_at_last_look
        quiet = np.zeros(len(latest), bool)
        k = min(len(before), len(latest))
        np.equal(latest[:k], before[:k], out=quiet[:k])
        self._latest_at_last_look = latest
        return quiet

    def _complete(
        self, sids: np.ndarray, ts: np.ndarray, latest: np.ndarray, quiet: np.ndarray
    ) -> np.ndarray:
        """Per sample: is its (series, block) complete, so a flush may write it?

        Yes when the series' ``latest`` sample is after the block, or when the
        block ended more than the grace period ago and the series is ``quiet``
        (it had no newer sample since the previous flush). A backfill in time
        order is never quiet, so its sealed blocks wait for the samples that
        complete them instead of becoming partial chunks that compaction would
        have to rewrite."""
        block, n = self.opts.block_ms, len(ts)
        sealed_before = int(self.clock() * 1000) - self.opts.seal_grace_ms
        done = np.empty(n, bool)
        step = 1 << 20  # bounds the temporaries at a few MiB whatever the head holds
        for a in range(0, n, step):
            end = np.floor_divide(ts[a : a + step], block)
            end += 1
            end *= block  # the end of the sample's block
            ids = sids[a : a + step]
            np.less_equal(end, latest[ids], out=done[a : a + step])
            done[a : a + step] |= (end <= sealed_before) & quiet[ids]
        return done

    def _persist_series(self, upto: int) -> None:
        """Write the series registered since the last flush to the series table.

        In batches, each committed on its own, so the labels of many new series
        never sit in one transaction (100,000 of them cost ~40 MiB at once). A
        series row ahead of its chunks is harmless: a restart loads it, and
        the WAL's definition of the same id is skipped."""
        while self._persisted_series < upto:
            lo = self._persisted_series
            hi = min(upto, lo + 10_000)
            labels = [orjson.dumps(self.index.labels[i]).decode() for i in range(lo, hi)]
            with self._transaction() as cur:
                ids = np.arange(lo, hi, dtype=np.uint32)
                cur.register("new_series", {"id": ids, "labels": object_column(labels)})
                cur.execute("INSERT INTO series SELECT * FROM new_series")
                cur.unregister("new_series")
            self._persisted_series = hi

    def _encode_chunks(
        self, sids: np.ndarray, ts: np.ndarray, vals: np.ndarray, seq: int
    ) -> dict[str, np.ndarray]:
        """One chunk per (series, block window) of sorted, deduplicated samples,
        as columns of the chunks table."""
        win = ts - np.mod(ts, self.opts.block_ms)
        starts = np.flatnonzero(np.r_[True, (sids[1:] != sids[:-1]) | (win[1:] != win[:-1])])
        ends = np.r_[starts[1:], len(ts)]
        ts_blobs, val_blobs = codec.encode_chunks(ts, vals, np.r_[starts, len(ts)])
        return {
            "series_id": sids[starts].astype(np.uint32),
            "window_start": win[starts],
            "seq": np.full(len(starts), seq, np.int64),
            "min_ts": ts[starts],
            "max_ts": ts[ends - 1],
            "n": (ends - starts).astype(np.int32),
            "ts": object_column(ts_blobs),
            "vals": object_column(val_blobs),
        }

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
        groups = (
            self._cursor()
            .execute(
                f"SELECT series_id, window_start, sum(n)::BIGINT AS samples FROM chunks {cond} "
                "GROUP BY series_id, window_start HAVING count(*) > 1",
                params,
            )
            .fetchnumpy()
        )
        total = len(groups["series_id"])
        # Steps of at most 20,000 groups and about _COMPACT_STEP_SAMPLES samples: a
        # step decodes and sorts all its samples at once (~100 bytes each at the peak).
        cum = np.cumsum(groups["samples"])
        i = 0
        while i < total:
            below = (int(cum[i - 1]) if i else 0) + _COMPACT_STEP_SAMPLES
            j = min(i + 20_000, max(i + 1, int(np.searchsorted(cum, below, "right"))))
            victims = {
                "series_id": groups["series_id"][i:j].astype(np.uint32),
                "window_start": groups["window_start"][i:j],
            }
            self._compact_groups(victims)
            i = j
        return total

    def _compact_groups(self, victims: dict[str, np.ndarray]) -> None:
        with self._transaction() as cur:
            cur.register("victims", victims)
            rows = cur.execute(
                """SELECT c.series_id, c.ts, c.vals FROM chunks c
                   JOIN victims v USING (series_id, window_start)
                   ORDER BY c.series_id, c.window_start, c.seq"""
            ).fetchall()
            self._seq += 1
            table = self._encode_chunks(*_decode_sorted(rows), self._seq)
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
        """Run ``sql`` (ending in a WHERE clause, ``series_id`` its first column)
        restricted to ``sids``."""
        own = cur is None
        cur = cur or self._cursor()
        try:
            with series_filter(cur, sids) as (cond, more, keep):
                rows = cur.execute(sql + cond, [*params, *more]).fetchall()
        except duckdb.Error as exc:
            if own:
                self._drop_cursor()
            raise StorageError(f"reading the sample database failed: {exc}") from exc
        return rows if keep is None else [r for r in rows if keep[r[0]]]

    def _read_raw_batches(
        self, start: int, end: int, cur: duckdb.DuckDBPyConnection | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Committed raw samples of every series in blocks overlapping ``[start, end)``.

        Flat ``(series ids, timestamps, values)`` batches sorted by series and
        time (last write wins), each holding whole series and about
        ``_RAW_BATCH_CHUNKS`` chunks, so memory stays bounded at any series count.
        """
        rows = self._rows_for(
            "SELECT series_id, ts, vals FROM chunks WHERE window_start >= ? AND window_start < ? "
            "ORDER BY series_id, window_start, seq",
            [start - start % self.opts.block_ms, end],
            None,
            cur,
        )
        pending: list[tuple[int, bytes, bytes]] = []
        for row in rows:
            if len(pending) >= _RAW_BATCH_CHUNKS and row[0] != pending[-1][0]:
                yield _decode_sorted(pending)
                pending = []
            pending.append(row)
        if pending:
            yield _decode_sorted(pending)

    def _enforce_retention(self) -> int:
        now = int(self.clock() * 1000)
        cut = now - self.opts.raw_retention_ms
        with self._transaction() as cur:
            [(deleted,)] = cur.execute(
                "SELECT count(*) FROM chunks WHERE max_ts < ?", [cut]
            ).fetchall()
            if deleted:
                cur.execute("DELETE FROM chunks WHERE max_ts < ?", [cut])
            for t, tier in enumerate(self.opts.tiers):
                cutoff = (now - tier.retention_ms) // tier.resolution_ms
                # whole rows (series windows) once their last bucket is past retention
                cur.execute(f"DELETE FROM tier_{t} WHERE b_hi < ?", [cutoff])
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

    def _checkpoint(self) -> None:
        self._cursor().execute("CHECKPOINT").fetchall()

    # -- reads --------------------------------------------------------------
    def _cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor (DuckDB connections are not for concurrent use).

        Discipline: every result is fetched whole (``fetchall``/``fetchnumpy``,
        never ``fetchone``) before the cursor is used again: DuckDB refuses
        ``register``/``sql`` on a cursor holding an unfinished result ("Resource
        In Use Error: connection has an unfinished result from execute()"), and
        a thread-pool thread carries its cursor from one request to the next.
        A cursor that raised is dropped (its result may be half-read)."""
        cur = getattr(self._local, "cur", None)
        if cur is None or self._local.generation != self._generation:
            cur = self._local.cur = self._db.cursor()
            self._local.generation = self._generation
        return cur

    def _drop_cursor(self) -> None:
        cur = getattr(self._local, "cur", None)
        self._local.cur = None
        if cur is not None:
            with contextlib.suppress(duckdb.Error):
                cur.close()

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
        # The head before the database: a flush that commits and releases between
        # the two reads then shows its samples twice (deduplicated below), never
        # in neither (database first missed them when the flush fell in between).
        in_head = self.head.read(sids)
        parts: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        rows = self._chunk_rows(sids, start_ms, end_ms)
        if rows:  # one decoder call for every chunk, then split per chunk
            ts_all, vals_all, counts = codec.decode_chunks_flat(
                [r[1] for r in rows], [r[2] for r in rows]
            )
            ends = np.cumsum(counts).tolist()
            for (sid, _, _), a, b in zip(rows, [0, *ends[:-1]], ends, strict=True):
                parts.setdefault(sid, []).append((ts_all[a:b], vals_all[a:b]))
        for sid, tv in in_head.items():  # after the database's: the head's writes are newer
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
        cols = self.select_rollup_columns(selector, start_ms, end_ms, resolution_ms, limits=limits)
        return None if cols is None else cols.per_series()

    def select_rollup_columns(
        self,
        selector: Selector,
        start_ms: int,
        end_ms: int,
        resolution_ms: int,
        *,
        aggregates: Sequence[str] = ROLLUP_AGGREGATES,
        limits: QueryLimits | None = None,
    ) -> RollupColumns | None:
        """``select_rollup`` as flat arrays, reading only ``aggregates``.

        Built buckets come from the tier table in one columnar read (through
        the block cache for a few series, which a large read would only
        flush); buckets after the tier's watermark are computed from raw
        samples (head included).
        """
        fitting = [
            (t, tier)
            for t, tier in enumerate(self.opts.tiers)
            if tier.resolution_ms <= resolution_ms
        ]
        if not fitting:
            return None
        t, tier = fitting[-1]
        res = tier.resolution_ms
        wanted = [k for k in ROLLUP_AGGREGATES if k in aggregates]
        start_ms, end_ms = int(start_ms), int(end_ms)
        start_ms -= start_ms % res
        sids = self._matching(selector, start_ms, end_ms, limits)
        if not len(sids):
            return RollupColumns([], res, np.empty(0, np.int64), np.empty(0, np.int64))
        labels_of = self.index.labels
        by_labels = sorted(sids.tolist(), key=labels_of.__getitem__)
        rank = np.full(int(sids.max()) + 1, -1, np.int64)  # -1: not selected
        rank[by_labels] = np.arange(len(by_labels))
        built = max(self.tiers.built_until[t], start_ms)
        parts: list[dict[str, np.ndarray]] = []
        if built > start_ms:
            hi = min(built - 1, end_ms)
            if len(sids) <= _CACHED_ROLLUP_SERIES:
                parts.append(_flat_rollups(self.tiers.read_cached(t, start_ms, hi, sids), wanted))
            else:
                parts.append(self.tiers.fetch(t, start_ms, hi, sids, wanted))
        if built <= end_ms:
            # After the watermark: buckets from raw samples (head included).
            tail = []
            for s in self.select(selector, built, end_ms, limits=limits):
                raw_sid = self.index.get(s.labels)
                if raw_sid is not None and raw_sid < len(rank) and rank[raw_sid] >= 0:
                    tail.append((raw_sid, rollup(s.timestamps, s.values, res)))
            parts.append(_flat_rollups(iter(tail), wanted))
        cols = parts[0]
        if len(parts) > 1:  # each series: its built buckets, then those from raw samples
            cols = {k: np.concatenate([p[k] for p in parts]) for k in cols}
        # Series without a bucket drop out; the rest are numbered in label order.
        index = rank[cols["series_id"]]
        has = np.zeros(len(by_labels), bool)
        has[index] = True
        if has.all():
            labels = [labels_of[sid] for sid in by_labels]
        else:
            labels = [labels_of[sid] for sid, h in zip(by_labels, has.tolist(), strict=True) if h]
            index = (np.cumsum(has) - 1)[index]
        return RollupColumns(
            labels,
            res,
            index,
            cols["ts"],
            min=cols.get("min"),
            max=cols.get("max"),
            sum=cols.get("sum"),
            count=cols.get("count"),
            last=cols.get("last"),
        )

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

    # -- snapshots ----------------------------------------------------------
    def snapshot(self, target: Path) -> SnapshotReport:
        """Write a consistent copy of the store into ``target`` (a new directory)
        while appends go on; ``DuckDBStore(target)`` opens it like the original.

        Consistent means: the copy holds exactly the samples acknowledged up
        to one instant. Under the write lock no flush, compaction or rollup
        build runs, so after a ``CHECKPOINT`` the database file holds a fixed
        state and is copied as it is. The samples not yet in it are those of
        the WAL segments: the log rotates (under the append lock, an instant)
        and the closed segments are copied beside it; appends meanwhile go to
        the fresh segment and the head. Appends never wait for the copy; the
        background flush does (up to the head's limit, after which writers
        get 429 as during any slow flush).
        """
        target = Path(target)
        started = time.monotonic()
        target.mkdir(parents=True)
        try:
            with self._write_lock:
                self._checkpoint()
                with self._append_lock:
                    segments = self.wal.rotate()
                    samples_in_wal = self.head.samples
                (target / "wal").mkdir()
                copied = [shutil.copyfile(self.path, target / self.path.name)]
                duck_wal = self.path.with_name(self.path.name + ".wal")
                if duck_wal.exists():
                    copied.append(shutil.copyfile(duck_wal, target / duck_wal.name))
                copied += [shutil.copyfile(seg, target / "wal" / seg.name) for seg in segments]
        except (OSError, duckdb.Error) as exc:
            shutil.rmtree(target, ignore_errors=True)
            raise StorageError(f"cannot write the snapshot {target}: {exc}") from exc
        return SnapshotReport(
            path=target,
            bytes=sum(Path(p).stat().st_size for p in copied),
            series=len(self.index),
            samples_in_wal=samples_in_wal,
            seconds=time.monotonic() - started,
        )

    # -- status -------------------------------------------------------------
    def disk_bytes(self) -> int:
        files = [self.path, self.path.with_name(self.path.name + ".wal"), *self.wal.segments()]
        return sum(_file_size(p) for p in files)

    def size(self) -> StoreSize:
        return StoreSize(len(self.index), self.head.samples, self.disk_bytes())

    def stats(self) -> StoreStats:
        tiers = {"raw": 0}
        with contextlib.suppress(duckdb.Error):
            cur = self._cursor()
            [(raw,)] = cur.execute("SELECT coalesce(sum(n), 0) FROM chunks").fetchall()
            tiers["raw"] = int(raw)
            for t, tier in enumerate(self.opts.tiers):
                [(n,)] = cur.execute(f"SELECT coalesce(sum(n), 0) FROM tier_{t}").fetchall()
                tiers[tier.name] = int(n)
        return StoreStats(
            series=len(self.index),
            samples_in_head=self.head.samples,
            disk_bytes=self.disk_bytes(),
            tiers=tiers,
        )

    def _stop_maintenance(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()

    def close(self) -> None:
        self._stop_maintenance()
        with contextlib.suppress(Exception), self._write_lock:
            self._flush_head(everything=True)
            self._checkpoint()
        self.wal.close()
        self._db.close()


_MAX_MAINTENANCE_BACKOFF_S = 60.0


def _file_size(path: Path) -> int:
    """Bytes of ``path``; 0 when it is gone (a flush may delete a WAL segment, a checkpoint
    DuckDB's own log, between listing and asking: seen as FileNotFoundError in stats())."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


# Stores whose maintenance thread runs. A store left open at exit must not be inside DuckDB
# when the interpreter tears its daemon threads down: that aborts the process ("terminate
# called ... exception not rethrown") after everything else has finished.
_WITH_MAINTENANCE: weakref.WeakSet[DuckDBStore] = weakref.WeakSet()


@atexit.register
def _stop_maintenance_at_exit() -> None:
    for store in list(_WITH_MAINTENANCE):
        store._stop_maintenance()


_CACHED_ROLLUP_SERIES = 64  # larger reads bypass the block cache (they would only flush it)


def _flat_rollups(
    per_series: Iterator[tuple[int, tuple[np.ndarray, ...]]], wanted: Sequence[str]
) -> dict[str, np.ndarray]:
    """Per-series ``(bucket, min, max, sum, count, last)`` as flat columns."""
    items = [(sid, a) for sid, a in per_series if len(a[0])]
    out = {
        "series_id": np.repeat(
            np.asarray([sid for sid, _ in items], np.int64),
            np.asarray([len(a[0]) for _, a in items], np.int64),
        )
    }
    for k in ["ts", *wanted]:
        dtype = np.int64 if k in ("ts", "count") else np.float64
        out[k] = (
            np.concatenate([a[ROLLUP_FIELDS.index(k)] for _, a in items]).astype(dtype, copy=False)
            if items
            else np.empty(0, dtype)
        )
    return out


_RAW_BATCH_CHUNKS = 4096


def _decode_sorted(
    rows: list[tuple[int, bytes, bytes]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chunk rows (ordered by series, window, flush) as flat arrays sorted by (series, time)."""
    ts, vals, counts = codec.decode_chunks_flat([r[1] for r in rows], [r[2] for r in rows])
    sids = np.repeat(np.asarray([r[0] for r in rows], np.int64), counts)
    if np.any((sids[1:] == sids[:-1]) & (ts[1:] <= ts[:-1])):  # overlapping or late chunks
        return _sort_last_write_wins(sids, ts, vals)
    return sids, ts, vals


_FLUSH_SLICE_SAMPLES = 1 << 18  # samples a flush sorts and encodes at a time
_COMPACT_STEP_SAMPLES = 1 << 20  # samples a compaction step merges at a time


def _series_slices(
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], target: int
) -> Iterator[list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """The parts' samples by ranges of series ids of about ``target`` samples each
    (a series is never split), each range's samples in write order."""
    parts = [p for p in parts if len(p[1])]
    n = sum(len(p[1]) for p in parts)
    if n <= target:
        if parts:
            yield parts
        return
    top = max(int(p[0].max()) for p in parts) + 1
    counts = np.zeros(top, np.int64)
    for s, _, _ in parts:
        counts += np.bincount(s, minlength=top)
    cum = np.cumsum(counts)
    cuts = np.unique(np.searchsorted(cum, np.arange(target, n, target), "left") + 1)
    bounds = [0, *cuts[cuts < top].tolist(), top]
    for lo, hi in itertools.pairwise(bounds):
        piece = []
        for s, t, v in parts:
            m = (s >= lo) & (s < hi)
            if m.all():
                piece.append((s, t, v))
            elif m.any():
                piece.append((s[m], t[m], v[m]))
        if piece:
            yield piece


def _sort_parts_last_write_wins(
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort samples given in write order (as segments) by (series, timestamp); of
    equal keys keep the last. ``sids`` and ``ts`` are not concatenated for the sort."""
    n = sum(len(p[1]) for p in parts)
    if n == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64)
    lo = min(int(p[1].min()) for p in parts if len(p[1]))
    span = max(int(p[1].max()) for p in parts if len(p[1])) - lo + 1
    top = max(int(p[0].max()) for p in parts if len(p[0])) + 1
    if top * span < 2**62:
        # One int64 key (series, then time), built in place part by part.
        key = np.empty(n, np.int64)
        pos = 0
        for s, t, _ in parts:
            k = key[pos : pos + len(t)]
            k[...] = s
            k *= span
            k += t
            k -= lo  # wraps in between at worst; the result is in [0, 2**62)
            pos += len(t)
        order = np.argsort(key, kind="stable")
        del key, k
    else:
        order = np.lexsort(
            (np.concatenate([p[1] for p in parts]), np.concatenate([p[0] for p in parts]))
        )
    sids = np.concatenate([p[0] for p in parts])[order]
    ts = np.concatenate([p[1] for p in parts])[order]
    vals = np.concatenate([p[2] for p in parts])[order]
    del order
    last = np.ones(n, bool)
    last[:-1] = (sids[1:] != sids[:-1]) | (ts[1:] != ts[:-1])
    if not last.all():
        sids = sids[last]
        ts = ts[last]
        vals = vals[last]
    return sids, ts, vals


def _sort_last_write_wins(
    sids: np.ndarray, ts: np.ndarray, vals: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``_sort_parts_last_write_wins`` of one segment."""
    return _sort_parts_last_write_wins([(sids, ts, vals)])


class _TierHandle:
    """What the rollup tiers may use of their store (``tiers.TierHost``), and nothing else."""

    def __init__(self, store: DuckDBStore) -> None:
        self._store = store
        self.opts = store.opts
        self.clock = store.clock
        self.head = store.head

    @property
    def newest_flushed_ms(self) -> int:
        return self._store.newest_flushed_ms

    @property
    def db(self) -> duckdb.DuckDBPyConnection:
        return self._store._db

    @property
    def cache(self) -> BlockCache:
        return self._store._cache

    @property
    def version(self) -> int:
        return self._store._version

    def transaction(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        return self._store._transaction()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self._store._cursor()

    def read_raw_batches(
        self, start: int, end: int, cur: duckdb.DuckDBPyConnection | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        return self._store._read_raw_batches(start, end, cur)
