"""InfluxDB line protocol: a fast parser onto the Prometheus model, and a formatter.

Syntax (one point per line; ``#`` starts a comment line)::

    measurement[,tag_key=tag_value...] field_key=field_value[,field_key=field_value...] [timestamp]

Mapping, as VictoriaMetrics and M3 do: every numeric field becomes one sample
of the series ``{measurement}_{field_key}`` carrying the tags as labels.
Characters that a Prometheus metric name (label name) may not hold become
``_``, and a name starting with a digit gets a ``_`` prefix. Field types:

* float (``1``, ``-1.5e+7``; ``NaN`` and ``±Inf`` are accepted as VictoriaMetrics
  does, although InfluxDB refuses them), integer ``12i``, unsigned ``12u``;
* boolean ``t|T|true|True|TRUE`` → 1 and ``f|F|false|False|FALSE`` → 0;
* strings (``"..."``) are skipped silently; a line with *only* string fields
  is an error ("no numeric fields").

Escaping: the measurement escapes comma and space; tag keys, tag values and
field keys escape comma, ``=`` and space; string field values escape ``"``
and ``\\``. A backslash before any other character is a literal backslash;
``\\\\`` is one backslash.

Timestamps are integers in ``precision`` units (``ns`` by default, also
``u``/``µ``/``us``, ``ms``, ``s``, ``m``, ``h``), converted to milliseconds by
floor division; a missing timestamp means ``default_timestamp_ms``. A line
whose timestamp does not fit in int64 milliseconds is an error.

Speed: lines of the common shape (no quote, backslash, tab or CR; one or two
single spaces; numeric or boolean fields) are scanned in C
(``perfintel.ingest._scan.lp_scan``: values, timestamps and the distinct
(series key, field) pairs, with the GIL released); the parser then resolves
each distinct pair to a label set once, through per-thread caches. Every other
line takes the careful per-line path below, which defines the semantics (the
tests check the scanner against it line by line), and the samples are put back
in input order. Without the C extension the bulk path is numpy: it
classifies lines the same way, splits the payload into tokens in one C call,
caches the parsed series key per distinct byte string, and converts values and
timestamps in bulk; lines it cannot convert go to the careful path. Either
way every error names its 1-based line. The caches are per thread and bounded
(reset between parses past 50,000 series keys). Speeds are in BENCHMARKS.md
(``benchmarks/parsers.py``).

On the numpy path, samples in the batch are grouped by path (bulk first, then
careful), not in input order; series are listed once.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import repeat

import numpy as np

from perfintel.batch import LineError, ParseResult, SampleBatch
from perfintel.errors import InvalidSeriesError
from perfintel.model import METRIC_NAME, LabelSet, label_set, validate_label_set

try:
    from perfintel.ingest import _scan
except ImportError:  # built without a C compiler: the numpy bulk path below is used
    _scan = None  # type: ignore[assignment]

__all__ = ["PRECISIONS", "format_influx_line_protocol", "parse_influx_line_protocol"]

#: precision -> (multiplier to ms, divisor to ms)
PRECISIONS: dict[str, tuple[int, int]] = {
    "ns": (1, 1_000_000),
    "n": (1, 1_000_000),
    "us": (1, 1_000),
    "u": (1, 1_000),
    "µ": (1, 1_000),
    "µs": (1, 1_000),
    "ms": (1, 1),
    "s": (1_000, 1),
    "m": (60_000, 1),
    "h": (3_600_000, 1),
}

_INT64_MAX = 2**63 - 1
_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1

_BOOLS = {
    b"t": 1.0,
    b"T": 1.0,
    b"true": 1.0,
    b"True": 1.0,
    b"TRUE": 1.0,
    b"f": 0.0,
    b"F": 0.0,
    b"false": 0.0,
    b"False": 0.0,
    b"FALSE": 0.0,
}

_BAD_METRIC_CHARS = re.compile(r"[^a-zA-Z0-9_:]")
_BAD_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")
_INT_RE = re.compile(rb"-?[0-9]+")
_UINT_RE = re.compile(rb"[0-9]+")
_TS_RE = re.compile(rb"-?[0-9]+")

# Careful path: tokens where "\x" is an escaped pair (see module docstring).
_KEY_SECTION = re.compile(rb"(?:\\.|[^\\ ])+", re.S)
_MEASUREMENT = re.compile(rb"(?:\\.|[^\\,])+", re.S)
_TAG = re.compile(rb",((?:\\.|[^\\,=])+)=((?:\\.|[^\\,=])+)", re.S)
_FIELD_KEY = re.compile(rb"((?:\\.|[^\\,= ])+)=", re.S)
_STRING_VALUE = re.compile(rb'"((?:\\.|[^\\"])*)"', re.S)
_PLAIN_VALUE = re.compile(rb"[^, ]+")
_UNESCAPE = re.compile(rb"\\(.)", re.S)


def _unescape(token: bytes, specials: bytes) -> str:
    if b"\\" in token:
        token = _UNESCAPE.sub(lambda m: m.group(1) if m.group(1) in specials else m.group(0), token)
    return token.decode("utf-8")


def metric_name_for(measurement: str, field: str) -> str:
    """``{measurement}_{field}`` with characters Prometheus does not allow replaced by ``_``."""
    name = _BAD_METRIC_CHARS.sub("_", f"{measurement}_{field}")
    return "_" + name if name[:1].isdigit() else name


def label_name_for(key: str) -> str:
    name = _BAD_LABEL_CHARS.sub("_", key) or "_"
    return "_" + name if name[:1].isdigit() else name


class _LineFail(Exception):
    pass


@dataclass(frozen=True)
class _Key:
    """A parsed series key (measurement and tags) or the reason it is unusable."""

    measurement: str
    tags: tuple[tuple[str, str], ...]
    error: str | None = None


def _parse_key(section: bytes) -> _Key:
    m = _MEASUREMENT.match(section)
    if m is None:
        return _Key("", (), "missing measurement")
    try:
        measurement = _unescape(m.group(0), b", \\")
        rest = section[m.end() :]
        tags = []
        pos = 0
        while pos < len(rest):
            t = _TAG.match(rest, pos)
            if t is None:
                return _Key("", (), f"invalid tag set {rest[pos:].decode('utf-8', 'replace')!r}")
            tags.append(
                (
                    label_name_for(_unescape(t.group(1), b",= \\")),
                    _unescape(t.group(2), b",= \\"),
                )
            )
            pos = t.end()
    except UnicodeDecodeError:
        return _Key("", (), "series key is not valid UTF-8")
    return _Key(measurement, tuple(tags))


def _series_for(key: _Key, field: str) -> LabelSet:
    ls = label_set([(METRIC_NAME, metric_name_for(key.measurement, field)), *key.tags])
    validate_label_set(ls)
    return ls


def _to_float(v: bytes) -> float:
    """A float field value (anything ``float()`` reads, except digit-group underscores)."""
    if b"_" in v:
        raise ValueError(v)
    return float(v)


def _field_value(raw: bytes) -> float:
    last = raw[-1:]
    if last == b"i":
        if not _INT_RE.fullmatch(raw, 0, len(raw) - 1):
            raise _LineFail(f"invalid integer value {raw.decode('utf-8', 'replace')!r}")
        n = int(raw[:-1])
        if not _INT64_MIN <= n <= _INT64_MAX:
            raise _LineFail(f"integer value {raw.decode()!r} is out of the int64 range")
        return float(n)
    if last == b"u":
        if not _UINT_RE.fullmatch(raw, 0, len(raw) - 1):
            raise _LineFail(f"invalid unsigned value {raw.decode('utf-8', 'replace')!r}")
        n = int(raw[:-1])
        if n > _UINT64_MAX:
            raise _LineFail(f"unsigned value {raw.decode()!r} is out of the uint64 range")
        return float(n)
    b = _BOOLS.get(raw)
    if b is not None:
        return b
    try:
        return _to_float(raw)
    except ValueError:
        raise _LineFail(f"invalid field value {raw.decode('utf-8', 'replace')!r}") from None


def _convert_ts(raw: int, mul: int, div: int) -> int:
    if not _INT64_MIN <= raw <= _INT64_MAX:
        raise _LineFail(f"timestamp {raw} is out of the int64 range")
    ms = raw * mul // div
    if not _INT64_MIN <= ms <= _INT64_MAX:
        raise _LineFail(f"timestamp {raw} is out of range")
    return ms


def _parse_line(
    line: bytes, mul: int, div: int, default_ts: int
) -> list[tuple[LabelSet, int, float]]:
    """The careful path: one line, all escaping rules; raises _LineFail with the reason."""
    line = line.lstrip(b" \t").rstrip(b" \t\r")
    km = _KEY_SECTION.match(line)
    if km is None:
        raise _LineFail("missing measurement")
    key = _parse_key(km.group(0))
    if key.error:
        raise _LineFail(key.error)
    pos = km.end()
    if pos >= len(line) or line[pos] != 0x20:
        raise _LineFail("missing fields")
    pos += 1
    fields: list[tuple[str, float]] = []
    strings = 0
    while True:
        fm = _FIELD_KEY.match(line, pos)
        if fm is None:
            rest = line[pos:].split(b" ", 1)[0].split(b",", 1)[0]
            raise _LineFail(
                f"invalid field {rest.decode('utf-8', 'replace')!r}: expected key=value"
            )
        try:
            fkey = _unescape(fm.group(1), b",= \\")
        except UnicodeDecodeError:
            raise _LineFail("field key is not valid UTF-8") from None
        pos = fm.end()
        if line[pos : pos + 1] == b'"':
            sm = _STRING_VALUE.match(line, pos)
            if sm is None:
                raise _LineFail(f"unterminated string value of field {fkey!r}")
            strings += 1
            pos = sm.end()
        else:
            vm = _PLAIN_VALUE.match(line, pos)
            if vm is None:
                raise _LineFail(f"missing value of field {fkey!r}")
            fields.append((fkey, _field_value(vm.group(0))))
            pos = vm.end()
        if pos < len(line) and line[pos] == 0x2C:  # ","
            pos += 1
            continue
        break
    if pos == len(line):
        ts = default_ts
    else:
        tok = line[pos + 1 :] if line[pos] == 0x20 else line[pos:]
        if line[pos] != 0x20 or not _TS_RE.fullmatch(tok):
            raise _LineFail(f"invalid timestamp {tok.decode('utf-8', 'replace')!r}")
        ts = _convert_ts(int(tok), mul, div)
    if not fields:
        raise _LineFail("no numeric fields" if strings else "missing fields")
    out = []
    for fkey, value in fields:
        try:
            out.append((_series_for(key, fkey), ts, value))
        except InvalidSeriesError as exc:
            raise _LineFail(str(exc)) from None
    return out


# --- the bulk path -----------------------------------------------------------------------

_CACHE_LIMIT = 50_000


class _Caches:
    """Per-thread caches of the bulk path: series keys, field keys and their label sets.

    Ids are positions in ``keys``/``field_names``; they stay valid for a whole
    parse because the caches are only reset between parses (``reset_if_full``).
    """

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.key_ids: dict[bytes, int] = {}
        self.keys: list[_Key] = []
        self.field_ids: dict[bytes, int] = {}
        self.field_names: list[str | None] = []  # None: the field key is not valid UTF-8
        self.series: dict[tuple[int, int], LabelSet | str] = {}
        # Equal label sets are one object, so a parse can group samples by id().
        self.canonical: dict[LabelSet, LabelSet] = {}

    def reset_if_full(self) -> None:
        if (
            len(self.keys) > _CACHE_LIMIT
            or len(self.field_names) > _CACHE_LIMIT
            or len(self.series) > 4 * _CACHE_LIMIT
        ):
            self.clear()

    def key_id(self, raw: bytes) -> int:
        i = self.key_ids.get(raw)
        if i is None:
            i = self.key_ids[raw] = len(self.keys)
            self.keys.append(_parse_key(raw))
        return i

    def field_id(self, raw: bytes) -> int:
        i = self.field_ids.get(raw)
        if i is None:
            i = self.field_ids[raw] = len(self.field_names)
            try:
                self.field_names.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                self.field_names.append(None)
        return i

    def series_entry(self, kid: int, fid: int) -> LabelSet | str:
        hit = self.series.get((kid, fid))
        if hit is not None:
            return hit
        key = self.keys[kid]
        fname = self.field_names[fid]
        entry: LabelSet | str
        if key.error:
            entry = key.error
        elif fname is None:
            entry = "field key is not valid UTF-8"
        else:
            try:
                ls = _series_for(key, fname)
                entry = self.canonical.setdefault(ls, ls)
            except InvalidSeriesError as exc:
                entry = str(exc)
        self.series[(kid, fid)] = entry
        return entry


_local = threading.local()


def _caches() -> _Caches:
    c: _Caches | None = getattr(_local, "caches", None)
    if c is None:
        c = _local.caches = _Caches()
    return c


def _classify_lines(
    data: bytes, buf: np.ndarray, nl: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per line: may the bulk path take it (plain bytes, one or two single spaces)? And its spaces."""
    n = len(starts)
    ok = ends > starts
    for ch in b'"\\\t\r\x0b\x0c':
        if bytes((ch,)) in data:
            ok[np.searchsorted(nl, np.flatnonzero(buf == ch))] = False
    sp = np.flatnonzero(buf == 0x20)
    sp_line = np.searchsorted(nl, sp)
    spaces = np.bincount(sp_line, minlength=n)[:n]
    ok &= (spaces == 1) | (spaces == 2)
    double = np.flatnonzero(np.diff(sp) == 1)
    if len(double):
        ok[sp_line[double]] = False
    if len(buf):
        first = buf[np.minimum(starts, len(buf) - 1)]
        last = buf[np.maximum(ends - 1, 0)]
        ok &= (first != 0x20) & (first != 0x23) & (last != 0x20)  # " ", "#"
    return ok, spaces


