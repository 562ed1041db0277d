"""Numpy columns in and out of DuckDB: registered tables and series-id filters."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import duckdb
import numpy as np


def object_column(items: Sequence[object]) -> np.ndarray:
    """A 1-d object array of ``items`` (bytes become BLOB, str VARCHAR when registered).

    Tables go to DuckDB as dicts of numpy arrays, not Arrow: converting numpy
    to Arrow imports pandas (~50 MiB), and the pyarrow import itself costs as
    much again. Only integer, text and blob columns go this way: a numpy scan
    reads NaN as NULL, so floats travel inside blobs."""
    out = np.empty(len(items), object)
    out[:] = items
    return out


@contextlib.contextmanager
def series_filter(
    cur: duckdb.DuckDBPyConnection, sids: np.ndarray | None
) -> Iterator[tuple[str, list[object], np.ndarray | None]]:
    """``(condition, parameters, keep)`` restricting ``series_id`` to ``sids``
    (``None``: every series): a condition to append to a WHERE clause, and a
    mask of ids the rows read must still be filtered by, or ``None``.

    A few ids go as a list; ids close together (most of an id range, as a
    selector over a whole job gives) as that range, filtered afterwards by
    ``keep``, which lets DuckDB skip row groups by their min/max; others as a
    table registered on ``cur`` while the block runs.
    """
    if sids is None or not len(sids):
        yield ("" if sids is None else " AND false"), [], None
        return
    if len(sids) <= 32:
        yield f" AND series_id IN ({','.join('?' * len(sids))})", sids.tolist(), None
        return
    lo, hi = int(sids.min()), int(sids.max())
    if 4 * len(sids) >= hi - lo + 1:
        keep = np.zeros(hi + 1, bool)
        keep[sids] = True
        yield " AND series_id BETWEEN ? AND ?", [lo, hi], None if keep[lo:].all() else keep
        return
    cur.register("want", {"want_id": sids.astype(np.uint32)})
    try:
        yield " AND series_id IN (SELECT want_id FROM want)", [], None
    finally:
        cur.unregister("want")
