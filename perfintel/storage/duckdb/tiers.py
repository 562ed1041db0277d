"""Rollup tiers of the DuckDB store: building them, and reading them back.

Tier ``i`` keeps per series and bucket ``min, max, sum, count, last`` (bucket
number = start // resolution), built from raw chunks (tier 0) or from tier
``i-1``. The table ``tier_<i>`` holds one row per series and tier window whose
columns are chunk-codec blobs (bucket numbers as timestamps; each aggregate as
values): neighbouring buckets are correlated, which delta coding exploits and
DuckDB's per-value compression of plain rows did not (about 6 bytes per value
as rows, under 2 as blobs). Each tier has a watermark: buckets before it are
built, buckets after it are never read; reads combine built buckets with
buckets computed on the fly from raw samples after it. The store delegates to
a ``RollupTiers`` it owns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

import duckdb
import numpy as np

from perfintel.errors import StorageError
from perfintel.storage.duckdb import codec
from perfintel.storage.duckdb.options import Tier
from perfintel.storage.duckdb.tables import object_column, series_filter
from perfintel.storage.samples import coarsen_many, rollup_many

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from perfintel.storage.duckdb.cache import BlockCache
    from perfintel.storage.duckdb.head import Head
    from perfintel.storage.duckdb.options import StoreOptions


class TierHost(Protocol):
    """The narrow handle the tiers get from the store that owns them (``DuckDBStore``):
    its options, clock and head, the database (re-read at each use: the store may reopen
    it), its transactions and cursors, the block cache and its version, raw reads."""

    opts: StoreOptions
    clock: Callable[[], float]
    head: Head

    @property
    def newest_flushed_ms(self) -> int: ...

    @property
    def db(self) -> duckdb.DuckDBPyConnection: ...

    @property
    def cache(self) -> BlockCache: ...

    @property
    def version(self) -> int: ...

    def transaction(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]: ...

    def cursor(self) -> duckdb.DuckDBPyConnection: ...

    def read_raw_batches(
        self, start: int, end: int, cur: duckdb.DuckDBPyConnection | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]: ...


ROLLUP_FIELDS = ("ts", "min", "max", "sum", "count", "last")
_AGGREGATES = ROLLUP_FIELDS[1:]
_TIER_COLUMNS = ("series_id", "b_lo", "b_hi", "n", *ROLLUP_FIELDS)
_WRITE_SLICE_ROWS = 20_000  # rows (series windows) written per transaction


def tier_table_sql(t: int) -> str:
    """DDL of tier ``t``'s table: one row per series and tier window, ``b_lo``/``b_hi``
    its first and last bucket number, the columns codec blobs (``ts`` of bucket numbers)."""
    return (
        f"CREATE TABLE IF NOT EXISTS tier_{t}(series_id UINTEGER, b_lo INTEGER, b_hi INTEGER, "
        "n INTEGER, ts BLOB, min BLOB, max BLOB, sum BLOB, count BLOB, last BLOB)"
    )


class RollupTiers:
    """Tier maintenance and reads for one ``DuckDBStore`` (which owns the database,
    its transactions, cursors and block cache); this object owns the watermarks."""

    def __init__(self, store: TierHost) -> None:
        self.store = store
        self.opts = store.opts
        self.built_until = [-1] * len(self.opts.tiers)
        self._newest_seen = -1  # newest flushed timestamp, and when it last moved (ms)
        self._newest_moved_at = 0

    def load(self) -> None:
        for t, until in self.store.db.execute(
            "SELECT tier, built_until FROM rollup_state"
        ).fetchall():
            if t < len(self.built_until):
                self.built_until[t] = int(until)
        self._migrate_row_tables()

    def _migrate_row_tables(self) -> None:
        """Databases written before tiers were stored as blobs keep them as one row
        per bucket in ``rollup_<t>``: re-encode those into ``tier_<t>``, a range of
        series at a time, then drop them (all in one transaction per tier, so a
        crash leaves either table whole)."""
        names = {
            r[0] for r in self.store.db.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        }
        for t, tier in enumerate(self.opts.tiers):
            if f"rollup_{t}" not in names:
                continue
            per_window = tier.window_ms // tier.resolution_ms
            with self.store.transaction() as cur:
                cur.execute(f"DELETE FROM tier_{t}")
                [(top,)] = cur.execute(f"SELECT max(series_id) FROM rollup_{t}").fetchall()
                top = -1 if top is None else int(top)
                for lo_id in range(0, top + 1, 10_000):
                    old = cur.sql(
                        f"SELECT series_id, ts, {', '.join(_AGGREGATES)} FROM rollup_{t} "
                        "WHERE series_id >= ? AND series_id < ? ORDER BY series_id, ts",
                        params=[lo_id, lo_id + 10_000],
                    ).fetchnumpy()
                    cols = {k: np.ma.getdata(v) for k, v in old.items()}
                    sids = cols["series_id"].astype(np.int64)
                    if len(sids):
                        self._insert(cur, t, _encode_windows(sids, cols, per_window))
                cur.execute(f"DROP TABLE rollup_{t}")

    def invalidate(self, cur: duckdb.DuckDBPyConnection, windows: np.ndarray) -> None:
        """Raw data written to block ``windows`` (in ``cur``'s transaction, which
        writes it): watermarks past the earliest of them come down to it, in the
        same transaction, so no read and no restart sees a tier without it.

        Buckets at or after a watermark are never read, and the next extension
        of a window cuts its rows back to the watermark, so rows that merely
        straddle the new watermark need no rewrite here."""
        if not len(windows):
            return
        earliest = max(int(windows.min()), self._rebuildable_from())
        for t, tier in enumerate(self.opts.tiers):
            unit = max(self.opts.block_ms, tier.resolution_ms)
            w = earliest - earliest % unit
            # Not below the rebuildable part: the whole tier window must have raw data.
            w = max(w, -(-self._rebuildable_from() // tier.window_ms) * tier.window_ms)
            if self.built_until[t] > w:
                cur.execute(f"DELETE FROM tier_{t} WHERE b_lo >= ?", [-(-w // tier.resolution_ms)])
                self._set_watermark(cur, t, w)

    def _rebuildable_from(self) -> int:
        """The oldest time whose raw samples still exist (the raw retention cut).

        A tier's rows before it cannot be built again: a late sample there
        (a timestamp of 0, written before appends were bounded) must not bring a
        watermark down to it, which deleted every row after it and rebuilt them
        from raw samples that retention had already deleted (the rows were lost,
        and rebuilding decades of empty windows took minutes)."""
        now = int(self.store.clock() * 1000)
        return now - self.opts.raw_retention_ms

    def build(self, *, force: bool) -> int:
        """Advance each tier's watermark over sealed data; returns the buckets written.

        Tier 0 advances over raw blocks once they are sealed (or have ended,
        with ``force``); tier ``i`` follows tier ``i-1`` one source window at a
        time (as far as it can, with ``force``).
        """
        now = int(self.store.clock() * 1000)
        block = self.opts.block_ms
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
            still = now - self._newest_moved_at
            if still < self.opts.seal_grace_ms:
                # A backfill of sealed history under way (a flush moves the newest
                # sample at least every head_max_age_s while data arrives): leave
                # the tiers until it settles, or a forced build, instead of writing
                # segments of windows that the next blocks extend again.
                settle_ms = 2_000 * self.opts.head_max_age_s
                if newest < now - self.opts.seal_grace_ms and still < settle_ms:
                    return written
                target0 = min(target0, newest - newest % block)
        # Never past a block the head still holds samples of: they would miss the
        # tier, and their flush would bring the watermark back down to rebuild it.
        held = [int(ts.min()) for _, ts, _ in self.store.head.parts() if len(ts)]
        if held:
            target0 = min(target0, min(held) - min(held) % block)
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
                [(oldest,)] = (
                    self.store.cursor().execute("SELECT min(min_ts) FROM chunks").fetchall()
                )
                if oldest is None:
                    return written
                # Not from windows past the tier's own retention (a stray sample at
                # ts=0 made this loop over fifty years of empty windows).
                now = int(self.store.clock() * 1000)
                lo = max(int(oldest), now - tier.retention_ms - tier.window_ms)
                lo -= lo % tier.window_ms
            while lo < target:
                hi = min(lo - lo % tier.window_ms + tier.window_ms, target)
                written += self._extend_tier(t, tier, lo, hi, merge=force)
                lo = hi
            if lo != self.built_until[t]:
                with self.store.transaction() as cur:
                    self._set_watermark(cur, t, lo)
        return written

    def _set_watermark(self, cur: duckdb.DuckDBPyConnection, t: int, until: int) -> None:
        cur.execute("DELETE FROM rollup_state WHERE tier = ?", [t])
        cur.execute("INSERT INTO rollup_state VALUES (?, ?)", [t, until])
        self.built_until[t] = until  # after the statements: a failed write leaves it as it was

    def _extend_tier(self, t: int, tier: Tier, lo: int, hi: int, *, merge: bool) -> int:
        """Write the buckets of ``[lo, hi)``, which lie in one tier window.

        They go as one row (segment) per series. When ``hi`` completes the
        window, or with ``merge``, the window's earlier segments are decoded and
        written back with the new buckets as one row per series, so a window
        built a block at a time ends as one blob per column; a segment that
        reaches past ``lo`` (left by a lowered watermark) is cut back the same
        way. Rows go in slices of series, each slice its own transaction that
        replaces what it rewrites: a crash between slices is harmless, as the
        watermark has not moved and the next pass cuts every row of the window
        back to its buckets before ``lo`` again.
        """
        res = tier.resolution_ms
        first = -(-lo // res)  # first bucket number to (re)build
        per_window = tier.window_ms // res
        window_lo = first - first % per_window
        merge = merge or -(-hi // res) >= window_lo + per_window
        parts: list[dict[str, np.ndarray]] = []
        if t == 0:
            for sids, ts, vals in self.store.read_raw_batches(lo, hi):
                inside = (ts >= lo) & (ts < hi)
                rolled = rollup_many(sids[inside], ts[inside], vals[inside], res)
                parts.append(dict(zip(("series_id", *ROLLUP_FIELDS), rolled, strict=True)))
        else:
            src = self.fetch(t - 1, lo, hi - 1, None)  # sorted by series, then bucket
            b, mn, mx, sm, cnt, last = (src[k] for k in ROLLUP_FIELDS)
            rolled = coarsen_many(src["series_id"], b, mn, mx, sm, cnt, last, res)
            parts.append(dict(zip(("series_id", *ROLLUP_FIELDS), rolled, strict=True)))
        written = sum(len(p["series_id"]) for p in parts)
        for p in parts:
            p["ts"] = p["ts"] // res  # bucket numbers
        # The rows this extension replaces: every earlier row of the window when
        # merging, else only rows holding buckets from ``first`` on.
        replaced = "b_lo >= ? AND b_lo < ?" + ("" if merge else " AND b_hi >= ?")
        params: list[object] = [window_lo, first]
        if not merge:
            params.append(first)
        with self.store.transaction() as cur:
            cur.execute(f"DELETE FROM tier_{t} WHERE b_lo >= ?", [first])
            kept = self._decode_rows(cur, t, replaced, params, _AGGREGATES)
        inside = kept["ts"] < first
        parts.insert(0, {k: v[inside] for k, v in kept.items()})
        if not any(len(p["series_id"]) for p in parts):
            return 0
        cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        order = row_order(cols["series_id"], cols["ts"])  # kept and new, series by series
        if order is not None:
            cols = {k: v[order] for k, v in cols.items()}
        rows = _encode_windows(cols["series_id"], cols, per_window)
        n = len(rows["series_id"])
        for off in range(0, n, _WRITE_SLICE_ROWS):
            piece = {k: v[off : off + _WRITE_SLICE_ROWS] for k, v in rows.items()}
            ids = piece["series_id"]
            with self.store.transaction() as cur:
                cur.execute(
                    f"DELETE FROM tier_{t} WHERE {replaced} AND series_id BETWEEN ? AND ?",
                    [*params, int(ids[0]), int(ids[-1])],
                )
                self._insert(cur, t, piece)
        return written

    @staticmethod
    def _insert(cur: duckdb.DuckDBPyConnection, t: int, rows: dict[str, np.ndarray]) -> None:
        cur.register("new_rollups", rows)
        cur.execute(f"INSERT INTO tier_{t} SELECT {', '.join(_TIER_COLUMNS)} FROM new_rollups")
        cur.unregister("new_rollups")

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
        aggregates: Sequence[str] = _AGGREGATES,
        cur: duckdb.DuckDBPyConnection | None = None,
    ) -> dict[str, np.ndarray]:
        """Stored buckets of tier ``t`` with start in ``[start, end]`` as flat columns
        ``series_id``, ``ts`` (bucket start, ms) and the ``aggregates`` asked for,
        sorted by series id then bucket. One query for the rows, and one call
        of the chunk decoder per column: no per-row or per-series Python work.

        ``sids`` go through ``tables.series_filter``.
        """
        res_ms = self.opts.tiers[t].resolution_ms
        first, last = -(-start // res_ms), end // res_ms  # bucket numbers
        # A cursor of its own: the relation API refuses a connection with a result
        # still open (a ``fetchone`` elsewhere on the thread's cursor).
        own = cur is None
        cur = cur or self.store.db.cursor()
        try:
            with series_filter(cur, sids) as (cond, more, keep):
                where = "b_hi >= ? AND b_lo <= ?" + cond
                out = self._decode_rows(cur, t, where, [first, last, *more], aggregates, keep)
        finally:
            if own:
                cur.close()
        inside = (out["ts"] >= first) & (out["ts"] <= last)
        if not inside.all():
            out = {k: v[inside] for k, v in out.items()}
        out["ts"] = out["ts"] * res_ms
        return out

    @staticmethod
    def _decode_rows(
        cur: duckdb.DuckDBPyConnection,
        t: int,
        where: str,
        params: list[object],
        aggregates: Sequence[str],
        keep: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """The buckets of tier ``t``'s rows matching ``where`` (and the id mask
        ``keep``) as flat columns ``series_id``, ``ts`` (bucket numbers) and the
        ``aggregates`` asked for, sorted by series then bucket."""
        wanted = [k for k in _AGGREGATES if k in aggregates]
        blobs = wanted or ["count"]  # bucket numbers come with any column
        sql = f"SELECT series_id, b_lo, ts, {', '.join(blobs)} FROM tier_{t} WHERE {where}"
        try:
            table = cur.sql(sql, params=params).fetchnumpy()
        except duckdb.Error as exc:
            raise StorageError(f"reading rollups failed: {exc}") from exc
        row_sid = np.ma.getdata(table["series_id"]).astype(np.int64)
        pick = np.arange(len(row_sid)) if keep is None else np.flatnonzero(keep[row_sid])
        order = row_order(row_sid[pick], np.ma.getdata(table["b_lo"]).astype(np.int64)[pick])
        if order is not None:
            pick = pick[order]
        ts_blobs = np.ma.getdata(table["ts"])[pick].tolist()
        out: dict[str, np.ndarray] = {}
        bucket = counts = np.empty(0, np.int64)
        for k in blobs:
            bucket, values, counts = codec.decode_chunks_flat(
                ts_blobs, np.ma.getdata(table[k])[pick].tolist()
            )
            if k in wanted:
                out[k] = values.astype(np.int64) if k == "count" else values
        return {"series_id": np.repeat(row_sid[pick], counts), "ts": bucket, **out}

    def read_cached(
        self, t: int, start: int, end: int, sids: np.ndarray
    ) -> Iterator[tuple[int, tuple[np.ndarray, ...]]]:
        """``_read_tier`` through the block cache."""
        version = self.store.version
        missing = []
        for sid in sids.tolist():
            hit = self.store.cache.get(("r", t, sid), version, start, end)
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
            self.store.cache.put(
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


def _encode_windows(
    sids: np.ndarray, cols: dict[str, np.ndarray], per_window: int
) -> dict[str, np.ndarray]:
    """Buckets sorted by (series, bucket number ``cols["ts"]``) as tier-table rows,
    one per series and window of ``per_window`` buckets, each column a codec blob."""
    buckets = cols["ts"].astype(np.int64)
    window = buckets // per_window
    starts = np.flatnonzero(np.r_[True, (sids[1:] != sids[:-1]) | (window[1:] != window[:-1])])
    bounds = np.r_[starts, len(sids)]
    rows: dict[str, np.ndarray] = {
        "series_id": sids[starts].astype(np.uint32),
        "b_lo": buckets[starts].astype(np.int32),
        "b_hi": buckets[bounds[1:] - 1].astype(np.int32),
        "n": np.diff(bounds).astype(np.int32),
    }
    for k in _AGGREGATES:
        ts_blobs, val_blobs = codec.encode_chunks(
            buckets, cols[k].astype(np.float64, copy=False), bounds
        )
        rows.setdefault("ts", object_column(ts_blobs))
        rows[k] = object_column(val_blobs)
    return rows
