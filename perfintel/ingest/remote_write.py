"""Prometheus remote-write: decode 1.0 (and 2.0) requests, encode 1.0 requests.

Wire format (remote-write 1.0 specification)::

    message WriteRequest { repeated TimeSeries timeseries = 1; reserved 2; reserved 3; }
    message TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
    message Label        { string name = 1; string value = 2; }
    message Sample       { double value = 1; int64 timestamp = 2; }   // timestamp in ms

Prometheus itself also sends ``MetricMetadata metadata = 3`` (experimental,
outside the 1.0 spec) and ``exemplars = 3`` / ``histograms = 4`` inside a
TimeSeries; metadata is read into ``ParseResult.metadata``, native histograms
are reported as errors (unsupported) and exemplars are ignored.

How decoding is made fast
-------------------------
Requests in the plain shape (every Prometheus-compatible sender's: labels
first and contiguous, samples holding a double and a timestamp) are read by
the C scanner ``perfintel.ingest._scan.rw_scan``, which returns the samples as
native arrays and, per series, the byte span of its labels, with the GIL
released so concurrent requests use every core. Anything else, and every
request when the extension is not built, takes the path below, which defines
the semantics; the tests run both paths on the same inputs.

The Python path: message classes are built at import time from a
``FileDescriptorProto`` written in code (no protoc step) and parsed by
protobuf's C ("upb") backend. The *decoding* schema deliberately declares
``labels`` and ``samples`` as ``repeated bytes``: upb then hands back each
sub-message as raw bytes in C, and Python never touches a per-sample message
object. Samples are grouped by their encoded length; every sample Prometheus
writes is ``09 <8-byte double> 10 <varint>`` or, when the value is 0.0
(omitted by proto3), ``10 <varint>``, and each group is decoded at once with
numpy. Anything else takes a per-sample path through the generated ``Sample``.

Both paths look label lists up in a bounded module-level cache keyed by the
raw label bytes (the scanner's span, or the tuple of raw label messages); only
a miss decodes, sorts and validates them. The cache only speeds things up:
results never depend on it. It is reset between requests once it holds
262,144 entries, stops taking entries at ``CACHE_MAX_BYTES``, never holds an
invalid series, and is emptied when the store refuses a request's series
(``forget_cached_labels``); it is safe to share between threads (a racing
reset only costs recomputation).

Measured (``benchmarks/parsers.py``, CPU time on one core, 1,000 series × 10
samples with 6 labels): see BENCHMARKS.md.

Errors carry ``line=0`` (the format has no lines) and name the series by its
index, e.g. ``timeseries[3]: invalid label name '0x'``. A body that is not a
WriteRequest at all raises ``ParseError``.
"""

from __future__ import annotations

import functools
from itertools import chain
from typing import Any

import cramjam
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from perfintel.batch import LineError, MetricMetadata, ParseResult, SampleBatch
from perfintel.errors import InvalidSeriesError, ParseError
from perfintel.model import LabelSet, label_set, validate_label_set

try:
    from perfintel.ingest import _scan
except ImportError:  # built without a C compiler: the Python paths do everything
    _scan = None  # type: ignore[assignment]

__all__ = [
    "decode_remote_write",
    "decode_remote_write_v2",
    "encode_remote_write",
    "encode_remote_write_v2",
]

_F = descriptor_pb2.FieldDescriptorProto