@dataclass
class _Bulk:
    series: list[LabelSet]
    idx: list[np.ndarray]
    ts: list[np.ndarray]
    vals: list[np.ndarray]
    lines: list[np.ndarray] | None = None  # 1-based line of each sample, when known


def _bulk_parse(
    chunk: bytes,
    line_nos: np.ndarray,
    ntok: np.ndarray,
    mul: int,
    div: int,
    default_ts: int,
    out: _Bulk,
    pos: dict[int, int],
    c: _Caches,
) -> np.ndarray:
    """Parse well-formed-looking lines; returns the line numbers that need the careful path."""
    n = len(line_nos)
    tokens = chunk.split()
    if len(tokens) != int(ntok.sum()):  # cannot happen after _classify_lines; be safe
        return line_nos
    if (ntok == 3).all():
        keys, fields, tss = tokens[0::3], tokens[1::3], tokens[2::3]
        has_ts = None
    elif (ntok == 2).all():
        keys, fields, tss = tokens[0::2], tokens[1::2], []
        has_ts = None
    else:
        first = np.zeros(n, np.int64)
        np.cumsum(ntok[:-1], out=first[1:])
        fl = first.tolist()
        keys = [tokens[i] for i in fl]
        fields = [tokens[i + 1] for i in fl]
        has_ts = ntok == 3
        tss = [tokens[i + 2] for i in first[has_ts].tolist()]
    bad = np.zeros(n, bool)

    # Series keys -> cached ids.
    kids_list = list(map(c.key_ids.get, keys, repeat(-1)))
    if -1 in kids_list:
        for j, kid in enumerate(kids_list):
            if kid == -1:
                kids_list[j] = c.key_id(keys[j])
    kids = np.asarray(kids_list, np.int64)

    # Fields: "a=1,b=2" per line; validate the name=value,... alternation in bulk.
    nf = np.fromiter(map(bytes.count, fields, repeat(b",")), np.int64, n) + 1
    fb = np.frombuffer(b",".join(fields), np.uint8)
    seps = np.flatnonzero((fb == 0x3D) | (fb == 0x2C))
    kinds = fb[seps]
    structure_ok = (
        len(seps) == 2 * int(nf.sum()) - 1
        and bool((kinds[0::2] == 0x3D).all())
        and bool((kinds[1::2] == 0x2C).all())
        and (len(seps) == 0 or (seps[0] > 0 and seps[-1] < len(fb) - 1))
        and bool((np.diff(seps) > 1).all())
    )
    if not structure_ok:
        # Find the offending lines, send them to the careful path, and retry the rest.
        for j, f in enumerate(fields):
            parts = f.split(b",")
            if any(p.count(b"=") != 1 or p.startswith(b"=") or p.endswith(b"=") for p in parts):
                bad[j] = True
        return _retry(chunk, line_nos, ntok, bad, mul, div, default_ts, out, pos, c)
    names, vals, vbad = _bulk_values(fb, seps)
    sample_line = np.repeat(np.arange(n), nf)
    if vbad is not None:
        bad[sample_line[vbad]] = True
    fids_list = list(map(c.field_ids.get, names, repeat(-1)))
    if -1 in fids_list:
        for j, fid in enumerate(fids_list):
            if fid == -1:
                fids_list[j] = c.field_id(names[j])
    fids = np.asarray(fids_list, np.int64)

    # Timestamps.
    if has_ts is None and not tss:
        ts_ms = np.full(n, default_ts, np.int64)
    else:
        ts_ms, tbad = _bulk_timestamps(tss, mul, div)
        if has_ts is not None:
            full = np.full(n, default_ts, np.int64)
            full[has_ts] = ts_ms
            tb = np.zeros(n, bool)
            tb[has_ts] = tbad
            ts_ms, tbad = full, tb
        bad |= tbad
    if bad.all():
        return line_nos

    # Series per (key, field).
    kid_s = kids[sample_line]
    width = len(c.field_names) + 1
    combo = kid_s * width + fids
    uniq, inv = np.unique(combo, return_inverse=True)
    sid_of = np.empty(len(uniq), np.int64)
    for u, cb in enumerate(uniq.tolist()):
        entry = c.series_entry(cb // width, cb % width)
        if isinstance(entry, str):
            sid_of[u] = -1
        else:
            sid = pos.get(id(entry))
            if sid is None:
                sid = pos[id(entry)] = len(out.series)
                out.series.append(entry)
            sid_of[u] = sid
    sids = sid_of[inv.ravel()]
    if (sids < 0).any():
        bad[sample_line[sids < 0]] = True
    if bad.any():
        keep = ~bad[sample_line]
        out.idx.append(sids[keep])
        out.ts.append(ts_ms[sample_line[keep]])
        out.vals.append(vals[keep])
        return line_nos[bad]
    out.idx.append(sids)
    out.ts.append(ts_ms[sample_line])
    out.vals.append(vals)
    return line_nos[:0]


def _retry(
    chunk: bytes,
    line_nos: np.ndarray,
    ntok: np.ndarray,
    bad: np.ndarray,
    mul: int,
    div: int,
    default_ts: int,
    out: _Bulk,
    pos: dict[int, int],
    c: _Caches,
) -> np.ndarray:
    if not bad.any() or bad.all():
        return line_nos
    lines = chunk.split(b"\n")
    good = np.flatnonzero(~bad)
    sub = b"\n".join([lines[i] for i in good.tolist()])
    rest = _bulk_parse(sub, line_nos[good], ntok[good], mul, div, default_ts, out, pos, c)
    return np.sort(np.concatenate([line_nos[bad], rest]))


def _bulk_values(
    fb: np.ndarray, seps: np.ndarray
) -> tuple[list[bytes], np.ndarray, np.ndarray | None]:
    """Field names and values of a fields blob ``k=v,k=v,...`` whose structure is checked.

    Returns (names, values, indices of values the bulk path cannot vouch for or None).
    Integer suffixes are blanked to a space (``float()`` ignores it) and the
    integer syntax is checked on the bytes: no ``.``, ``e``, ``+`` or non-finite.
    """
    nvals = (len(seps) + 1) // 2
    ends = np.empty(nvals, np.int64)
    ends[:-1] = seps[1::2] - 1
    ends[-1] = len(fb) - 1
    last = fb[ends]
    is_int = last == 0x69  # i
    is_uint = last == 0x75  # u
    suffixed = is_int | is_uint
    any_suffix = bool(suffixed.any())
    if any_suffix:
        fb2 = fb.copy()
        fb2[ends[suffixed]] = 0x20
        blob = fb2.tobytes()
        marks = (fb == 0x5F) | (fb == 0x2E) | (fb == 0x65) | (fb == 0x45) | (fb == 0x2B)
    else:
        blob = fb.tobytes()
        marks = fb == 0x5F
    flat = blob.replace(b"=", b",").split(b",")
    names = flat[0::2]
    raw_vals = flat[1::2]
    badl: list[np.ndarray] = []
    try:
        vals = np.array(list(map(float, raw_vals)), np.float64)
    except ValueError:
        vals = np.empty(nvals, np.float64)
        okm = np.ones(nvals, bool)
        for j, v in enumerate(raw_vals):
            b = _BOOLS.get(v)
            if b is not None:
                vals[j] = b
                continue
            try:
                vals[j] = float(v)
            except ValueError:
                okm[j] = False
        badl.append(np.flatnonzero(~okm))
    mpos = np.flatnonzero(marks)
    if len(mpos):
        k = np.searchsorted(seps, mpos)
        inside = k % 2 == 1
        vj = (k[inside] - 1) // 2
        ch = fb[mpos[inside]]
        badl.append(vj[(ch == 0x5F) | suffixed[vj]])
    if any_suffix:
        iv = vals[suffixed]
        odd = ~np.isfinite(iv) | (iv != np.floor(iv)) | (np.abs(iv) >= 2.0**63)
        odd |= is_uint[suffixed] & (iv < 0)
        if odd.any():
            idx = np.flatnonzero(suffixed)[odd]
            for j in idx.tolist():
                try:
                    vals[j] = _field_value(raw_vals[j][:-1] + bytes((fb[ends[j]],)))
                except _LineFail:
                    badl.append(np.array([j]))
    bad = np.concatenate(badl) if badl else np.empty(0, np.int64)
    return names, vals, (bad if len(bad) else None)


def _bulk_timestamps(tss: list[bytes], mul: int, div: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(tss)
    bad = np.zeros(n, bool)
    raw: np.ndarray
    try:
        joined = b" ".join(tss)
        if b"_" in joined or b"+" in joined:
            raise ValueError
        raw = np.array(list(map(int, tss)), np.int64)
    except (ValueError, OverflowError):
        raw = np.zeros(n, np.int64)
        for j, t in enumerate(tss):
            if not _TS_RE.fullmatch(t) or not _INT64_MIN <= int(t) <= _INT64_MAX:
                bad[j] = True
            else:
                raw[j] = int(t)
    if mul == 1:
        return raw // div, bad
    limit = _INT64_MAX // mul
    over = (raw > limit) | (raw < -limit)
    bad |= over
    return np.where(over, 0, raw) * mul, bad


def _scanned_bulk(
    data: bytes, mul: int, div: int, default_ts: int, out: _Bulk, c: _Caches
) -> list[int]:
    """The bulk path in C (``_scan.lp_scan``); returns the line numbers that need care."""
    gid_b, line_b, ts_b, vals_b, spans_b, careful_b = _scan.lp_scan(data, mul, div, default_ts)
    careful = np.frombuffer(careful_b, np.int32)
    spans = np.frombuffer(spans_b, np.int64).reshape(-1, 4)
    if len(spans):
        sid_of = np.empty(len(spans), np.int64)
        pos: dict[int, int] = {}
        for g, (ka, kb, fa, fb) in enumerate(spans.tolist()):
            entry = c.series_entry(c.key_id(data[ka:kb]), c.field_id(data[fa:fb]))
            if isinstance(entry, str):
                sid_of[g] = -1
                continue
            sid = pos.get(id(entry))
            if sid is None:
                sid = pos[id(entry)] = len(out.series)
                out.series.append(entry)
            sid_of[g] = sid
        sids = sid_of[np.frombuffer(gid_b, np.int32)]
        ts = np.frombuffer(ts_b, np.int64)
        vals = np.frombuffer(vals_b, np.float64)
        bad = sids < 0
        if bad.any():  # an unusable series key: the careful path words the error
            lines = np.frombuffer(line_b, np.int32)
            bad_lines = np.unique(lines[bad])
            keep = ~np.isin(lines, bad_lines)
            sids, ts, vals = sids[keep], ts[keep], vals[keep]
            careful = np.concatenate([careful, bad_lines.astype(np.int32)])
        out.idx.append(sids)
        out.ts.append(ts)
        out.vals.append(vals)
        lines_of = np.frombuffer(line_b, np.int32)
        out.lines = [(lines_of[keep] if bad.any() else lines_of) + 1]
    return sorted((careful.astype(np.int64) + 1).tolist())


def _numpy_bulk(
    data: bytes, mul: int, div: int, default_ts: int, out: _Bulk, c: _Caches
) -> list[int]:
    """The bulk path in numpy (no C extension); returns the line numbers that need care."""
    buf = np.frombuffer(data, np.uint8)
    nl = np.flatnonzero(buf == 0x0A)
    starts = np.concatenate([[0], nl + 1])
    ends = np.concatenate([nl, [len(buf)]])
    ok, sp_counts = _classify_lines(data, buf, nl, starts, ends)
    nonempty = ends > starts
    line_nos = np.arange(1, len(starts) + 1)
    pos: dict[int, int] = {}
    careful: list[int] = []
    if ok.any():
        if ok.all():
            chunk = data
        else:
            lines = data.split(b"\n")
            chunk = b"\n".join([lines[i] for i in np.flatnonzero(ok).tolist()])
        careful = _bulk_parse(
            chunk, line_nos[ok], sp_counts[ok] + 1, mul, div, default_ts, out, pos, c
        ).tolist()
    return sorted([*careful, *line_nos[~ok & nonempty].tolist()])


def parse_influx_line_protocol(
    data: bytes, *, precision: str = "ns", default_timestamp_ms: int
) -> ParseResult:
    """Parse an Influx line-protocol payload into a columnar batch.

    A malformed line is reported with its 1-based number and skipped; the
    other lines are kept.

    >>> r = parse_influx_line_protocol(b"cpu,host=a usage=0.5 1700000000000000000", default_timestamp_ms=0)
    >>> r.batch.series, r.batch.timestamps.tolist(), r.batch.values.tolist()
    ([(('__name__', 'cpu_usage'), ('host', 'a'))], [1700000000000], [0.5])
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} (one of {', '.join(PRECISIONS)})")
    mul, div = PRECISIONS[precision]
    data = bytes(data)
    if not data:
        return ParseResult(SampleBatch.empty())
    out = _Bulk([], [], [], [])
    caches = _caches()
    caches.reset_if_full()
    if _scan is not None:
        careful = _scanned_bulk(data, mul, div, default_timestamp_ms, out, caches)
    else:
        careful = _numpy_bulk(data, mul, div, default_timestamp_ms, out, caches)
    errors: list[LineError] = []
    if careful:
        lines = data.split(b"\n")
        c_idx: list[int] = []
        c_ts: list[int] = []
        c_vals: list[float] = []
        c_lines: list[int] = []
        by_value = {ls: i for i, ls in enumerate(out.series)}
        for ln in careful:
            line = lines[ln - 1]
            stripped = line.strip(b" \t\r")
            if not stripped or stripped.startswith(b"#"):
                continue
            try:
                samples = _parse_line(line, mul, div, default_timestamp_ms)
            except _LineFail as exc:
                errors.append(LineError(ln, str(exc)))
                continue
            for ls, ts, value in samples:
                sid = by_value.get(ls)
                if sid is None:
                    sid = by_value[ls] = len(out.series)
                    out.series.append(ls)
                c_idx.append(sid)
                c_ts.append(ts)
                c_vals.append(value)
                c_lines.append(ln)
        if c_idx:
            out.idx.append(np.asarray(c_idx, np.int64))
            out.ts.append(np.asarray(c_ts, np.int64))
            out.vals.append(np.asarray(c_vals, np.float64))
            if out.lines is not None:
                out.lines.append(np.asarray(c_lines, np.int64))
    if not out.idx:
        return ParseResult(SampleBatch(out.series, *_empty3()), errors)
    idx = np.concatenate(out.idx).astype(np.int32)
    stamps = np.concatenate(out.ts).astype(np.int64, copy=False)
    vals = np.concatenate(out.vals).astype(np.float64, copy=False)
    if out.lines is not None and len(out.lines) > 1:
        # Back into input order, so "last write wins" means the last line.
        order = np.argsort(np.concatenate(out.lines), kind="stable")
        idx, stamps, vals = idx[order], stamps[order], vals[order]
    return ParseResult(SampleBatch(out.series, idx, stamps, vals), errors)


def _empty3() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, np.float64)


# --- formatting --------------------------------------------------------------------------

_TAG_ESCAPES = {ord("\\"): "\\\\", ord(","): "\\,", ord("="): "\\=", ord(" "): "\\ "}
_MEASUREMENT_ESCAPES = {ord("\\"): "\\\\", ord(","): "\\,", ord(" "): "\\ "}


def _format_value(v: float) -> str:
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


def split_metric_name(name: str) -> tuple[str, str]:
    """Measurement and field key that parse back to ``name``: split at the last ``_``.

    A name without an inner ``_`` becomes measurement ``name`` and field
    ``value`` (so it parses back as ``{name}_value``).
    """
    i = name.rfind("_")
    if 0 < i < len(name) - 1:
        return name[:i], name[i + 1 :]
    return name, "value"


def format_influx_line_protocol(
    batch: SampleBatch | Iterable[tuple[LabelSet, np.ndarray, np.ndarray]],
    *,
    precision: str = "ms",
) -> bytes:
    """Render samples as line protocol, one line per sample, timestamps in ``precision``.

    Each metric name is split with ``split_metric_name`` so that parsing the
    output gives the same series back. NaN and ±Inf are written as ``NaN``,
    ``+Inf`` and ``-Inf`` (the staleness marker becomes an ordinary NaN).
    Label values holding a newline cannot be expressed and raise ``ValueError``.
    """
    mul, div = PRECISIONS[precision]
    series = batch.iter_series() if isinstance(batch, SampleBatch) else batch
    lines: list[str] = []
    for labels, ts, vals in series:
        name = ""
        tags = []
        for k, v in labels:
            if k == METRIC_NAME:
                name = v
            else:
                if "\n" in v or "\r" in v:
                    raise ValueError(
                        f"label {k!r} holds a line break: not expressible in line protocol"
                    )
                tags.append(f",{k.translate(_TAG_ESCAPES)}={v.translate(_TAG_ESCAPES)}")
        measurement, field = split_metric_name(name)
        head = measurement.translate(_MEASUREMENT_ESCAPES) + "".join(tags)
        fkey = field.translate(_TAG_ESCAPES)
        for t, v in zip(ts.tolist(), vals.tolist(), strict=True):
            if mul == 1:
                stamp = t * div
            else:
                if t % mul:
                    raise ValueError(f"timestamp {t} ms is not a whole number of {precision!r}")
                stamp = t // mul
            lines.append(f"{head} {fkey}={_format_value(v)} {stamp}")
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""
