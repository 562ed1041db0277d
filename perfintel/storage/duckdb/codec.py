"""Compression of one series' samples into a chunk (two byte strings).

Timestamps: the first timestamp and the deltas; a chunk with a constant delta
(the usual scrape cadence) stores just ``(first, delta, n)``.

Values: when every value is a decimal with few digits (counters, percentages
with two decimals, byte counts ...) the values become integers
``round(v * 10**e)`` and are stored as zig-zag deltas; otherwise the float bits
are XORed with the previous value (Gorilla's idea). Either way the integers are
narrowed to the smallest byte width that holds them, byte-shuffled, and
compressed with zstd. Non-finite values (NaN, ±Inf, the staleness marker)
take the XOR path, which is bit-exact.

Layout of a value blob: 1 byte kind, then kind-specific header, then the
zstd frame. Layout of a timestamp blob: 1 byte kind (0 regular, 1 deltas).
"""

from __future__ import annotations

import struct

import cramjam
import numpy as np

try:
    from perfintel.storage.duckdb import _chunks
except ImportError:  # no C compiler at install time, or no libzstd.so.1
    _chunks = None  # type: ignore[assignment]

_ZSTD_LEVEL = 3
_MAX_DECIMALS = 9
_POW10 = 10.0 ** np.arange(_MAX_DECIMALS + 1)

_TS_REGULAR = 0
_TS_DELTAS = 1
_V_DECIMAL = 0
_V_XOR = 1
_V_CONST = 2


def _narrow(x: np.ndarray) -> tuple[int, bytes]:
    """Smallest unsigned width for non-negative int64 ``x``, byte-shuffled."""
    hi = int(x.max()) if len(x) else 0
    for width, dt in ((1, np.uint8), (2, np.uint16), (4, np.uint32), (8, np.uint64)):
        if hi < (1 << (8 * width)):
            a = x.astype(dt)
            break
    shuffled = a.view(np.uint8).reshape(len(a), width).T.tobytes() if width > 1 else a.tobytes()
    return width, shuffled


def _widen(raw: bytes, width: int, n: int) -> np.ndarray:
    dt = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[width]
    b = np.frombuffer(raw, np.uint8)
    if width > 1:
        b = b.reshape(width, n).T.copy()
    return b.view(dt).reshape(n).astype(np.uint64)


def _zz(x: np.ndarray) -> np.ndarray:
    return ((x << 1) ^ (x >> 63)).view(np.uint64)


def _unzz(u: np.ndarray) -> np.ndarray:
    return (u >> np.uint64(1)).astype(np.int64) ^ -(u & np.uint64(1)).astype(np.int64)


def _zstd(b: bytes) -> bytes:
    return bytes(cramjam.zstd.compress(b, level=_ZSTD_LEVEL))


def _unzstd(b: bytes) -> bytes:
    return bytes(cramjam.zstd.decompress(b))


def encode_timestamps(ts: np.ndarray) -> bytes:
    n = len(ts)
    if n == 0:
        return struct.pack("<Bqqi", _TS_REGULAR, 0, 0, 0)
    d = np.diff(ts)
    if n == 1 or np.all(d == d[0]):
        return struct.pack("<Bqqi", _TS_REGULAR, int(ts[0]), int(d[0]) if n > 1 else 0, n)
    dd = np.diff(d, prepend=d[0])  # delta of delta: zeros where cadence holds
    width, body = _narrow(_zz(dd))
    return struct.pack("<BqqiB", _TS_DELTAS, int(ts[0]), int(d[0]), n, width) + _zstd(body)


def decode_timestamps(blob: bytes) -> np.ndarray:
    kind = blob[0]
    if kind == _TS_REGULAR:
        _, first, step, n = struct.unpack_from("<Bqqi", blob)
        return first + step * np.arange(n, dtype=np.int64)
    _, first, d0, n, width = struct.unpack_from("<BqqiB", blob)
    dd = _unzz(_widen(_unzstd(blob[22:]), width, n - 1))
    d = np.cumsum(dd) + d0 - dd[0] if n > 1 else dd
    out = np.empty(n, np.int64)
    out[0] = first
    np.cumsum(d, out=out[1:])
    out[1:] += first
    return out