def _build_messages() -> dict[str, Any]:
    """Message classes for the wire schema and the raw decoding view of it."""
    fdp = descriptor_pb2.FileDescriptorProto(
        name="perfintel/remote_write.proto", package="perfintel.rw", syntax="proto3"
    )

    def msg(name: str, *fields: tuple[Any, ...]) -> None:
        m = fdp.message_type.add(name=name)
        for fname, number, ftype, label, *type_name in fields:
            f = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name and type_name[0]:
                f.type_name = f".perfintel.rw.{type_name[0]}"

    opt, rep = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
    # Remote-write 1.0, the wire schema (used to encode and in the per-sample fallback).
    msg("Label", ("name", 1, _F.TYPE_STRING, opt), ("value", 2, _F.TYPE_STRING, opt))
    msg("Sample", ("value", 1, _F.TYPE_DOUBLE, opt), ("timestamp", 2, _F.TYPE_INT64, opt))
    msg(
        "TimeSeries",
        ("labels", 1, _F.TYPE_MESSAGE, rep, "Label"),
        ("samples", 2, _F.TYPE_MESSAGE, rep, "Sample"),
    )
    msg("WriteRequest", ("timeseries", 1, _F.TYPE_MESSAGE, rep, "TimeSeries"))
    # The raw decoding view: sub-messages stay bytes, strings are not UTF-8 checked.
    msg("RawLabel", ("name", 1, _F.TYPE_BYTES, opt), ("value", 2, _F.TYPE_BYTES, opt))
    msg(
        "RawTimeSeries",
        ("labels", 1, _F.TYPE_BYTES, rep),
        ("samples", 2, _F.TYPE_BYTES, rep),
        ("histograms", 4, _F.TYPE_BYTES, rep),
    )
    msg(
        "RawMetricMetadata",
        ("type", 1, _F.TYPE_INT32, opt),
        ("metric_family_name", 2, _F.TYPE_BYTES, opt),
        ("help", 4, _F.TYPE_BYTES, opt),
        ("unit", 5, _F.TYPE_BYTES, opt),
    )
    msg(
        "RawWriteRequest",
        ("timeseries", 1, _F.TYPE_MESSAGE, rep, "RawTimeSeries"),
        ("metadata", 3, _F.TYPE_MESSAGE, rep, "RawMetricMetadata"),
    )
    # Remote-write 2.0 (io.prometheus.write.v2), raw view and an encoding schema.
    msg(
        "RawMetadataV2",
        ("type", 1, _F.TYPE_INT32, opt),
        ("help_ref", 3, _F.TYPE_UINT32, opt),
        ("unit_ref", 4, _F.TYPE_UINT32, opt),
    )
    msg(
        "RawTimeSeriesV2",
        ("labels_refs", 1, _F.TYPE_UINT32, rep, ""),
        ("samples", 2, _F.TYPE_BYTES, rep, ""),
        ("histograms", 3, _F.TYPE_BYTES, rep, ""),
        ("metadata", 5, _F.TYPE_MESSAGE, opt, "RawMetadataV2"),
    )
    msg(
        "RawRequestV2",
        ("symbols", 4, _F.TYPE_BYTES, rep, ""),
        ("timeseries", 5, _F.TYPE_MESSAGE, rep, "RawTimeSeriesV2"),
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    names = [m.name for m in fdp.message_type]
    return {
        n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"perfintel.rw.{n}"))
        for n in names
    }


_MSG = _build_messages()
_WriteRequest = _MSG["WriteRequest"]
_Sample = _MSG["Sample"]
_RawLabel = _MSG["RawLabel"]
_RawTimeSeries = _MSG["RawTimeSeries"]
_RawMetricMetadata = _MSG["RawMetricMetadata"]
_RawWriteRequest = _MSG["RawWriteRequest"]
_RawRequestV2 = _MSG["RawRequestV2"]

# Prometheus's MetricMetadata.MetricType / v2 Metadata.MetricType numbering.
_V1_TYPES = {
    0: "unknown",
    1: "counter",
    2: "gauge",
    3: "histogram",
    4: "gaugehistogram",
    5: "summary",
    6: "info",
    7: "stateset",
}
_V2_TYPES = _V1_TYPES  # same numbering: UNSPECIFIED=0, COUNTER=1, ... STATESET=7
_V1_TYPE_CODES = {v: k for k, v in _V1_TYPES.items()}

# Above the active series of a large instance: a limit at or below them empties the cache
# every round and turns each request into a cold decode (measured: 100k series at
# 100_000 entries ingested at 0.09 M samples/s). About 300 B per entry.
_CACHE_LIMIT = 1 << 18
# And by bytes: entries of long label sets must not add up to gigabytes (each costs its
# key and label strings, estimated below); past this, misses are not cached.
CACHE_MAX_BYTES = 96 * 1024**2
_ENTRY_OVERHEAD = 200  # dict slot, tuples, str headers of one entry (measured ~150-250 B)
_cache_bytes = 0
# raw labels (the scanner's bytes span, or the tuple of raw Label messages) ->
# (label set, None) or (None, reason). Equal label sets are one object (interned
# through _canonical), so a request can group series by id().
_LabelEntry = tuple[LabelSet | None, str | None]
_label_cache: dict[bytes | tuple[bytes, ...], _LabelEntry] = {}
_canonical: dict[LabelSet, LabelSet] = {}
# remote-write 2.0: resolved symbol tuple (name, value, name, value, ...) -> as above
_v2_cache: dict[tuple[bytes, ...], tuple[LabelSet | None, str | None]] = {}


