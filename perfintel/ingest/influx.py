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
line takes the careful per-line path (``influx_line.py``), which defines the semantics (the
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

This module runs the two paths (the bulk one is in ``influx_bulk.py``) and
holds the formatter.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from perfintel.batch import LineError, ParseResult, SampleBatch
from perfintel.ingest.influx_bulk import (  # _scan: the C scanner, None without it
    Bulk,
    _scan,
    numpy_bulk,
    scanned_bulk,
    thread_caches,
)
from perfintel.ingest.influx_line import LineFail, parse_line
from perfintel.model import METRIC_NAME, LabelSet

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
    out = Bulk([], [], [], [])
    caches = thread_caches()
    caches.reset_if_full()
    if _scan is not None:
        careful = scanned_bulk(data, mul, div, default_timestamp_ms, out, caches)
    else:
        careful = numpy_bulk(data, mul, div, default_timestamp_ms, out, caches)
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
                samples = parse_line(line, mul, div, default_timestamp_ms)
            except LineFail as exc:
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
