"""VictoriaMetrics' JSON-lines export/import format: one series per line.

::

    {"metric":{"__name__":"x","job":"a"},"values":[1,2.5],"timestamps":[1700000000000,1700000010000]}

What the real VictoriaMetrics does (checked against the ``victoria-metrics``
binary installed here, a 2023 build, via ``/api/v1/import``, ``/api/v1/write``
and ``/api/v1/export``; ``tests/ingest/test_vm_interop.py`` re-checks it):

* **Export** writes ``+Inf`` and ``-Inf`` as bare tokens (not valid JSON) and a
  Prometheus **staleness marker as ``null``**. Ordinary NaNs are never
  exported because VictoriaMetrics drops them on ingest (staleness markers
  written through remote-write are kept). Values come out of VictoriaMetrics'
  decimal storage: a value such as ``1.7976931348623157e308`` is exported as
  a 309-digit integer, and in a block mixing magnitudes small values may be
  rounded (VictoriaMetrics is lossy there; the format is not).
* **Import** accepts JSON numbers and the bare tokens ``NaN``, ``Inf``,
  ``+Inf``, ``-Inf`` (any case) and ``1e400``-style overflows; it drops NaN
  samples. It rejects the whole line (logging an error, still answering 204)
  for a string value (``"NaN"``), for ``Infinity`` and for ``null`` — so a
  line with a staleness marker cannot be imported back.

Accordingly ``parse_vm_jsonl`` reads everything VictoriaMetrics exports and
imports: numbers, bare ``NaN``/``Inf``/``+Inf``/``-Inf``/``Infinity`` (any
case), and ``null`` as the staleness marker (bit-exact ``STALE_NAN``).
``format_vm_jsonl`` writes what VictoriaMetrics exports: whole numbers as
integers, other numbers in Go's shortest form (exact either way), bare ``NaN``/``+Inf``/``-Inf``, and staleness markers as
``null`` — or, with ``stale_markers="drop"``, leaves them out so that every
line is accepted by VictoriaMetrics' import.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any, Literal, Protocol

import numpy as np
import orjson

from perfintel.batch import BatchBuilder, LineError, ParseResult, SampleBatch
from perfintel.errors import InvalidSeriesError
from perfintel.ingest.prometheus_text import format_go_float
from perfintel.model import (
    INT64_MAX,
    INT64_MIN,
    STALE_NAN,
    STALE_NAN_BITS,
    LabelSet,
    label_set,
    validate_label_set,
)

__all__ = ["MAX_SAMPLES_PER_LINE", "VmJsonlStream", "format_vm_jsonl", "parse_vm_jsonl"]

MAX_SAMPLES_PER_LINE = 10_000

_SENTINEL = "\x00perfintel:"
_BARE = re.compile(
    rb'"(?:[^"\\]|\\.)*"|([+-]?(?:[Ii][Nn][Ff](?:[Ii][Nn][Ii][Tt][Yy])?|[Nn][Aa][Nn]))', re.S
)
_SPECIAL = {"nan": float("nan"), "inf": float("inf"), "+inf": float("inf"), "-inf": float("-inf")}
_SPECIAL.update({"infinity": float("inf"), "+infinity": float("inf"), "-infinity": float("-inf")})
_SPECIAL.update({"+nan": float("nan"), "-nan": float("nan")})


def _quote_bare(m: re.Match[bytes]) -> bytes:
    tok = m.group(1)
    if tok is None:
        return m.group(0)
    return b'"\\u0000perfintel:' + tok + b'"'


def _loads(line: bytes) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        quoted = _BARE.sub(_quote_bare, line)
    try:
        return orjson.loads(quoted)
    except orjson.JSONDecodeError as exc:
        # orjson refuses overflowing numbers such as 1e400, which VictoriaMetrics reads as ±Inf.
        try:
            return json.loads(quoted)
        except ValueError:
            raise exc from None


def _value(v: Any) -> float | None:
    t = type(v)
    if t is float:
        return float(v)
    if t is int:
        try:
            return float(v)
        except OverflowError:
            return float("inf") if v > 0 else float("-inf")
    if v is None:
        return STALE_NAN
    if t is str and v.startswith(_SENTINEL):
        return _SPECIAL.get(v[len(_SENTINEL) :].lower())
    return None


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:60] + "…"


def parse_vm_jsonl(
    data: bytes, *, first_line: int = 1, max_line_bytes: int | None = None
) -> ParseResult:
    """Parse VictoriaMetrics JSON lines; each bad line is reported with its 1-based number.

    ``first_line`` numbers the first line of ``data`` (for a part of a stream);
    a line longer than ``max_line_bytes`` is rejected unread.

    >>> r = parse_vm_jsonl(b'{"metric":{"__name__":"x"},"values":[1,+Inf,null],"timestamps":[1,2,3]}')
    >>> r.batch.values.tolist()[:2], bool(r.errors)
    ([1.0, inf], False)
    """
    builder = BatchBuilder()
    errors: list[LineError] = []
    for lineno, line in enumerate(bytes(data).split(b"\n"), first_line):
        if not line.strip():
            continue
        if max_line_bytes is not None and len(line) > max_line_bytes:
            errors.append(LineError(lineno, _too_long(max_line_bytes)))
            continue
        try:
            doc = _loads(line)
        except (orjson.JSONDecodeError, OverflowError, RecursionError) as exc:
            errors.append(LineError(lineno, f"invalid JSON: {exc}"))
            continue
        reason = _line(doc, builder)
        if reason:
            errors.append(LineError(lineno, reason))
    return ParseResult(builder.build(), errors)


def _too_long(max_line_bytes: int) -> str:
    return f"line longer than {max_line_bytes} bytes (limits.max_import_line_bytes)"


class VmJsonlStream:
    """``parse_vm_jsonl`` over a body that arrives in pieces of any size.

    ``feed`` takes the next piece (cut anywhere, even inside a line) and
    yields a ``ParseResult`` each time about ``batch_bytes`` of whole lines
    have gathered; ``finish`` parses what is left. Memory is bounded by
    ``batch_bytes`` plus one line plus one piece: a line longer than
    ``max_line_bytes`` is reported (with its number) and skipped as it
    streams past, never held. Line numbers count from the start of the stream.

    >>> s = VmJsonlStream(max_line_bytes=1000)
    >>> parts = [b'{"metric":{"__name__":"x"},"val', b'ues":[1],"timestamps":[1]}\\nnot json\\n']
    >>> results = [r for p in parts for r in s.feed(p)] + list(s.finish())
    >>> sum(len(r.batch) for r in results), [e.line for r in results for e in r.errors]
    (1, [2])
    """

    def __init__(self, *, max_line_bytes: int, batch_bytes: int = 8 << 20) -> None:
        self.max_line_bytes = max_line_bytes
        self.batch_bytes = batch_bytes
        self._line = 1  # number of the line ``_partial`` holds the start of
        self._partial = bytearray()
        self._skipping = False  # inside a line already reported as too long
        self._ready: list[bytes] = []  # whole lines from ``_ready_first`` on, not parsed yet
        self._ready_bytes = 0
        self._ready_first = 1

    def feed(self, data: bytes) -> Iterator[ParseResult]:
        if self._skipping:
            nl = data.find(b"\n")
            if nl < 0:
                return
            data = data[nl + 1 :]
            self._skipping = False
            self._line += 1
            self._ready_first = self._line
        last = data.rfind(b"\n")
        if last >= 0:
            whole = bytes(self._partial) + data[: last + 1] if self._partial else data[: last + 1]
            self._partial = bytearray(data[last + 1 :])
            self._ready.append(whole)
            self._ready_bytes += len(whole)
            self._line += whole.count(b"\n")
            if self._ready_bytes >= self.batch_bytes:
                yield from self._flush()
        else:
            self._partial += data
        if len(self._partial) > self.max_line_bytes:
            yield from self._flush()
            too_long = LineError(self._line, _too_long(self.max_line_bytes))
            yield ParseResult(SampleBatch.empty(), [too_long])
            self._partial = bytearray()
            self._skipping = True

    def finish(self) -> Iterator[ParseResult]:
        if self._partial and not self._skipping:
            self._ready.append(bytes(self._partial))
        self._partial = bytearray()
        yield from self._flush()

    def _flush(self) -> Iterator[ParseResult]:
        if not self._ready:
            return
        block = b"".join(self._ready)
        first, self._ready_first = self._ready_first, self._line
        self._ready, self._ready_bytes = [], 0
        yield parse_vm_jsonl(block, first_line=first, max_line_bytes=self.max_line_bytes)


def _line(doc: Any, builder: BatchBuilder) -> str | None:
    if not isinstance(doc, dict):
        return "line must be a JSON object with metric, values and timestamps"
    metric, values, timestamps = doc.get("metric"), doc.get("values"), doc.get("timestamps")
    if not isinstance(metric, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metric.items()
    ):
        return "'metric' must be an object of string labels"
    if not isinstance(values, list) or not isinstance(timestamps, list):
        return "'values' and 'timestamps' must be lists"
    if len(values) != len(timestamps):
        return f"{len(values)} values but {len(timestamps)} timestamps"
    ls = label_set(metric)
    try:
        validate_label_set(ls)
    except InvalidSeriesError as exc:
        return str(exc)
    vals = _numbers(values)
    if vals is None:  # something else than plain numbers: value by value, to say which
        vals = np.empty(len(values), np.float64)
        for j, v in enumerate(values):
            f = _value(v)
            if f is None:
                shown = v[len(_SENTINEL) :] if isinstance(v, str) and v.startswith(_SENTINEL) else v
                return f"values[{j}]: {_short(shown)} is not a number"
            vals[j] = f
    ts = _int64s(timestamps)
    if ts is None:
        for j, t in enumerate(timestamps):
            if type(t) is not int or not INT64_MIN <= t <= INT64_MAX:
                return f"timestamps[{j}]: {_short(t)} is not an int64 millisecond timestamp"
        ts = np.asarray(timestamps, np.int64)
    if len(vals):
        # STALE_NAN went through a Python float: keep its exact bits.
        builder.add_many(ls, ts, vals)
    return None


_NUMBER_TYPES = frozenset((float, int))


def _numbers(values: list[Any]) -> np.ndarray | None:
    """Plain JSON numbers (no bools, strings, nulls or overflowing integers) as float64 at
    C speed; ``None`` when the list holds anything else."""
    if not set(map(type, values)) <= _NUMBER_TYPES:
        return None
    try:
        return np.array(values, np.float64)
    except OverflowError:  # an integer beyond float64: VictoriaMetrics reads it as ±Inf
        return None


def _int64s(values: list[Any]) -> np.ndarray | None:
    if set(map(type, values)) - {int}:
        return None
    try:
        return np.array(values, np.int64)
    except OverflowError:
        return None


def _format_value(v: float, bits: int) -> str:
    """One value as an export writes it (the slow, general path of ``_format_values``)."""
    if v != v:
        return "null" if bits == STALE_NAN_BITS else "NaN"
    if v == 0 and bits:
        return "-0.0"  # "-0" would read back as the integer 0
    return format_go_float(v)


def _format_values(vals: np.ndarray, bits: np.ndarray) -> bytes:
    """The values of a line, comma-separated; each parses back to the exact same float64.

    Whole numbers below 2**53 print as integers (what VictoriaMetrics'
    export writes: ``1000000``, never ``1e+06``). A line of finite values with
    fractions is written by orjson (shortest round-trip digits, in C). Lines
    with non-finite values or staleness markers take ``_format_value`` value
    by value."""
    magnitude = np.abs(vals)
    with np.errstate(invalid="ignore"):
        whole = (vals == np.trunc(vals)) & (magnitude < 2.0**53) & ((vals != 0) | (bits == 0))
    if whole.all():
        return orjson.dumps(vals.astype(np.int64), option=orjson.OPT_SERIALIZE_NUMPY)[1:-1]
    if np.isfinite(vals).all():
        return orjson.dumps(vals, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1]
    out = []
    for v, b, w in zip(vals.tolist(), bits.tolist(), whole.tolist(), strict=True):
        out.append(str(int(v)) if w else _format_value(v, b))
    return ",".join(out).encode()


class Samples(Protocol):
    """One series' samples as the exporter reads them (a store's ``SeriesSamples``)."""

    @property
    def labels(self) -> LabelSet: ...
    @property
    def timestamps(self) -> np.ndarray: ...
    @property
    def values(self) -> np.ndarray: ...


def format_vm_jsonl(
    series: Iterable[Samples],
    *,
    stale_markers: Literal["null", "drop"] = "null",
    max_samples_per_line: int = MAX_SAMPLES_PER_LINE,
) -> Iterator[bytes]:
    """Yield one line (ending in ``\\n``) per series, or several for long series.

    ``stale_markers="null"`` writes them as VictoriaMetrics' export does;
    ``"drop"`` leaves them out, for VictoriaMetrics' ``/api/v1/import``.
    """
    for s in series:
        head = b'{"metric":' + orjson.dumps(dict(s.labels)) + b',"values":['
        ts = np.ascontiguousarray(s.timestamps, np.int64)
        vals = np.ascontiguousarray(s.values, np.float64)
        bits = vals.view(np.uint64)
        if stale_markers == "drop":
            keep = bits != np.uint64(STALE_NAN_BITS)
            ts, vals, bits = ts[keep], vals[keep], bits[keep]
        for start in range(0, len(ts), max_samples_per_line):
            end = start + max_samples_per_line
            v_txt = _format_values(vals[start:end], bits[start:end])
            t_txt = orjson.dumps(ts[start:end], option=orjson.OPT_SERIALIZE_NUMPY)
            yield head + v_txt + b'],"timestamps":' + t_txt + b"}\n"
