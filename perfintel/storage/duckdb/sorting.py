"""Sorting samples by (series, time) with the last write winning, and decoding
chunk rows into that order: the pure array helpers of the DuckDB store's flush,
compaction and raw reads (``store.py`` documents the format they serve)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np

from perfintel.storage.duckdb import codec


def decode_sorted(
    rows: list[tuple[int, bytes, bytes]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chunk rows (ordered by series, window, flush) as flat arrays sorted by (series, time)."""
    ts, vals, counts = codec.decode_chunks_flat([r[1] for r in rows], [r[2] for r in rows])
    sids = np.repeat(np.asarray([r[0] for r in rows], np.int64), counts)
    if np.any((sids[1:] == sids[:-1]) & (ts[1:] <= ts[:-1])):  # overlapping or late chunks
        return sort_last_write_wins(sids, ts, vals)
    return sids, ts, vals


def series_slices(
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


def sort_parts_last_write_wins(
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


def sort_last_write_wins(
    sids: np.ndarray, ts: np.ndarray, vals: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``sort_parts_last_write_wins`` of one segment."""
    return sort_parts_last_write_wins([(sids, ts, vals)])
