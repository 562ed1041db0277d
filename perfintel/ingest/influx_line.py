"""The careful path of the Influx line-protocol parser: one line at a time,
every escaping rule, each error worded. It defines the semantics (described in
``influx.py``); the bulk path (``influx_bulk.py``) gives the same answers faster
for the common shape of line and hands every other line here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from perfintel.errors import InvalidSeriesError
from perfintel.model import (
    INT64_MAX,
    INT64_MIN,
    METRIC_NAME,
    LabelSet,
    label_set,
    validate_label_set,
)

_UINT64_MAX = 2**64 - 1

BOOLS = {
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
TS_RE = re.compile(rb"-?[0-9]+")

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


class LineFail(Exception):
    pass


@dataclass(frozen=True)
class SeriesKey:
    """A parsed series key (measurement and tags) or the reason it is unusable."""

    measurement: str
    tags: tuple[tuple[str, str], ...]
    error: str | None = None


def parse_key(section: bytes) -> SeriesKey:
    m = _MEASUREMENT.match(section)
    if m is None:
        return SeriesKey("", (), "missing measurement")
    try:
        measurement = _unescape(m.group(0), b", \\")
        rest = section[m.end() :]
        tags = []
        pos = 0
        while pos < len(rest):
            t = _TAG.match(rest, pos)
            if t is None:
                return SeriesKey(
                    "", (), f"invalid tag set {rest[pos:].decode('utf-8', 'replace')!r}"
                )
            tags.append(
                (
                    label_name_for(_unescape(t.group(1), b",= \\")),
                    _unescape(t.group(2), b",= \\"),
                )
            )
            pos = t.end()
    except UnicodeDecodeError:
        return SeriesKey("", (), "series key is not valid UTF-8")
    return SeriesKey(measurement, tuple(tags))


def series_for(key: SeriesKey, field: str) -> LabelSet:
    ls = label_set([(METRIC_NAME, metric_name_for(key.measurement, field)), *key.tags])
    validate_label_set(ls)
    return ls


def _to_float(v: bytes) -> float:
    """A float field value (anything ``float()`` reads, except digit-group underscores)."""
    if b"_" in v:
        raise ValueError(v)
    return float(v)


def field_value(raw: bytes) -> float:
    last = raw[-1:]
    if last == b"i":
        if not _INT_RE.fullmatch(raw, 0, len(raw) - 1):
            raise LineFail(f"invalid integer value {raw.decode('utf-8', 'replace')!r}")
        n = int(raw[:-1])
        if not INT64_MIN <= n <= INT64_MAX:
            raise LineFail(f"integer value {raw.decode()!r} is out of the int64 range")
        return float(n)
    if last == b"u":
        if not _UINT_RE.fullmatch(raw, 0, len(raw) - 1):
            raise LineFail(f"invalid unsigned value {raw.decode('utf-8', 'replace')!r}")
        n = int(raw[:-1])
        if n > _UINT64_MAX:
            raise LineFail(f"unsigned value {raw.decode()!r} is out of the uint64 range")
        return float(n)
    b = BOOLS.get(raw)
    if b is not None:
        return b
    try:
        return _to_float(raw)
    except ValueError:
        raise LineFail(f"invalid field value {raw.decode('utf-8', 'replace')!r}") from None


def _convert_ts(raw: int, mul: int, div: int) -> int:
    if not INT64_MIN <= raw <= INT64_MAX:
        raise LineFail(f"timestamp {raw} is out of the int64 range")
    ms = raw * mul // div
    if not INT64_MIN <= ms <= INT64_MAX:
        raise LineFail(f"timestamp {raw} is out of range")
    return ms


def parse_line(
    line: bytes, mul: int, div: int, default_ts: int
) -> list[tuple[LabelSet, int, float]]:
    """The careful path: one line, all escaping rules; raises LineFail with the reason."""
    line = line.lstrip(b" \t").rstrip(b" \t\r")
    km = _KEY_SECTION.match(line)
    if km is None:
        raise LineFail("missing measurement")
    key = parse_key(km.group(0))
    if key.error:
        raise LineFail(key.error)
    pos = km.end()
    if pos >= len(line) or line[pos] != 0x20:
        raise LineFail("missing fields")
    pos += 1
    fields: list[tuple[str, float]] = []
    strings = 0
    while True:
        fm = _FIELD_KEY.match(line, pos)
        if fm is None:
            rest = line[pos:].split(b" ", 1)[0].split(b",", 1)[0]
            raise LineFail(f"invalid field {rest.decode('utf-8', 'replace')!r}: expected key=value")
        try:
            fkey = _unescape(fm.group(1), b",= \\")
        except UnicodeDecodeError:
            raise LineFail("field key is not valid UTF-8") from None
        pos = fm.end()
        if line[pos : pos + 1] == b'"':
            sm = _STRING_VALUE.match(line, pos)
            if sm is None:
                raise LineFail(f"unterminated string value of field {fkey!r}")
            strings += 1
            pos = sm.end()
        else:
            vm = _PLAIN_VALUE.match(line, pos)
            if vm is None:
                raise LineFail(f"missing value of field {fkey!r}")
            fields.append((fkey, field_value(vm.group(0))))
            pos = vm.end()
        if pos < len(line) and line[pos] == 0x2C:  # ","
            pos += 1
            continue
        break
    if pos == len(line):
        ts = default_ts
    else:
        tok = line[pos + 1 :] if line[pos] == 0x20 else line[pos:]
        if line[pos] != 0x20 or not TS_RE.fullmatch(tok):
            raise LineFail(f"invalid timestamp {tok.decode('utf-8', 'replace')!r}")
        ts = _convert_ts(int(tok), mul, div)
    if not fields:
        raise LineFail("no numeric fields" if strings else "missing fields")
    out = []
    for fkey, value in fields:
        try:
            out.append((series_for(key, fkey), ts, value))
        except InvalidSeriesError as exc:
            raise LineFail(str(exc)) from None
    return out
