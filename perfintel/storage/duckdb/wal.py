"""The write-ahead log: what makes an acknowledged sample survive ``kill -9``.

Files ``wal/<seq>.log``. A segment starts with the 8 bytes ``SEGMENT_MAGIC``,
then holds records::

    4 bytes RECORD_MAGIC | u32 payload length | u32 crc32(length, payload) | payload

Payload kinds (first byte):

* ``S`` series definitions: u32 count, then per series u32 id + u32 length + JSON label pairs;
* ``D`` samples: u32 n, then n × u32 series id, n × i64 timestamp ms, n × f64 value.

A record is fsynced before the append that wrote it returns, by group commit:
writers append under the store's lock, then ``sync`` makes everything written
so far durable with one ``fdatasync`` shared by all writers waiting at that
moment (an fsync costs milliseconds here; one per request would cap ingest).

Damage. The marker and the checksum over length and payload let replay skip a
damaged record and find the next good one (scanning forward for a marker
whose record checks out), so one flipped byte costs that record, never the
records after it. The damaged bytes are moved aside into
``<segment>.<offset>.damaged`` beside the segment, the segment is rewritten
without them, and what was lost and kept is logged and counted
(``WalStats``). A torn tail (a write cut by a crash: never acknowledged) is
handled the same way but kept as ``<segment>.<offset>.torn`` and logged as a
warning: ``kill -9`` in the middle of a write leaves one, and it is no damage.

Disk full. Writes go straight to the file descriptor (no Python buffer that
would replay a failed write later). A failed write cuts the segment back to
its last whole record before raising, so the next append follows a clean
record; if even that fails, the next append starts a new segment. A failed
fsync fails every append it covered, even if a later fsync succeeds (Linux
reports a writeback error once; the pages may be gone). A failed rotation
keeps the current segment open.

Segments written before the marker existed (``u32 length | u32 crc32 |
payload`` from the first byte) are still read: records up to the first bad
one, the rest moved aside.
"""

from __future__ import annotations

import errno
import logging
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

log = logging.getLogger(__name__)

SEGMENT_MAGIC = b"PIWAL2\r\n"
RECORD_MAGIC = b"\xf3WAL"
_HDR = struct.Struct("<4sII")
_LEN = struct.Struct("<I")
_OLD_HDR = struct.Struct("<II")


@dataclass
class WalSamples:
    sids: np.ndarray
    timestamps: np.ndarray
    values: np.ndarray


@dataclass
class WalStats:
    """What replay found (counted since the store opened; exported in ``/metrics``)."""

    records_replayed: int = 0
    damaged_regions: int = 0  # stretches of bytes that held no valid record
    damaged_bytes: int = 0
    torn_tails: int = 0  # of those, stretches at a segment's end (a cut write)
    write_errors: int = 0  # appends that failed (disk full, I/O error)


def _crc(length: int, *pieces: bytes | memoryview) -> int:
    crc = zlib.crc32(_LEN.pack(length))
    for p in pieces:
        crc = zlib.crc32(p, crc)
    return crc


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data).cast("B")
    while view.nbytes:
        n = os.write(fd, view)
        view = view[n:]


