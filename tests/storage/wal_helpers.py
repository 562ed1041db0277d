"""Helpers for the WAL damage and fault tests: a store that "crashes", and the
records of a segment with their byte ranges."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from store_helpers import DAY, T0, Clock, open_store

from perfintel.batch import SampleBatch
from perfintel.model import label_set, parse_selector
from perfintel.storage.duckdb import DuckDBStore
from perfintel.storage.duckdb.wal import RECORD_MAGIC, SEGMENT_MAGIC

__all__ = ["DAY", "T0", "Clock", "crash", "open_store", "records", "stored", "write_batch"]


def write_batch(st: DuckDBStore, i: int, n: int = 100, series: int = 4) -> SampleBatch:
    """Write ``i``: ``n`` samples of series ``w<i % series>``, timestamps unique to ``i``."""
    ts = T0 + 1000 * np.arange(i * n, (i + 1) * n)
    batch = SampleBatch.from_arrays(
        label_set({"__name__": "wal_test", "w": str(i % series)}), ts, np.full(n, float(i))
    )
    st.append(batch)
    return batch


def crash(st: DuckDBStore) -> None:
    """Drop the store as ``kill -9`` would: no flush, no checkpoint."""
    st.wal.close()
    st._db.close()


def stored(st: DuckDBStore, n: int = 100) -> dict[int, int]:
    """Write number -> samples of it the store holds (series ``wal_test``)."""
    out: dict[int, int] = {}
    for s in st.select(parse_selector("wal_test"), T0, T0 + 10 * DAY):
        for t in ((s.timestamps - T0) // 1000 // n).tolist():
            out[t] = out.get(t, 0) + 1
    return out


def records(path: Path) -> list[tuple[int, int, bytes]]:
    """``(start, end, payload kind)`` of each record of a segment in the current format."""
    data = path.read_bytes()
    assert data.startswith(SEGMENT_MAGIC)
    pos, out = len(SEGMENT_MAGIC), []
    while pos < len(data):
        magic, length, _crc = struct.unpack_from("<4sII", data, pos)
        assert magic == RECORD_MAGIC
        end = pos + 12 + length
        out.append((pos, end, data[pos + 12 : pos + 13]))
        pos = end
    return out