def _labels_from_raw(raw: tuple[bytes, ...]) -> _LabelEntry:
    result: _LabelEntry
    try:
        pairs = []
        for item in raw:
            # Fast path for the usual layout: 0a <len> name 12 <len> value (short strings).
            n = item[1] if len(item) > 1 and item[0] == 0x0A else 0x80
            m = item[3 + n] if n < 0x80 and len(item) > 3 + n and item[2 + n] == 0x12 else 0x80
            if m < 0x80 and len(item) == 4 + n + m:
                pairs.append((item[2 : 2 + n].decode("utf-8"), item[4 + n :].decode("utf-8")))
                continue
            lab = _RawLabel.FromString(item)
            pairs.append((lab.name.decode("utf-8"), lab.value.decode("utf-8")))
        ls = label_set(pairs)
        validate_label_set(ls)
        result = (_canonical.setdefault(ls, ls), None)
    except (DecodeError, UnicodeDecodeError) as exc:
        result = (None, f"undecodable label: {exc}")
    except InvalidSeriesError as exc:
        result = (None, str(exc))
    return result


def _labels_from_span(span: bytes) -> _LabelEntry:
    """The label set of a TimeSeries' contiguous run of ``labels`` fields."""
    try:
        raw = tuple(_RawTimeSeries.FromString(span).labels)
    except DecodeError as exc:
        return None, f"undecodable label: {exc}"
    return _labels_from_raw(raw)


def _cached_labels(key: bytes | tuple[bytes, ...]) -> _LabelEntry:
    """The entry of ``key``; cached only when valid (a rejected series is never kept)
    and while the cache is under ``CACHE_MAX_BYTES``."""
    global _cache_bytes
    hit = _label_cache.get(key)
    if hit is None:
        hit = _labels_from_span(key) if isinstance(key, bytes) else _labels_from_raw(key)
        if hit[0] is not None and _cache_bytes < CACHE_MAX_BYTES:
            size = len(key) if isinstance(key, bytes) else sum(map(len, key))
            _cache_bytes += 2 * size + _ENTRY_OVERHEAD  # the key, and the decoded strings
            _label_cache[key] = hit
    return hit


def forget_cached_labels() -> None:
    """Empty the label caches (after a request was refused: its series must not stay)."""
    global _cache_bytes
    _label_cache.clear()
    _canonical.clear()
    _v2_cache.clear()
    _cache_bytes = 0


def _v2_room() -> int:
    """Entries the 2.0 cache may hold: its entries are bounded like the 1.0 cache's bytes
    (a symbol tuple costs about as much as a raw label span)."""
    return _CACHE_LIMIT if _cache_bytes < CACHE_MAX_BYTES else 0


def _labels_from_symbols(
    refs: list[int], symbols: list[bytes]
) -> tuple[LabelSet | None, str | None]:
    if len(refs) % 2:
        return None, f"labels_refs has an odd length ({len(refs)})"
    n = len(symbols)
    try:
        pairs = []
        for i in range(0, len(refs), 2):
            a, b = refs[i], refs[i + 1]
            if a >= n or b >= n:
                return None, f"labels_refs index {max(a, b)} is outside the symbols table ({n})"
            pairs.append((symbols[a].decode("utf-8"), symbols[b].decode("utf-8")))
        ls = label_set(pairs)
        validate_label_set(ls)
    except UnicodeDecodeError as exc:
        return None, f"undecodable label: {exc}"
    except InvalidSeriesError as exc:
        return None, str(exc)
    return ls, None


def _decode_varints(cols: np.ndarray) -> np.ndarray | None:
    """Fixed-width varints, one per row of ``cols`` (uint8, shape n×k), as int64; None if malformed."""
    k = cols.shape[1]
    if k == 0 or k > 10:
        return None
    if k > 1 and not (cols[:, : k - 1] & 0x80).all():
        return None
    if (cols[:, k - 1] & 0x80).any():
        return None
    acc = np.zeros(len(cols), np.uint64)
    for j in range(k):
        acc |= (cols[:, j] & 0x7F).astype(np.uint64) << np.uint64(7 * j)
    return acc.view(np.int64)