class WriteAheadLog:
    def __init__(self, directory: Path, *, fsync: bool = True) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.stats = WalStats()
        segs = self.segments()
        self._seq = (int(segs[-1].stem) + 1) if segs else 1
        self._fd = self._open_segment(self._seq)
        self._size = len(SEGMENT_MAGIC)  # end of the last whole record in the segment
        self._dirty = False  # a failed write could not be cut off: start a new segment
        self._written = 0  # bytes written since opening, across segments
        self._synced = 0
        self._failed_upto = 0  # appends up to here saw their fsync fail
        self._sync_lock = threading.Lock()

    def _path(self, seq: int) -> Path:
        return self.dir / f"{seq:010d}.log"

    def _open_segment(self, seq: int) -> int:
        path = self._path(seq)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        try:
            _write_all(fd, SEGMENT_MAGIC)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        return fd

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
        header = _HDR.pack(RECORD_MAGIC, length, _crc(length, *pieces))
        return self._append_pieces([memoryview(header), *pieces])

    @staticmethod
    def _record(payload: bytes) -> bytes:
        return _HDR.pack(RECORD_MAGIC, len(payload), _crc(len(payload), payload)) + payload

    def write(self, *records: bytes) -> int:
        """Append records (not yet durable); returns the position to pass to ``sync``.

        Callers serialise writes (the store's append lock). On failure nothing
        of these records stays in the log, or the log moves to a new segment."""
        return self._append_pieces([memoryview(b"".join(records))])

    def _append_pieces(self, pieces: list[memoryview]) -> int:
        if self._dirty:
            self._recover()
        try:
            for p in pieces:
                _write_all(self._fd, p)
        except OSError:
            self.stats.write_errors += 1
            try:  # cut the torn record off: what follows must come after a whole record
                os.ftruncate(self._fd, self._size)
            except OSError:
                self._dirty = True
            raise
        n = sum(p.nbytes for p in pieces)
        self._size += n
        self._written += n
        return self._written

    def _recover(self) -> None:
        """After a write whose torn bytes could not be cut off: cut them now, or
        start a new segment (replay skips the torn bytes either way)."""
        try:
            os.ftruncate(self._fd, self._size)
        except OSError:
            self._switch_segment()
        self._dirty = False

    def _switch_segment(self) -> None:
        """Open the next segment, then close the current one (a failure keeps it)."""
        fd = self._open_segment(self._seq + 1)
        old, self._fd = self._fd, fd
        self._seq += 1
        self._size = len(SEGMENT_MAGIC)
        os.close(old)

    def sync(self, upto: int) -> None:
        """Return once everything up to ``upto`` is on disk (group commit)."""
        if not self.fsync:
            return
        if self._synced >= upto and upto > self._failed_upto:
            return
        with self._sync_lock:
            if upto <= self._failed_upto:
                raise OSError(errno.EIO, "an fsync of the write-ahead log failed")
            if self._synced >= upto:
                return  # another writer's fsync covered ours
            self._fsync_locked()

    def _fsync_locked(self) -> None:
        target = self._written
        try:
            os.fdatasync(self._fd)
        except OSError:
            # The kernel reports a lost writeback once: every append written
            # before this point fails, whatever a later fsync says.
            self._failed_upto = target
            self.stats.write_errors += 1
            raise  # (later records follow in the segment: replay skips what was lost)
        self._synced = max(self._synced, target)

    def append(self, *records: bytes) -> None:
        """Write records and make them durable."""
        self.sync(self.write(*records))

    def rotate(self) -> list[Path]:
        """Start a new segment; return the closed ones (delete them after the flush commits).

        Called under the store's append lock, so nothing is written meanwhile.
        If the new segment cannot be created, the current one stays open and
        the error is raised."""
        with self._sync_lock:
            if self.fsync and self._synced < self._written:
                self._fsync_locked()
            self._synced = self._written
            closed = self.segments()
            self._switch_segment()
            self._dirty = False
        return closed

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def replay(self) -> Iterator[list[tuple[int, LabelSet]] | WalSamples]:
        """Records of every segment in order, skipping damaged stretches (moved
        aside, logged and counted); a segment with damage is rewritten without it."""
        current = self._path(self._seq)
        for path in self.segments():
            if path == current:
                continue
            data = path.read_bytes()
            good: list[tuple[int, int]] = []  # (start, end) of whole records
            bad: list[tuple[int, int]] = []
            if data.startswith(SEGMENT_MAGIC):
                scan = _scan(data, good, bad)
            elif len(data) < len(SEGMENT_MAGIC) and SEGMENT_MAGIC.startswith(data):
                scan = iter(())  # a segment cut before its first record
            else:
                scan = _scan_old(data, good, bad)
            for payload in scan:
                self.stats.records_replayed += 1
                yield _decode(payload)
            if bad:
                self._set_aside(path, data, good, bad)

    def _set_aside(
        self, path: Path, data: bytes, good: list[tuple[int, int]], bad: list[tuple[int, int]]
    ) -> None:
        for start, end in bad:
            tail = end == len(data)
            aside = path.with_name(f"{path.name}.{start}.{'torn' if tail else 'damaged'}")
            aside.write_bytes(data[start:end])
            self.stats.damaged_regions += 1
            self.stats.damaged_bytes += end - start
            self.stats.torn_tails += tail
            if tail and not any(s > start for s, _ in good):
                log.warning(
                    "write-ahead log %s: %d bytes at offset %d are a torn last record "
                    "(a write cut short, never acknowledged); moved aside to %s",
                    path.name, end - start, start, aside.name,
                )  # fmt: skip
            else:
                log.error(
                    "write-ahead log %s: %d damaged bytes at offset %d skipped, moved aside to "
                    "%s; the samples of that record are lost, the %d records after it recovered",
                    path.name, end - start, start, aside.name, sum(1 for s, _ in good if s > start),
                )  # fmt: skip
        # Rewrite the segment with its whole records only, so the next replay
        # finds no damage (the damaged bytes are kept aside).
        keep = SEGMENT_MAGIC + b"".join(_reframe(data, s, e) for s, e in good)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(keep)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def _reframe(data: bytes, start: int, end: int) -> bytes:
    """A whole record as it is (new format) or re-framed (old format)."""
    if data[start : start + 4] == RECORD_MAGIC:
        return data[start:end]
    payload = data[start + _OLD_HDR.size : end]
    return WriteAheadLog._record(payload)


def _valid_at(data: bytes, pos: int) -> int:
    """End of the whole, checked record starting at ``pos``, or -1."""
    if data[pos : pos + 4] != RECORD_MAGIC or pos + _HDR.size > len(data):
        return -1
    _, length, crc = _HDR.unpack_from(data, pos)
    end = pos + _HDR.size + length
    if end > len(data) or _crc(length, memoryview(data)[pos + _HDR.size : end]) != crc:
        return -1
    return end


def _scan(data: bytes, good: list[tuple[int, int]], bad: list[tuple[int, int]]) -> Iterator[bytes]:
    pos = len(SEGMENT_MAGIC)
    while pos < len(data):
        end = _valid_at(data, pos)
        if end < 0:
            # Resynchronise: the next marker that starts a record that checks out.
            nxt = data.find(RECORD_MAGIC, pos + 1)
            while nxt >= 0 and _valid_at(data, nxt) < 0:
                nxt = data.find(RECORD_MAGIC, nxt + 1)
            stop = nxt if nxt >= 0 else len(data)
            bad.append((pos, stop))
            pos = stop
            continue
        good.append((pos, end))
        yield data[pos + _HDR.size : end]
        pos = end


def _scan_old(
    data: bytes, good: list[tuple[int, int]], bad: list[tuple[int, int]]
) -> Iterator[bytes]:
    """A segment of the format without markers: records up to the first bad one."""
    pos = 0
    while pos + _OLD_HDR.size <= len(data):
        length, crc = _OLD_HDR.unpack_from(data, pos)
        end = pos + _OLD_HDR.size + length
        payload = data[pos + _OLD_HDR.size : end]
        if end > len(data) or zlib.crc32(payload) != crc:
            break
        good.append((pos, end))
        yield payload
        pos = end
    if pos < len(data):
        bad.append((pos, len(data)))


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
