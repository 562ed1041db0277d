"""The read paths of the DuckDB store: per-thread cursors, raw samples
(``select``), rollups (``select_rollup``, ``select_rollup_columns``), series and
label names, and the committed raw batches the rollup tiers are built from.

``StoreReads`` is a part of ``DuckDBStore``, not a class of its own: its state,
the format it reads and the thread-safety story (reads run concurrently, each
thread on its own cursor) are documented and set up in ``store.py``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence

import duckdb
import numpy as np

from perfintel.errors import StorageError
from perfintel.model import LabelSet, Selector
from perfintel.storage.base import (
    ROLLUP_AGGREGATES,
    QueryLimits,
    RollupColumns,
    SeriesRollup,
    SeriesSamples,
    check_limits,
    label_names_of,
    label_values_of,
)
from perfintel.storage.duckdb import codec
from perfintel.storage.duckdb.cache import BlockCache
from perfintel.storage.duckdb.head import Head
from perfintel.storage.duckdb.index import SeriesIndex
from perfintel.storage.duckdb.options import StoreOptions
from perfintel.storage.duckdb.sorting import decode_sorted
from perfintel.storage.duckdb.tables import series_filter
from perfintel.storage.duckdb.tiers import ROLLUP_FIELDS, RollupTiers
from perfintel.storage.samples import dedupe_last_wins, in_range, rollup

_CACHED_ROLLUP_SERIES = 64  # larger reads bypass the block cache (they would only flush it)
_RAW_BATCH_CHUNKS = 4096


class StoreReads:
    """The reading part of ``DuckDBStore`` (store.py), which owns the state below."""

    opts: StoreOptions
    index: SeriesIndex
    head: Head
    tiers: RollupTiers
    _db: duckdb.DuckDBPyConnection
    _local: threading.local
    _generation: int
    _version: int
    _cache: BlockCache

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
                yield decode_sorted(pending)
                pending = []
            pending.append(row)
        if pending:
            yield decode_sorted(pending)


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