def _decimal_exponent(v: np.ndarray) -> int | None:
    """Smallest ``e`` such that every value is exactly ``k / 10**e`` with |k| < 2**53."""
    if not np.all(np.isfinite(v)) or np.any(np.signbit(v) & (v == 0.0)):
        return None  # non-finite values and -0.0 need the bit-exact XOR path
    amax = float(np.max(np.abs(v))) if len(v) else 0.0
    probe = v[:16]  # cheap first guess on a prefix, then one check of the whole chunk
    for e in range(_MAX_DECIMALS + 1):
        if amax * _POW10[e] >= 2.0**53:
            return None
        if not np.array_equal(np.round(probe * _POW10[e]) / _POW10[e], probe):
            continue
        if np.array_equal(np.round(v * _POW10[e]) / _POW10[e], v):
            return e
    return None


def encode_values(v: np.ndarray) -> bytes:
    n = len(v)
    bits = v.view(np.uint64)
    if n == 0 or np.all(bits == bits[0]):
        return struct.pack("<BQi", _V_CONST, int(bits[0]) if n else 0, n)
    e = _decimal_exponent(v)
    if e is not None:
        k = np.round(v * _POW10[e]).astype(np.int64)
        width, body = _narrow(_zz(np.diff(k, prepend=k[0])))
        return struct.pack("<BBqiB", _V_DECIMAL, e, int(k[0]), n, width) + _zstd(body)
    x = bits ^ np.concatenate(([np.uint64(0)], bits[:-1]))
    body = x.view(np.uint8).reshape(n, 8).T.tobytes()
    return struct.pack("<Bi", _V_XOR, n) + _zstd(body)


def decode_values(blob: bytes) -> np.ndarray:
    kind = blob[0]
    if kind == _V_CONST:
        _, b, n = struct.unpack_from("<BQi", blob)
        return np.full(n, b, np.uint64).view(np.float64)
    if kind == _V_DECIMAL:
        _, e, k0, n, width = struct.unpack_from("<BBqiB", blob)
        d = _unzz(_widen(_unzstd(blob[15:]), width, n))
        d[0] = k0
        return np.cumsum(d).astype(np.float64) / _POW10[e]
    _, n = struct.unpack_from("<Bi", blob)
    x = np.frombuffer(_unzstd(blob[5:]), np.uint8).reshape(8, n).T.copy().view(np.uint64).reshape(n)
    return np.bitwise_xor.accumulate(x).view(np.float64)


def encode_chunks(
    ts: np.ndarray, vals: np.ndarray, bounds: np.ndarray
) -> tuple[list[bytes], list[bytes]]:
    """Timestamp and value blobs of the chunks ``[bounds[i], bounds[i + 1])``.

    Uses the C encoder (``_chunks``, GIL released) when it is built and
    libzstd is present, else the functions above; both write the same layout.
    """
    if _chunks is not None and len(bounds) > 1:
        return _chunks.encode_chunks(
            np.ascontiguousarray(ts, np.int64),
            np.ascontiguousarray(vals, np.float64),
            np.ascontiguousarray(bounds, np.int64),
        )
    pairs = [
        (encode_timestamps(ts[a:b]), encode_values(vals[a:b]))
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)
    ]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def decode_chunks_flat(
    ts_blobs: list[bytes], val_blobs: list[bytes]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every chunk's samples back to back: ``(timestamps, values, samples per chunk)``.

    The C decoder (GIL released) when built, else the functions above.
    """
    if _chunks is not None and ts_blobs:
        t, v, c = _chunks.decode_chunks(ts_blobs, val_blobs)
        return np.frombuffer(t, np.int64), np.frombuffer(v, np.float64), np.frombuffer(c, np.int64)
    pairs = [
        (decode_timestamps(a), decode_values(b)) for a, b in zip(ts_blobs, val_blobs, strict=True)
    ]
    if not pairs:
        return np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.int64)
    return (
        np.concatenate([p[0] for p in pairs]),
        np.concatenate([p[1] for p in pairs]),
        np.array([len(p[0]) for p in pairs], np.int64),
    )