def _decode_samples(samples: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode raw Sample messages; returns (timestamps, values, ok mask)."""
    n = len(samples)
    ts = np.zeros(n, np.int64)
    vals = np.zeros(n, np.float64)
    ok = np.ones(n, bool)
    if not n:
        return ts, vals, ok
    lens = np.fromiter(map(len, samples), np.int64, n)
    blob = np.frombuffer(b"".join(samples), np.uint8)
    offsets = np.zeros(n, np.int64)
    np.cumsum(lens[:-1], out=offsets[1:])
    slow: list[int] = []
    uniform = bool((lens == lens[0]).all())
    for length in [int(lens[0])] if uniform else np.unique(lens).tolist():
        if length == 0:
            continue  # an empty Sample: value 0.0 at timestamp 0 (proto3 defaults)
        if uniform:
            rows = np.arange(n)
            mat = blob.reshape(n, length)
        else:
            rows = np.flatnonzero(lens == length)
            mat = blob[offsets[rows][:, None] + np.arange(length)]
        first = mat[:, 0]
        full = first == 0x09
        if length >= 11:
            full &= mat[:, 9] == 0x10
        else:
            full[:] = False
        zero = first == 0x10
        done = np.zeros(len(rows), bool)
        if full.all():
            t = _decode_varints(mat[:, 10:])
            if t is not None:
                ts[rows] = t
                vals[rows] = np.ascontiguousarray(mat[:, 1:9]).view("<f8").ravel()
                continue
        if full.any():
            sub = mat[full]
            t = _decode_varints(sub[:, 10:])
            if t is not None:
                r = rows[full]
                ts[r] = t
                vals[r] = np.ascontiguousarray(sub[:, 1:9]).view("<f8").ravel()
                done |= full
        if zero.any():
            sub = mat[zero]
            t = _decode_varints(sub[:, 1:])
            if t is not None:
                ts[rows[zero]] = t
                done |= zero
        slow.extend(rows[~done].tolist())
    for i in slow:
        try:
            s = _Sample.FromString(samples[i])
        except DecodeError:
            ok[i] = False
            continue
        ts[i] = s.timestamp
        vals[i] = s.value
    return ts, vals, ok


def _assemble(
    series: list[LabelSet],
    flat: list[bytes],
    series_ids: list[int],
    counts: list[int],
    errors: list[LineError],
) -> SampleBatch:
    ts, vals, ok = _decode_samples(flat)
    ids = np.asarray(series_ids, np.int64)
    cnt = np.asarray(counts, np.int64)
    idx = np.repeat(ids, cnt)
    if not ok.all():
        owner = np.repeat(np.arange(len(ids)), cnt)
        bad = np.flatnonzero(~ok)
        for i in bad[:100].tolist():
            errors.append(LineError(0, f"timeseries[{int(owner[i])}]: undecodable sample"))
        if len(bad) > 100:
            errors.append(LineError(0, f"{len(bad) - 100} more undecodable samples"))
    keep = ok & (idx >= 0)
    if not keep.all():
        ts, vals, idx = ts[keep], vals[keep], idx[keep]
    return SampleBatch(series, idx.astype(np.int32), ts, vals)


def _histogram_error(i: int, n: int) -> LineError:
    return LineError(
        0,
        f"timeseries[{i}]: {n} native histogram samples dropped (native histograms are not supported)",
    )


def decode_remote_write(body: bytes) -> ParseResult:
    """Decode an *uncompressed* remote-write 1.0 ``WriteRequest``.

    Invalid series are reported (``line=0``, naming ``timeseries[i]``) and
    skipped; the others are kept. Raises ``ParseError`` when the body is not a
    protobuf WriteRequest.
    """
    if len(_label_cache) >= _CACHE_LIMIT:
        forget_cached_labels()
    scanned = _scan.rw_scan(body) if _scan is not None else None
    if scanned is None:
        return _decode_remote_write_upb(body)
    info_b, ts_b, vals_b, meta_b = scanned
    info = np.frombuffer(info_b, np.int64).reshape(-1, 4)
    spans = info[:, :2].tolist()
    entries = [_label_cache.get(k) or _cached_labels(k) for k in [body[a:b] for a, b in spans]]
    errors: list[LineError] = []
    series, series_ids = _number_series(entries, errors)
    for i in np.flatnonzero(info[:, 3]).tolist():
        errors.append(_histogram_error(i, int(info[i, 3])))
    idx = np.repeat(np.asarray(series_ids, np.int32), info[:, 2])
    ts = np.frombuffer(ts_b, np.int64)
    vals = np.frombuffer(vals_b, np.float64)
    keep = idx >= 0
    if not keep.all():
        idx, ts, vals = idx[keep], ts[keep], vals[keep]
    metadata: dict[str, MetricMetadata] = {}
    for a, b in np.frombuffer(meta_b, np.int64).reshape(-1, 2).tolist():
        try:
            md = _RawMetricMetadata.FromString(body[a:b])
        except DecodeError:
            return _decode_remote_write_upb(body)  # words the error for the whole request
        _add_metadata(metadata, md)
    return ParseResult(SampleBatch(series, idx, ts, vals), errors, metadata)


def _number_series(
    entries: list[_LabelEntry], errors: list[LineError]
) -> tuple[list[LabelSet], list[int]]:
    """Distinct label sets of a request, and each timeseries' index among them (-1: invalid)."""
    series: list[LabelSet] = []
    pos: dict[int, int] = {}  # id(label set) -> series index; entries keep them alive
    by_value: dict[LabelSet, int] = {}
    series_ids: list[int] = []
    for i, (ls, reason) in enumerate(entries):
        if ls is None:
            errors.append(LineError(0, f"timeseries[{i}]: {reason}"))
            series_ids.append(-1)
            continue
        sid = pos.get(id(ls))
        if sid is None:
            # Another thread may have reset the cache: equal label sets, other objects.
            sid = by_value.get(ls)
            if sid is None:
                sid = by_value[ls] = len(series)
                series.append(ls)
            pos[id(ls)] = sid
        series_ids.append(sid)
    return series, series_ids


def _add_metadata(metadata: dict[str, MetricMetadata], md: Any) -> None:
    name = md.metric_family_name.decode("utf-8", "replace")
    if name:
        metadata[name] = MetricMetadata(
            type=_V1_TYPES.get(md.type, "unknown"),
            help=md.help.decode("utf-8", "replace"),
            unit=md.unit.decode("utf-8", "replace"),
        )


def _decode_remote_write_upb(body: bytes) -> ParseResult:
    """The Python path of ``decode_remote_write`` (any valid encoding)."""
    try:
        req = _RawWriteRequest.FromString(body)
    except DecodeError as exc:
        raise ParseError(f"body is not a remote-write WriteRequest protobuf: {exc}") from exc
    errors: list[LineError] = []
    tss = req.timeseries
    entries = [
        _label_cache.get(raw) or _cached_labels(raw) for raw in [tuple(t.labels) for t in tss]
    ]
    sample_lists = [t.samples for t in tss]
    counts = list(map(len, sample_lists))
    flat = list(chain.from_iterable(sample_lists))
    series, series_ids = _number_series(entries, errors)
    for i in [i for i, t in enumerate(tss) if t.histograms]:
        errors.append(_histogram_error(i, len(tss[i].histograms)))
    batch = _assemble(series, flat, series_ids, counts, errors)
    metadata: dict[str, MetricMetadata] = {}
    for md in req.metadata:
        _add_metadata(metadata, md)
    return ParseResult(batch, errors, metadata)


def decode_remote_write_v2(body: bytes) -> ParseResult:
    """Decode an *uncompressed* remote-write 2.0 ``io.prometheus.write.v2.Request``.

    Labels are resolved through the symbols table (``symbols[0]`` must be
    ``""``); per-series metadata (type, help, unit) fills ``ParseResult.metadata``
    keyed by metric name. Native histograms are reported as unsupported.
    """
    try:
        req = _RawRequestV2.FromString(body)
    except DecodeError as exc:
        raise ParseError(f"body is not a remote-write 2.0 Request protobuf: {exc}") from exc
    symbols = list(req.symbols)
    if symbols and symbols[0] != b"":
        raise ParseError('remote-write 2.0 symbols[0] must be the empty string ""')
    errors: list[LineError] = []
    series: list[LabelSet] = []
    pos: dict[LabelSet, int] = {}
    flat: list[bytes] = []
    series_ids: list[int] = []
    counts: list[int] = []
    metadata: dict[str, MetricMetadata] = {}
    nsym = len(symbols)
    if len(_v2_cache) >= _CACHE_LIMIT:
        _v2_cache.clear()
    sym_get = symbols.__getitem__
    v2_get = _v2_cache.get
    for i, ts in enumerate(req.timeseries):
        refs = ts.labels_refs
        try:
            raw = tuple(map(sym_get, refs))
        except IndexError:
            raw = None
        hit = v2_get(raw) if raw is not None else None
        if hit is None:
            hit = _labels_from_symbols(list(refs), symbols)
            if raw is not None and hit[0] is not None and len(_v2_cache) < _v2_room():
                _v2_cache[raw] = hit
        ls, reason = hit
        if ls is None:
            errors.append(LineError(0, f"timeseries[{i}]: {reason}"))
            sid = -1
        else:
            found = pos.get(ls)
            if found is None:
                found = pos[ls] = len(series)
                series.append(ls)
            sid = found
            if ts.HasField("metadata"):
                md = ts.metadata
                help_ref, unit_ref = md.help_ref, md.unit_ref
                if md.type or help_ref or unit_ref:
                    metadata[dict(ls)["__name__"]] = MetricMetadata(
                        type=_V2_TYPES.get(md.type, "unknown"),
                        help=symbols[help_ref].decode("utf-8", "replace")
                        if help_ref < nsym
                        else "",
                        unit=symbols[unit_ref].decode("utf-8", "replace")
                        if unit_ref < nsym
                        else "",
                    )
        if ts.histograms:
            errors.append(_histogram_error(i, len(ts.histograms)))
        samples = ts.samples
        flat.extend(samples)
        series_ids.append(sid)
        counts.append(len(samples))
    batch = _assemble(series, flat, series_ids, counts, errors)
    return ParseResult(batch, errors, metadata)


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _sample_records(timestamps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every sample as a ``samples`` (field 2) record of a TimeSeries, built with array
    operations: ``(buffer, record end offsets)``. A record is tag 0x12, its length (always
    under 128), then the Sample's fields as protobuf writes them: the value (0x09 and 8
    bytes, left out when its bits are all zero) and the timestamp (0x10 and a varint of
    its two's complement, left out when 0)."""
    n = len(timestamps)
    vbits = np.ascontiguousarray(values, "<f8").view(np.uint64)
    t = np.ascontiguousarray(timestamps, np.int64).view(np.uint64)
    groups = np.ones(n, np.int64)  # 7-bit groups of each timestamp's varint
    for j in range(1, 10):
        groups += (t >> np.uint64(7 * j)) != 0
    vlen = np.where(vbits != 0, 9, 0)
    tlen = np.where(t != 0, 1 + groups, 0)
    size = 2 + vlen + tlen
    end = np.cumsum(size)
    start = end - size
    buf = np.zeros(int(end[-1]) if n else 0, np.uint8)
    buf[start] = 0x12
    buf[start + 1] = vlen + tlen
    vi = np.flatnonzero(vlen)
    buf[start[vi] + 2] = 0x09
    vbytes = vbits[vi].astype("<u8").view(np.uint8).reshape(-1, 8)
    buf[(start[vi] + 3)[:, None] + np.arange(8)] = vbytes
    ti = np.flatnonzero(tlen)
    pos = start[ti] + 2 + vlen[ti]
    buf[pos] = 0x10
    tt, gg = t[ti], groups[ti]
    for j in range(10):
        m = gg > j
        if not m.any():
            break
        byte = ((tt[m] >> np.uint64(7 * j)) & np.uint64(0x7F)).astype(np.uint8)
        buf[pos[m] + 1 + j] = byte | np.where(gg[m] > j + 1, 0x80, 0).astype(np.uint8)
    return buf, end


def _encode_samples(timestamps: np.ndarray, values: np.ndarray) -> list[bytes]:
    """Each sample's Sample message (the payload of its record)."""
    buf, end = _sample_records(timestamps, values)
    raw = buf.tobytes()
    starts = np.concatenate(([0], end[:-1])).tolist()
    return [raw[s + 2 : e] for s, e in zip(starts, end.tolist(), strict=True)]


#: the varints of 0 .. 2**14 - 1 (every record length of a usual series), built once:
#: the per-series loop of ``encode_remote_write`` then costs no Python varint loop
_SMALL_VARINTS = [_varint(n) for n in range(1 << 14)]


def _record(tag: bytes, payload: bytes) -> bytes:
    n = len(payload)
    return tag + (_SMALL_VARINTS[n] if n < 1 << 14 else _varint(n)) + payload


@functools.lru_cache(maxsize=65536)
def _label_records(labels: LabelSet) -> bytes:
    """A series' ``labels`` (field 1) records; cached, since writers send the same series
    again and again (bounded: 65,536 series, about 10 MB; a worker writes four output
    series per input series, so 16,384 thrashed from 4,096 input series on)."""
    lab = _MSG["Label"]
    return b"".join(
        _record(b"\x0a", lab(name=k, value=v).SerializeToString())
        for k, v in sorted(labels)
        if v != ""
    )


def encode_remote_write(
    batch: SampleBatch,
    metadata: dict[str, MetricMetadata] | None = None,
    *,
    compress: bool = True,
) -> bytes:
    """Encode ``batch`` as a remote-write 1.0 ``WriteRequest``, snappy (block) compressed.

    Samples of each series are sent in timestamp order. With ``compress=False``
    the raw protobuf is returned (what ``decode_remote_write`` takes).
    Metadata, when given, goes into Prometheus's (non-spec) field 3.
    """
    parts = []  # WriteRequest field 1 records, written by hand: samples as arrays
    if len(batch):
        # the sample records of every series in one array pass (per series, numpy's call
        # overhead cost ~100 µs: 11 ms for a request of 100 one-sample series), then cut:
        # series in index order, each one's samples in time order (ties in batch order)
        order = np.lexsort((batch.timestamps, batch.series_idx))
        idx = batch.series_idx[order]
        buf, end = _sample_records(batch.timestamps[order], batch.values[order])
        raw = buf.tobytes()
        first = np.concatenate(([0], np.flatnonzero(np.diff(idx)) + 1))
        last = np.concatenate((first[1:], [len(idx)])) - 1
        byte_from = np.concatenate(([0], end[:-1]))[first]
        small, names = _SMALL_VARINTS, batch.series
        for s, lo, hi in zip(
            idx[first].tolist(), byte_from.tolist(), end[last].tolist(), strict=True
        ):
            labels = _label_records(names[s])
            n = len(labels) + hi - lo
            parts.append(b"\x0a" + (small[n] if n < 1 << 14 else _varint(n)) + labels + raw[lo:hi])
    req = _RawWriteRequest()  # the metadata (field 3) follows the series, as protobuf orders it
    for name, md in (metadata or {}).items():
        m = req.metadata.add()
        m.type = _V1_TYPE_CODES.get(md.type, 0)
        m.metric_family_name = name.encode()
        m.help = md.help.encode()
        m.unit = md.unit.encode()
    raw = b"".join(parts) + req.SerializeToString()
    return bytes(cramjam.snappy.compress_raw(raw)) if compress else raw


def encode_remote_write_v2(batch: SampleBatch, *, compress: bool = True) -> bytes:
    """Encode ``batch`` as a remote-write 2.0 Request (symbols table), snappy (block) compressed."""
    symbols: list[bytes] = [b""]
    sym_pos: dict[str, int] = {"": 0}

    def ref(s: str) -> int:
        i = sym_pos.get(s)
        if i is None:
            i = sym_pos[s] = len(symbols)
            symbols.append(s.encode())
        return i

    req = _RawRequestV2()
    for labels, ts, vals in batch.iter_series():
        order = np.argsort(ts, kind="stable")
        t = req.timeseries.add()
        for k, v in sorted(labels):
            if v != "":
                t.labels_refs.extend((ref(k), ref(v)))
        t.samples.extend(_encode_samples(ts[order], vals[order]))
    req.symbols.extend(symbols)
    raw = req.SerializeToString()
    return bytes(cramjam.snappy.compress_raw(raw)) if compress else raw
