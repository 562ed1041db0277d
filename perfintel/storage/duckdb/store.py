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
in-flight flush and committed chunks, newest last. A read takes the head
before the database: a flush commits its chunks before it releases the
samples it took, so a flush between the two reads shows them twice (one is
dropped by last-write-wins), never in neither.

Code: ``DuckDBStore`` here owns the state, the set-up, WAL replay, appends,
snapshots and status; two parts share that state and this documentation:
``StoreMaintenance`` (``maintenance.py``: flush, compaction, retention, the
maintenance loop, the transaction every database write goes through) and
``StoreReads`` (``reads.py``: the per-thread cursors and every read path).
``sorting.py`` holds the pure array helpers of both (last write wins).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import shutil
import threading
import time
import weakref
from collections.abc import Callable, Iterator
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
from perfintel.model import LabelSet
from perfintel.storage.base import (
    AppendResult,
    SnapshotReport,
    StoreSize,
    StoreStats,
)
from perfintel.storage.bounds import split_out_of_bounds
from perfintel.storage.duckdb.cache import BlockCache
from perfintel.storage.duckdb.head import Head
from perfintel.storage.duckdb.index import SeriesIndex
from perfintel.storage.duckdb.maintenance import StoreMaintenance
from perfintel.storage.duckdb.options import StoreOptions
from perfintel.storage.duckdb.reads import StoreReads
from perfintel.storage.duckdb.tiers import RollupTiers, tier_table_sql
from perfintel.storage.duckdb.wal import WalSamples, WriteAheadLog

log = logging.getLogger(__name__)
LOST_SERIES_NAME = "perfintel_wal_lost_series"  # series whose WAL definition was damaged


class DuckDBStore(StoreReads, StoreMaintenance):
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
