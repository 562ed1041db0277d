"""Every database write of the DuckDB store: flushing the head into chunks,
compaction, retention, the maintenance thread's loop, and the transaction all
of them go through.

``StoreMaintenance`` is a part of ``DuckDBStore``, not a class of its own: its
state, the format it writes and the locking (``_write_lock`` serialises every
database write, ``_append_lock`` guards the head, index and WAL) are documented
and set up in ``store.py``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import orjson

from perfintel.errors import StorageError
from perfintel.storage.duckdb import codec
from perfintel.storage.duckdb.head import Head
from perfintel.storage.duckdb.index import SeriesIndex
from perfintel.storage.duckdb.options import MaintenanceReport, StoreOptions
from perfintel.storage.duckdb.sorting import (
    decode_sorted,
    series_slices,
    sort_parts_last_write_wins,
)
from perfintel.storage.duckdb.tables import object_column
from perfintel.storage.duckdb.tiers import RollupTiers
from perfintel.storage.duckdb.wal import WriteAheadLog

# The store's own logger: its messages keep one name whichever part logs them.
log = logging.getLogger("perfintel.storage.duckdb.store")
_MAX_MAINTENANCE_BACKOFF_S = 60.0
_FLUSH_SLICE_SAMPLES = 1 << 18  # samples a flush sorts and encodes at a time
_COMPACT_STEP_SAMPLES = 1 << 20  # samples a compaction step merges at a time


class StoreMaintenance:
    """The database-writing part of ``DuckDBStore`` (store.py), which owns the state below."""

    opts: StoreOptions
    clock: Callable[[], float]
    index: SeriesIndex
    head: Head
    wal: WriteAheadLog
    tiers: RollupTiers
    newest_flushed_ms: int
    _db: duckdb.DuckDBPyConnection
    _append_lock: threading.Lock
    _write_lock: threading.RLock
    _version: int
    _touched_windows: set[int]
    _persisted_series: int
    _seq: int
    _head_since: float
    _held_back: int
    _latest_at_last_look: np.ndarray
    _stop: threading.Event
    _wake: threading.Event

    if TYPE_CHECKING:  # defined by the other parts of the store

        def _reopen_if_invalidated(self, exc: BaseException) -> bool: ...

        def _wal_error(self, what: str, exc: OSError) -> StorageError: ...

        def _cursor(self) -> duckdb.DuckDBPyConnection: ...

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
            for piece in series_slices(parts, _FLUSH_SLICE_SAMPLES):
                sids, ts, vals = sort_parts_last_write_wins(piece)
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
            table = self._encode_chunks(*decode_sorted(rows), self._seq)
            cur.execute(
                "DELETE FROM chunks USING victims v WHERE chunks.series_id = v.series_id "
                "AND chunks.window_start = v.window_start"
            )
            cur.register("merged", table)
            cur.execute("INSERT INTO chunks SELECT * FROM merged")
            cur.unregister("merged")
            cur.unregister("victims")

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
