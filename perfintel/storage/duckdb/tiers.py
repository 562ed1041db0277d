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

from perfintel.errors import StorageError
from perfintel.storage.duckdb.options import Tier
from perfintel.storage.samples import rollup_many

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

    def _read_raw_batches(
        self, start: int, end: int, cur: duckdb.DuckDBPyConnection | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]: ...


ROLLUP_FIELDS = ("ts", "min", "max", "sum", "count", "last")
_INSERT_COLUMNS = ", ".join(
    f"coalesce({k}, 'NaN'::DOUBLE)" if k in ("min", "max", "sum", "last") else k
    for k in ("series_id", *ROLLUP_FIELDS)
)


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
            for sids, ts, vals in self.store._read_raw_batches(lo, hi):
                inside = (ts >= lo) & (ts < hi)
                rolled = rollup_many(sids[inside], ts[inside], vals[inside], tier.resolution_ms)
                ids.append(rolled[0].astype(np.uint32))
                for k, a in zip(ROLLUP_FIELDS, rolled[1:], strict=True):
                    cols[k].append(a)
        else:
            src = self.fetch(t - 1, lo, hi - 1, None)  # sorted by series, then bucket
            rolled = _coarsen(src["series_id"], [src[k] for k in ROLLUP_FIELDS], tier.resolution_ms)
            ids.append(rolled[0].astype(np.uint32))
            for k, a in zip(ROLLUP_FIELDS, rolled[1:], strict=True):
                cols[k].append(a)
        if not ids:
            return 0
        columns = {k: np.concatenate(v) for k, v in cols.items()}
        columns["ts"] = (columns["ts"] // tier.resolution_ms).astype(
            np.int32
        )  # stored as bucket number
        columns["count"] = columns["count"].astype(np.int32)
        table = {"series_id": np.concatenate(ids), **columns}
        rows = len(table["series_id"])
        with self.store._transaction() as cur:
            cur.execute(f"DELETE FROM rollup_{t} WHERE ts >= ?", [-(-lo // tier.resolution_ms)])
        for off in range(0, rows, 100_000):
            with self.store._transaction() as cur:
                # A dict of numpy arrays, not Arrow (see ``store._objects``); a numpy
                # scan reads NaN as NULL, and these columns are never NULL: back to NaN.
                cur.register("new_rollups", {k: v[off : off + 100_000] for k, v in table.items()})
                cur.execute(f"INSERT INTO rollup_{t} SELECT {_INSERT_COLUMNS} FROM new_rollups")
                cur.unregister("new_rollups")
        return rows

    def _read_tier(
        self,
        t: int,
        start: int,
        end: int,
        sids: np.ndarray | None,
        cur: duckdb.DuckDBPyConnection | None = None,
    ) -> Iterator[tuple[int, tuple[np.ndarray, ...]]]:
        """Built buckets of tier ``t`` with start in ``[start, end]``, per series."""
        cols = self.fetch(t, start, end, sids, ROLLUP_FIELDS[1:], cur)
        sid_col = cols["series_id"]
        if not len(sid_col):
            return
        arrays = [cols[k] for k in ROLLUP_FIELDS]
        bounds = np.flatnonzero(np.r_[True, sid_col[1:] != sid_col[:-1], True])
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            yield int(sid_col[a]), tuple(x[a:b] for x in arrays)

    def fetch(
        self,
        t: int,
        start: int,
        end: int,
        sids: np.ndarray | None,
        aggregates: Sequence[str] = ROLLUP_FIELDS[1:],
        cur: duckdb.DuckDBPyConnection | None = None,
        *,
        ordered: bool = True,
    ) -> dict[str, np.ndarray]:
        """Built buckets of tier ``t`` with start in ``[start, end]`` as flat columns
        ``series_id``, ``ts`` (bucket start, ms) and the ``aggregates`` asked for,
        sorted by series id then bucket (in the order read unless ``ordered``). One
        query fetched as Arrow: no per-row or per-series Python work.

        Series ids close together (most of an id range, as a selector over a
        whole job gives) are read as an id range and filtered here, which lets
        DuckDB skip row groups by their min/max instead of joining every row
        against the id list.
        """
        wanted = [k for k in ROLLUP_FIELDS[1:] if k in aggregates]
        sql = (
            f"SELECT {', '.join(['series_id', 'ts', *wanted])} FROM rollup_{t} "
            "WHERE ts >= ? AND ts <= ?"
        )
        res_ms = self.opts.tiers[t].resolution_ms
        params: list[object] = [-(-start // res_ms), end // res_ms]  # bucket numbers
        keep: np.ndarray | None = None  # id mask, when an id range was read for a sparser set
        # A cursor of its own: the relation API refuses a connection with a result
        # still open (a ``fetchone`` elsewhere on the thread's cursor).
        own = cur is None
        cur = cur or self.store._db.cursor()
        registered = False
        if sids is not None and len(sids) <= 32:
            sql += f" AND series_id IN ({','.join('?' * len(sids))})"
            params += sids.tolist()
        elif sids is not None and len(sids):
            lo_id, hi_id = int(sids.min()), int(sids.max())
            if 4 * len(sids) >= hi_id - lo_id + 1:
                sql += " AND series_id BETWEEN ? AND ?"
                params += [lo_id, hi_id]
                keep = np.zeros(hi_id + 1, bool)
                keep[sids] = True
                if keep[lo_id:].all():
                    keep = None
            else:
                cur.register("want", {"want_id": sids.astype(np.uint32)})
                registered = True
                sql += " AND series_id IN (SELECT want_id FROM want)"
        try:
            table = cur.sql(sql, params=params).fetchnumpy()
        except duckdb.Error as exc:
            raise StorageError(f"reading rollups failed: {exc}") from exc
        finally:
            if registered:
                cur.unregister("want")
            if own:
                cur.close()
        # fetchnumpy: plain arrays (masked only for NULLs, which these columns never hold)
        cols = {name: np.ma.getdata(table[name]) for name in ("series_id", "ts", *wanted)}
        sid_col = cols["series_id"].astype(np.int64)
        bucket = cols["ts"].astype(np.int64)
        pick: np.ndarray | None = None
        if keep is not None and len(sid_col):
            pick = np.flatnonzero(keep[sid_col])
            sid_col, bucket = sid_col[pick], bucket[pick]
        order = row_order(sid_col, bucket) if ordered else None
        if order is not None:
            sid_col, bucket = sid_col[order], bucket[order]
            pick = order if pick is None else pick[order]
        out = {"series_id": sid_col, "ts": bucket * res_ms}
        for k in wanted:
            col = cols[k] if pick is None else cols[k][pick]
            out[k] = col.astype(np.int64 if k == "count" else np.float64, copy=False)
        return out

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


def row_order(sid_col: np.ndarray, bucket: np.ndarray) -> np.ndarray | None:
    """Index sorting rows by series id, then bucket (stable); ``None`` when already sorted.

    Rows come in a few runs each sorted by id (one per insert), so this is a cheap merge.
    """
    key = (sid_col << 32) + bucket  # bucket numbers fit in 32 bits (an INTEGER column)
    if len(key) > 1 and not bool(np.all(key[1:] >= key[:-1])):
        return np.argsort(key, kind="stable")
    return None


def _coarsen(sids: np.ndarray, arrays: Sequence[np.ndarray], res: int) -> tuple[np.ndarray, ...]:
    """Combine finer buckets, sorted by (series, bucket), into coarser ones (min of
    mins, sum of sums, last of lasts); returns ``(series, bucket, min, max, sum, count, last)``."""
    b, mn, mx, sm, cnt, last = arrays
    if not len(b):
        return (sids, *arrays)
    nb = b - np.mod(b, res)
    starts = np.flatnonzero(np.r_[True, (nb[1:] != nb[:-1]) | (sids[1:] != sids[:-1])])
    ends = np.r_[starts[1:], len(nb)]
    with np.errstate(invalid="ignore", over="ignore"):
        return (
            sids[starts],
            nb[starts],
            np.minimum.reduceat(mn, starts),
            np.maximum.reduceat(mx, starts),
            np.add.reduceat(sm, starts),
            np.add.reduceat(cnt, starts),
            last[ends - 1],
        )
