"""Rollup tiers of the DuckDB store: building them, and reading them back.

Tier ``i`` keeps per series and bucket ``min, max, sum, count, last`` in the
plain table ``rollup_<i>`` (bucket number = start // resolution), built from
raw chunks (tier 0) or from tier ``i-1``. Each tier has a watermark: buckets
before it are built; reads combine them with buckets computed on the fly from
raw samples after it. The store delegates to a ``RollupTiers`` it owns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

import duckdb
import numpy as np
import pyarrow as pa

from perfintel.errors import StorageError
from perfintel.storage.duckdb.options import Tier
from perfintel.storage.samples import in_range, rollup

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from perfintel.storage.duckdb.cache import BlockCache
    from perfintel.storage.duckdb.options import StoreOptions


class TierHost(Protocol):
    """What the tiers need from the store that owns them (``DuckDBStore``)."""

    opts: StoreOptions
    clock: Callable[[], float]
    _db: duckdb.DuckDBPyConnection
    _cache: BlockCache
    _version: int
    newest_flushed_ms: int

    def _transaction(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]: ...

    def _cursor(self) -> duckdb.DuckDBPyConnection: ...

    def _read_raw_range(
        self, start: int, end: int, cur: duckdb.DuckDBPyConnection | None = None
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]: ...


ROLLUP_FIELDS = ("ts", "min", "max", "sum", "count", "last")


class RollupTiers:
    """Tier maintenance and reads for one ``DuckDBStore`` (which owns the database,
    its transactions, cursors and block cache); this object owns the watermarks."""

    def __init__(self, store: TierHost) -> None:
        self.store = store
        self.opts = store.opts
        self.built_until = [-1] * len(self.opts.tiers)
        self._rebuild_from: int | None = None
        self._newest_seen = -1  # newest flushed timestamp, and when it last moved (ms)
        self._newest_moved_at = 0

    def load(self) -> None:
        for t, until in self.store._db.execute(
            "SELECT tier, built_until FROM rollup_state"
        ).fetchall():
            if t < len(self.built_until):
                self.built_until[t] = int(until)

    def invalidate(self, windows: np.ndarray) -> None:
        """New raw data behind tier 0's watermark: the tiers rebuild from there."""
        if not len(windows):
            return
        earliest = int(windows.min())
        if earliest < self.built_until[0]:
            self._rebuild_from = (
                earliest if self._rebuild_from is None else min(self._rebuild_from, earliest)
            )

    def build(self, *, force: bool) -> int:
        """Advance each tier's watermark over sealed data; returns the buckets written.

        Tier 0 advances over raw blocks once they are sealed (or have ended,
        with ``force``); tier ``i`` follows tier ``i-1`` one source window at a
        time (as far as it can, with ``force``).
        """
        now = int(self.store.clock() * 1000)
        block = self.opts.block_ms
        if self._rebuild_from is not None:
            self._lower_watermarks(self._rebuild_from)
            self._rebuild_from = None
        written = 0
        grace = 0 if force else self.opts.seal_grace_ms
        # Forced (after flushing everything): every bucket that has ended, so coarse
        # reads need no raw tail; otherwise whole sealed blocks, which are all flushed.
        unit = self.opts.tiers[0].resolution_ms if force and self.opts.tiers else block
        target0 = (now - grace) - (now - grace) % unit
        if not force:
            # Not into the block of the newest flushed sample while that still moves:
            # a backfill arriving in time order would otherwise find its blocks
            # already rolled up, and rebuild them.
            newest = self.store.newest_flushed_ms
            if newest != self._newest_seen:
                self._newest_seen, self._newest_moved_at = newest, now
            if now - self._newest_moved_at < self.opts.seal_grace_ms:
                target0 = min(target0, newest - newest % block)
        for t, tier in enumerate(self.opts.tiers):
            if t == 0:
                target = target0
            else:
                src = self.opts.tiers[t - 1]
                target = self.built_until[t - 1]
                unit = tier.resolution_ms if force else max(tier.resolution_ms, src.window_ms)
                target -= target % unit
            lo = self.built_until[t]
            if lo < 0:  # never built: start at the oldest data
                row = self.store._db.execute("SELECT min(min_ts) FROM chunks").fetchone()
                if not row or row[0] is None:
                    return written
                lo = int(row[0]) - int(row[0]) % tier.window_ms
            while lo < target:
                hi = min(lo - lo % tier.window_ms + tier.window_ms, target)
                written += self._extend_tier(t, tier, lo, hi)
                lo = hi
            if lo != self.built_until[t]:
                with self.store._transaction() as cur:
                    self._set_watermark(cur, t, lo)
        return written

    def _set_watermark(self, cur: duckdb.DuckDBPyConnection, t: int, until: int) -> None:
        cur.execute("DELETE FROM rollup_state WHERE tier = ?", [t])
        cur.execute("INSERT INTO rollup_state VALUES (?, ?)", [t, until])
        self.built_until[t] = until  # after the statements: a failed write leaves it as it was

    def _lower_watermarks(self, ts: int) -> None:
        """Forget tier buckets from the block holding ``ts`` on, so they are rebuilt."""
        for t, tier in enumerate(self.opts.tiers):
            unit = max(self.opts.block_ms, tier.resolution_ms)
            w = ts - ts % unit
            if self.built_until[t] > w:
                with self.store._transaction() as cur:
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
            for sid, ts, vals in self.store._read_raw_range(lo, hi):
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
        with self.store._transaction() as cur:
            cur.execute(f"DELETE FROM rollup_{t} WHERE ts >= ?", [-(-lo // tier.resolution_ms)])
        for off in range(0, table.num_rows, 100_000):
            with self.store._transaction() as cur:
                cur.register("new_rollups", table.slice(off, 100_000))
                cur.execute(f"INSERT INTO rollup_{t} SELECT * FROM new_rollups")
                cur.unregister("new_rollups")
        return table.num_rows

    def _read_tier(
        self,
        t: int,
        start: int,
        end: int,
        sids: np.ndarray | None,
        cur: duckdb.DuckDBPyConnection | None = None,
    ) -> Iterator[tuple[int, tuple[np.ndarray, ...]]]:
        """Built buckets of tier ``t`` with start in ``[start, end]``, per series."""
        cur = cur or self.store._cursor()
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

    def read_cached(
        self, t: int, start: int, end: int, sids: np.ndarray
    ) -> Iterator[tuple[int, tuple[np.ndarray, ...]]]:
        """``_read_tier`` through the block cache."""
        version = self.store._version
        missing = []
        for sid in sids.tolist():
            hit = self.store._cache.get(("r", t, sid), version, start, end)
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
            self.store._cache.put(
                ("r", t, sid), version, start, end, arrays, 64 + sum(a.nbytes for a in arrays)
            )
            if len(arrays[0]):
                yield sid, arrays


def concat_buckets(parts: Sequence[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
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
