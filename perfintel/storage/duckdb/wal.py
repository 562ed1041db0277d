"""The write-ahead log: what makes an acknowledged sample survive ``kill -9``.

Files ``wal/<seq>.log``, each a sequence of records::

    u32 payload length | u32 crc32(payload) | payload

Payload kinds (first byte):

* ``S`` series definitions: u32 count, then per series u32 id + u32 length + JSON label pairs;
* ``D`` samples: u32 n, then n × u32 series id, n × i64 timestamp ms, n × f64 value.

A record is fsynced before the append that wrote it returns, by group commit:
writers append under the store's lock, then ``sync`` makes everything written
so far durable with one ``fdatasync`` shared by all writers waiting at that
moment (an fsync costs milliseconds here; one per request would cap ingest).
Replay stops at
the first truncated or corrupt record (a torn write from a crash: it was never
acknowledged) and truncates the file there. Segments are rotated when the head
is flushed and deleted once the flush is committed to the database.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from perfintel.model import LabelSet

_HDR = struct.Struct("<II")


@dataclass
class WalSamples:
    sids: np.ndarray
    timestamps: np.ndarray
    values: np.ndarray


class WriteAheadLog:
    def __init__(self, directory: Path, *, fsync: bool = True) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        segs = self.segments()
        self._seq = (int(segs[-1].stem) + 1) if segs else 1
        self._file = open(self._path(self._seq), "ab")  # noqa: SIM115 - long-lived handle
        self._written = 0  # bytes written since opening, across segments
        self._synced = 0
        self._sync_lock = threading.Lock()

    def _path(self, seq: int) -> Path:
        return self.dir / f"{seq:010d}.log"

    def segments(self) -> list[Path]:
        return sorted(self.dir.glob("*.log"))

    def write_series(self, new: list[tuple[int, LabelSet]]) -> bytes:
        parts = [b"S", struct.pack("<I", len(new))]
        for sid, labels in new:
            js = orjson.dumps(labels)
            parts.append(struct.pack("<II", sid, len(js)))
            parts.append(js)
        return self._record(b"".join(parts))

    def write_samples(self, sids: np.ndarray, ts: np.ndarray, vals: np.ndarray) -> bytes:
        payload = b"".join(
            (
                b"D",
                struct.pack("<I", len(ts)),
                sids.astype("<u4", copy=False).tobytes(),
                ts.astype("<i8", copy=False).tobytes(),
                vals.astype("<f8", copy=False).tobytes(),
            )
        )
        return self._record(payload)

    def write_samples_direct(self, sids: np.ndarray, ts: np.ndarray, vals: np.ndarray) -> int:
        """``write(write_samples(...))`` without building the record in memory.

        A flush re-logs up to the whole head in one record; the arrays go to the
        file as they are instead of through three joined copies of the payload.
        Same bytes on disk; callers serialise writes, as for ``write``."""
        pieces = [
            memoryview(b"D" + struct.pack("<I", len(ts))),
            _raw(sids, "<u4"),
            _raw(ts, "<i8"),
            _raw(vals, "<f8"),
        ]
        length = sum(p.nbytes for p in pieces)
        crc = 0
        for p in pieces:
            crc = zlib.crc32(p, crc)
        self._file.write(_HDR.pack(length, crc))
        for p in pieces:
            self._file.write(p)
        self._file.flush()
        self._written += _HDR.size + length
        return self._written

    @staticmethod
    def _record(payload: bytes) -> bytes:
        return _HDR.pack(len(payload), zlib.crc32(payload)) + payload

    def write(self, *records: bytes) -> int:
        """Append records (not yet durable); returns the position to pass to ``sync``.

        Callers serialise writes (the store's append lock)."""
        data = b"".join(records)
        self._file.write(data)
        self._file.flush()
        self._written += len(data)
        return self._written

    def sync(self, upto: int) -> None:
        """Return once everything up to ``upto`` is on disk (group commit)."""
        if not self.fsync or self._synced >= upto:
            return
        with self._sync_lock:
            if self._synced >= upto:
                return  # another writer's fsync covered ours
            target = self._written
            os.fdatasync(self._file.fileno())
            self._synced = max(self._synced, target)

    def append(self, *records: bytes) -> None:
        """Write records and make them durable."""
        self.sync(self.write(*records))

    def rotate(self) -> list[Path]:
        """Start a new segment; return the closed ones (delete them after the flush commits).

        Called under the store's append lock, so nothing is written meanwhile."""
        with self._sync_lock:
            if self.fsync and self._synced < self._written:
                os.fdatasync(self._file.fileno())
            self._synced = self._written
            self._file.close()
            closed = self.segments()
            self._seq += 1
            self._file = open(self._path(self._seq), "ab")  # noqa: SIM115
        return closed

    def close(self) -> None:
        self._file.close()

    def replay(self) -> Iterator[list[tuple[int, LabelSet]] | WalSamples]:
        """Records of every segment in order; repairs a torn tail."""
        for path in self.segments():
            data = path.read_bytes()
            pos = 0
            while pos + _HDR.size <= len(data):
                length, crc = _HDR.unpack_from(data, pos)
                payload = data[pos + _HDR.size : pos + _HDR.size + length]
                if len(payload) < length or zlib.crc32(payload) != crc:
                    break
                yield _decode(payload)
                pos += _HDR.size + length
            if pos < len(data):
                with open(path, "r+b") as f:
                    f.truncate(pos)


def _raw(a: np.ndarray, dtype: str) -> memoryview:
    """The bytes of ``a`` as ``dtype`` (a view when only the signedness differs:
    series ids are never negative)."""
    want = np.dtype(dtype)
    if a.dtype != want and a.dtype.kind in "iu" and a.dtype.itemsize == want.itemsize:
        a = a.view(want)
    return np.ascontiguousarray(a.astype(want, copy=False)).data.cast("B")


def _decode(payload: bytes) -> list[tuple[int, LabelSet]] | WalSamples:
    if payload[:1] == b"S":
        (count,) = struct.unpack_from("<I", payload, 1)
        pos = 5
        out = []
        for _ in range(count):
            sid, ln = struct.unpack_from("<II", payload, pos)
            pos += 8
            pairs = orjson.loads(payload[pos : pos + ln])
            pos += ln
            out.append((sid, tuple((str(k), str(v)) for k, v in pairs)))
        return out
    (n,) = struct.unpack_from("<I", payload, 1)
    pos = 5
    sids = np.frombuffer(payload, "<u4", n, pos).astype(np.int64)
    pos += 4 * n
    ts = np.frombuffer(payload, "<i8", n, pos).copy()
    pos += 8 * n
    vals = np.frombuffer(payload, "<f8", n, pos).copy()
    return WalSamples(sids, ts, vals)
