"""Binary encoding of a ``SampleBatch`` for the bus.

Layout (little-endian), version 2::

    header   magic b"PIBB", u8 version, u8 flags (0), u16 reserved (0),
             u32 n_series, u32 n_labels (pairs over all series), u32 n_samples
    u32[n_series]      label pairs per series
    u64[n_series]      series keys (``perfintel.series_index.series_key`` of each label set)
    u32[2 * n_labels]  byte length of each label name and value, in order
    bytes              the UTF-8 names and values, concatenated
    int32[n_samples]   series_idx
    int64[n_samples]   timestamps (ms)
    float64[n_samples] values (NaN payloads, e.g. staleness markers, kept bit for bit)

The columns are numpy buffers written and read without a copy per sample;
only the label table costs Python work, once per series.

The keys let a worker identify series without keeping their labels (it holds a
million series as numpy rows, ``perfintel.series_index``); they are computed once,
by the encoder. Version 1 (no key column) still decodes, its keys computed from
the labels; a reader of version 1 only refuses version-2 entries with
``BatchDecodeError`` (upgrade workers and api processes before ingest).
"""

from __future__ import annotations

import struct

import numpy as np

from perfintel.batch import SampleBatch
from perfintel.errors import BadInputError
from perfintel.model import LabelSet
from perfintel.series_index import encoded_keys, series_keys

MAGIC = b"PIBB"
VERSION = 2
#: versions ``decode_batch`` reads
VERSIONS = (1, 2)
_HEADER = struct.Struct("<4sBBHIII")


def header(n_series: int, n_labels: int, n_samples: int) -> bytes:
    """The header of a batch of these sizes (for encoders that build the rest themselves)."""
    return _HEADER.pack(MAGIC, VERSION, 0, 0, n_series, n_labels, n_samples)


class BatchDecodeError(BadInputError):
    """Bytes that are not a batch of a known encoding version."""


def encode_batch(batch: SampleBatch, version: int = VERSION) -> bytes:
    """The bytes of ``batch`` (see the module docstring; ``version`` 1 only to test readers)."""
    counts = np.fromiter((len(s) for s in batch.series), np.uint32, len(batch.series))
    strings = [part.encode() for labels in batch.series for pair in labels for part in pair]
    lengths = np.fromiter((len(s) for s in strings), np.uint32, len(strings))
    n = len(batch)
    if version not in VERSIONS:
        raise ValueError(f"no bus batch version {version}")
    keys = encoded_keys(strings, counts, lengths).tobytes() if version >= 2 else b""
    return b"".join(
        (
            _HEADER.pack(MAGIC, version, 0, 0, len(batch.series), len(strings) // 2, n),
            counts.tobytes(),
            keys,
            lengths.tobytes(),
            b"".join(strings),
            np.ascontiguousarray(batch.series_idx, np.int32).tobytes(),
            np.ascontiguousarray(batch.timestamps, np.int64).tobytes(),
            np.ascontiguousarray(batch.values, np.float64).tobytes(),
        )
    )


def decode_batch(data: bytes) -> SampleBatch:
    """The batch ``encode_batch`` wrote; ``BatchDecodeError`` for anything else."""
    return decode_keyed(data)[0]


def decode_keyed(data: bytes) -> tuple[SampleBatch, np.ndarray]:
    """The batch and the key of each of its series (uint64, ``series_key``): read from
    a version-2 entry, computed from the labels of a version-1 entry."""
    view = memoryview(data)
    if len(view) < _HEADER.size:
        raise BatchDecodeError("bus batch: truncated header")
    magic, version, flags, _, n_series, n_labels, n = _HEADER.unpack_from(view)
    if magic != MAGIC:
        raise BatchDecodeError("bus batch: bad magic")
    if version not in VERSIONS or flags:
        raise BatchDecodeError(f"bus batch: unknown version {version} (flags {flags})")
    pos = _HEADER.size

    def take(count: int, dtype: type[np.generic]) -> np.ndarray:
        nonlocal pos
        size = count * np.dtype(dtype).itemsize
        if pos + size > len(view):
            raise BatchDecodeError("bus batch: truncated")
        arr = np.frombuffer(view, dtype, count, pos)
        pos += size
        return arr

    counts = take(n_series, np.uint32)
    keys = take(n_series, np.uint64) if version >= 2 else None
    lengths = take(2 * n_labels, np.uint32)
    if int(counts.sum(dtype=np.int64)) != n_labels:
        raise BatchDecodeError("bus batch: label counts disagree with the header")
    blob_len = int(lengths.sum(dtype=np.int64))
    if pos + blob_len > len(view):
        raise BatchDecodeError("bus batch: truncated label table")
    try:
        text = bytes(view[pos : pos + blob_len])
        ends = np.cumsum(lengths, dtype=np.int64).tolist()
        starts = [0, *ends][:-1]
        parts = [text[a:b].decode() for a, b in zip(starts, ends, strict=True)]
    except UnicodeDecodeError as exc:
        raise BatchDecodeError(f"bus batch: label not UTF-8: {exc}") from exc
    pos += blob_len
    series: list[LabelSet] = []
    k = 0
    for c in counts.tolist():
        series.append(tuple((parts[k + 2 * j], parts[k + 2 * j + 1]) for j in range(c)))
        k += 2 * c
    idx = take(n, np.int32)
    ts = take(n, np.int64)
    vals = take(n, np.float64)
    if pos != len(view):
        raise BatchDecodeError("bus batch: trailing bytes")
    if n and (int(idx.min()) < 0 or int(idx.max()) >= n_series):
        raise BatchDecodeError("bus batch: series index out of range")
    return SampleBatch(series, idx, ts, vals), (series_keys(series) if keys is None else keys)


def batch_summary(data: bytes) -> tuple[int, int | None]:
    """``(samples, newest timestamp in ms or None)`` of an encoded batch, without decoding
    its labels (a reader that only counts); ``BatchDecodeError`` for anything else."""
    view = memoryview(data)
    if len(view) < _HEADER.size:
        raise BatchDecodeError("bus batch: truncated header")
    magic, version, flags, _, n_series, n_labels, n = _HEADER.unpack_from(view)
    if magic != MAGIC or version not in VERSIONS or flags:
        raise BatchDecodeError("bus batch: not a known batch encoding")
    pos = _HEADER.size + (4 if version == 1 else 12) * n_series
    if pos + 8 * n_labels > len(view):
        raise BatchDecodeError("bus batch: truncated")
    lengths = np.frombuffer(view, np.uint32, 2 * n_labels, pos)
    pos += 8 * n_labels + int(lengths.sum(dtype=np.int64)) + 4 * n  # labels, then series_idx
    if not n:
        return 0, None
    if pos + 8 * n > len(view):
        raise BatchDecodeError("bus batch: truncated")
    return n, int(np.frombuffer(view, np.int64, n, pos).max())
