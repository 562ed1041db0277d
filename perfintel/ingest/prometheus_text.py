"""Prometheus text exposition (0.0.4) and OpenMetrics 1.0: a lenient parser and a 0.0.4 writer.

The two formats differ where it hurts:

* **Timestamps**: 0.0.4 writes integer *milliseconds*; OpenMetrics writes
  *seconds*, possibly fractional (``1520879607.789``). OpenMetrics timestamps
  are converted exactly (decimal arithmetic, rounded half-even to the ms).
* OpenMetrics ends with ``# EOF``, knows ``# UNIT`` and exemplars
  (``sample # {trace_id="a"} 1``); exemplars are ignored.

``openmetrics=None`` detects the flavour: a ``# EOF`` line or a ``# UNIT`` line
means OpenMetrics (HTTP handlers should rather pass
``content_type_is_openmetrics(content_type)``).

**Lenient on purpose.** OpenMetrics says an exposition that is partly invalid
is wholly erroneous. perfintel instead behaves like Prometheus's push
consumers: a bad line becomes a ``LineError`` with its 1-based number and a
reason, and every good line is kept. A missing ``# EOF`` in an OpenMetrics
payload is reported as an error but the samples before it are kept; lines
after ``# EOF`` are errors. Other things OpenMetrics forbids but that do not
make a sample ambiguous (interleaved families, counters without ``_total``,
blank lines) are accepted silently.

Decisions:

* ``_created`` samples are kept as ordinary samples (series ``foo_created``,
  value = creation time in seconds, as exposed). Prometheus 3 drops them (or
  turns them into created timestamps); keeping them loses nothing and a user
  can drop them at query time.
* Like Prometheus 3, the ``le`` label of ``_bucket`` samples of a family typed
  ``histogram``/``gaugehistogram``, and the ``quantile`` label of a
  ``summary``, are normalised to the OpenMetrics float form (``le="1"`` →
  ``le="1.0"``), so a 0.0.4 and an OpenMetrics scrape of the same histogram
  give the same series.
* ``# TYPE x untyped`` (0.0.4) is recorded as type ``unknown``. A second TYPE
  or HELP for the same family is an error (the first one is kept).
* Values follow Go's ``ParseFloat``: ``NaN``, ``+Inf``, ``-Inf``, ``Inf`` (any
  case) and hexadecimal floats are accepted; ``_`` digit separators are not.

``format_prometheus_text`` writes 0.0.4 with Go's float formatting (as
``client_golang`` does: ``NaN``, ``+Inf``, ``-Inf``, shortest ``%g``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

import numpy as np

from perfintel.batch import LineError, MetricMetadata, ParseResult, SampleBatch
from perfintel.errors import InvalidSeriesError, TooManyNewSeriesError
from perfintel.model import METRIC_NAME, LabelSet, label_set, validate_label_set

__all__ = [
    "content_type_is_openmetrics",
    "format_go_float",
    "format_prometheus_text",
    "parse_prometheus_text",
]

_TYPES_OM = {
    "counter",
    "gauge",
    "histogram",
    "gaugehistogram",
    "stateset",
    "info",
    "summary",
    "unknown",
}
_TYPES_004 = {"counter", "gauge", "histogram", "summary", "untyped"}
_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created", "_gcount", "_gsum", "_info")

_SAMPLE = re.compile(
    r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?![a-zA-Z0-9_:])[ \t]*"
    r'(?:\{((?:[^"}]++|"(?:[^"\\]++|\\.)*+")*+)\})?'
    r"[ \t]*([^ \t{][^ \t]*)(?:[ \t]+([^ \t#]+))?[ \t]*(#.*)?",
    re.S,
)
_LABEL = re.compile(
    r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\]|\\.)*)"[ \t]*(,|$)', re.S
)
_LABEL_ESCAPE = re.compile(r"\\(.)", re.S)
_META = re.compile(r"#[ \t]+(HELP|TYPE|UNIT)[ \t]+([a-zA-Z_:][a-zA-Z0-9_:]*)(?:[ \t]+(.*))?$", re.S)


def content_type_is_openmetrics(content_type: str | None) -> bool:
    """``application/openmetrics-text`` (any version or parameters)?"""
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() == "application/openmetrics-text"


def _unescape_label(v: str) -> str:
    if "\\" not in v:
        return v
    return _LABEL_ESCAPE.sub(
        lambda m: {"\\": "\\", '"': '"', "n": "\n"}.get(m.group(1), m.group(0)), v
    )


def _unescape_help(v: str, openmetrics: bool) -> str:
    if "\\" not in v:
        return v
    table = {"\\": "\\", "n": "\n", '"': '"'} if openmetrics else {"\\": "\\", "n": "\n"}
    return _LABEL_ESCAPE.sub(lambda m: table.get(m.group(1), m.group(0)), v)


def _parse_value(tok: str) -> float:
    if "_" in tok:
        raise ValueError(tok)
    try:
        return float(tok)
    except ValueError:
        low = tok.lower()
        if "0x" in low:
            return float.fromhex(tok)
        raise


def _ms_from_seconds(tok: str) -> int:
    if "_" in tok:
        raise ValueError(tok)
    try:
        d = Decimal(tok)
    except InvalidOperation:
        raise ValueError(tok) from None
    if not d.is_finite():
        raise ValueError(tok)
    return int((d * 1000).to_integral_value(ROUND_HALF_EVEN))


def _family_of(name: str, metadata: dict[str, MetricMetadata]) -> str:
    if name in metadata:
        return name
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in metadata:
            return name[: -len(suffix)]
    return name


_TEXT_PIECE = 1 << 20


def _text_lines(data: bytes) -> Iterator[tuple[str, bool]]:
    """``(line, may hold invalid UTF-8)`` of ``data``, without the last empty line.

    Decoded and split about a megabyte at a time (at line ends): one decode and
    split of a 58 MB body held the GIL for ~0.1 s, stalling the event loop."""
    n, pos = len(data), 0
    while pos < n:
        end = data.find(b"\n", min(pos + _TEXT_PIECE, n) - 1)
        if end < 0:
            end = n
        piece = data[pos:end]
        pos = end + 1
        try:
            for line in piece.decode("utf-8").split("\n"):
                yield line, False
        except UnicodeDecodeError:
            for raw in piece.split(b"\n"):
                yield raw.decode("utf-8", "surrogateescape"), True


def parse_prometheus_text(
    data: bytes,
    *,
    default_timestamp_ms: int,
    openmetrics: bool | None = None,
    max_series: int | None = None,
) -> ParseResult:
    """Parse a text exposition; samples without a timestamp get ``default_timestamp_ms``.

    ``max_series``: stop with ``TooManyNewSeriesError`` once the body holds more
    distinct series (a caller that knows how many series exist, and how many
    new ones a request may add, refuses a series flood before parsing all of it).

    >>> r = parse_prometheus_text(b'up{job="a"} 1 1700000000000\\n', default_timestamp_ms=0)
    >>> r.batch.series, r.batch.timestamps.tolist(), r.batch.values.tolist()
    ([(('__name__', 'up'), ('job', 'a'))], [1700000000000], [1.0])
    """
    data = bytes(data)
    if openmetrics is None:
        openmetrics = _looks_like_openmetrics(data)
    errors: list[LineError] = []
    metadata: dict[str, MetricMetadata] = {}
    seen: set[tuple[str, str]] = set()
    series: list[LabelSet] = []
    series_pos: dict[LabelSet, int] = {}
    # (name, label text) -> index into ``series``, or the reason the series is invalid
    series_cache: dict[tuple[str, str | None], int | str] = {}
    idx: list[int] = []
    tss: list[int] = []
    vals: list[float] = []
    eof_at = 0
    match = _SAMPLE.fullmatch
    cache_get = series_cache.get
    ts_min, ts_max = -(2**63), 2**63 - 1
    lineno = 0
    for lineno, (line, check_utf8) in enumerate(_text_lines(data), 1):
        if line[-1:] == "\r":
            line = line[:-1]
        if eof_at:
            if line.strip():
                errors.append(LineError(lineno, "content after # EOF"))
            continue
        first = line[:1]
        if first == "#" or not first or first in " \t":
            stripped = line.strip()
            if not stripped:
                continue
            if stripped[0] == "#":
                if stripped == "# EOF":
                    eof_at = lineno
                    continue
                err = _meta_line(stripped, openmetrics, metadata, seen)
                if err:
                    errors.append(LineError(lineno, err))
                continue
            line = stripped
        if check_utf8 and _has_surrogates(line):
            errors.append(LineError(lineno, "line is not valid UTF-8"))
            continue
        m = match(line)
        if m is None:
            errors.append(LineError(lineno, f"malformed sample line {_clip(line)!r}"))
            continue
        name, body, vtok, ttok, _exemplar = m.groups()
        key = (name, body)
        sid = cache_get(key)
        if sid is None:
            entry = _series(name, body, metadata)
            if isinstance(entry, str):
                sid = entry
            else:
                sid = series_pos.get(entry)
                if sid is None:
                    sid = series_pos[entry] = len(series)
                    series.append(entry)
                    if max_series is not None and sid >= max_series:
                        raise TooManyNewSeriesError(
                            f"line {lineno}: the body has more than {max_series} distinct series, "
                            "more than the store knows plus limits.max_new_series_per_request; "
                            "nothing was stored"
                        )
            series_cache[key] = sid
        if isinstance(sid, str):
            errors.append(LineError(lineno, sid))
            continue
        try:
            value = float(vtok) if "_" not in vtok else _parse_value(vtok)
        except ValueError:
            try:
                value = _parse_value(vtok)
            except ValueError:
                errors.append(LineError(lineno, f"invalid value {_clip(vtok)!r} for {name}"))
                continue
        if ttok is None:
            ts = default_timestamp_ms
        elif openmetrics:
            try:
                ts = _ms_from_seconds(ttok)
            except ValueError:
                errors.append(LineError(lineno, f"invalid timestamp {_clip(ttok)!r} (seconds)"))
                continue
        elif ttok.isascii() and (ttok[1:] if ttok[0] == "-" else ttok).isdigit():
            ts = int(ttok)
        else:
            errors.append(
                LineError(
                    lineno, f"invalid timestamp {_clip(ttok)!r}: expected integer milliseconds"
                )
            )
            continue
        if not ts_min <= ts <= ts_max:
            errors.append(LineError(lineno, f"timestamp {_clip(ttok or '')!r} is out of range"))
            continue
        idx.append(sid)
        tss.append(ts)
        vals.append(value)
    if openmetrics and not eof_at and lineno:
        errors.append(LineError(lineno + 1, "OpenMetrics exposition does not end with # EOF"))
    batch = SampleBatch(
        series,
        np.asarray(idx, np.int32),
        np.asarray(tss, np.int64),
        np.asarray(vals, np.float64),
    )
    return ParseResult(batch, errors, metadata)


def _looks_like_openmetrics(data: bytes) -> bool:
    """A ``# EOF`` line or a ``# UNIT`` line."""
    for marker in (b"# EOF", b"# UNIT "):
        if data.startswith(marker):
            return True
        i = data.find(b"\n" + marker)
        while i >= 0:
            end = i + 1 + len(marker)
            if marker == b"# UNIT " or data[end : end + 1] in (b"", b"\n", b"\r"):
                return True
            i = data.find(b"\n" + marker, end)
    return False


def _has_surrogates(line: str) -> bool:
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _clip(s: str, n: int = 60) -> str:
    return s if len(s) <= n else s[:n] + "…"


def _meta_line(
    line: str, openmetrics: bool, metadata: dict[str, MetricMetadata], seen: set[tuple[str, str]]
) -> str | None:
    m = _META.match(line)
    if m is None:
        return None  # an ordinary comment
    kind, name, rest = m.group(1), m.group(2), (m.group(3) or "")
    if (kind, name) in seen:
        return f"second {kind} line for {name}"
    prev = metadata.get(name, MetricMetadata())
    if kind == "TYPE":
        t = rest.strip()
        allowed = _TYPES_OM if openmetrics else _TYPES_004 | _TYPES_OM
        if t not in allowed:
            return f"invalid metric type {t!r} for {name}"
        metadata[name] = MetricMetadata(
            type="unknown" if t == "untyped" else t, help=prev.help, unit=prev.unit
        )
    elif kind == "HELP":
        metadata[name] = MetricMetadata(
            type=prev.type, help=_unescape_help(rest, openmetrics), unit=prev.unit
        )
    else:
        metadata[name] = MetricMetadata(type=prev.type, help=prev.help, unit=rest.strip())
    seen.add((kind, name))
    return None


def _series(name: str, body: str | None, metadata: dict[str, MetricMetadata]) -> LabelSet | str:
    pairs = [(METRIC_NAME, name)]
    if body:
        pos = 0
        n = len(body)
        while pos < n:
            m = _LABEL.match(body, pos)
            if m is None:
                if body[pos:].strip():
                    return f"malformed label set {{{_clip(body)}}} of {name}"
                break
            pairs.append((m.group(1), _unescape_label(m.group(2))))
            pos = m.end()
            if m.group(3) != ",":
                break
        if body[pos:].strip():
            return f"malformed label set {{{_clip(body)}}} of {name}"
    fam = _family_of(name, metadata)
    md = metadata.get(fam)
    if md is not None and len(pairs) > 1:
        norm = None
        if md.type in ("histogram", "gaugehistogram") and name.endswith("_bucket"):
            norm = "le"
        elif md.type == "summary" and name == fam:
            norm = "quantile"
        if norm:
            pairs = [(k, _canonical_float_label(v) if k == norm else v) for k, v in pairs]
    names = [k for k, _ in pairs]
    if len(set(names)) != len(names):
        dup = next(k for k in names if names.count(k) > 1)
        return f"series {name} repeats label {dup!r}"
    ls = label_set(pairs)
    try:
        validate_label_set(ls)
    except InvalidSeriesError as exc:
        return str(exc)
    return ls


def _canonical_float_label(v: str) -> str:
    try:
        f = _parse_value(v)
    except ValueError:
        return v
    s = format_go_float(f)
    if f == f and abs(f) != float("inf") and "e" not in s and "." not in s:
        s += ".0"
    return s


def format_go_float(v: float) -> str:
    """Go's ``strconv.FormatFloat(v, 'g', -1, 64)`` with Prometheus's NaN/±Inf spellings.

    >>> [format_go_float(x) for x in (1.0, 0.5, 1e6, 123456.0, 1e-5, 0.0001, float("inf"))]
    ['1', '0.5', '1e+06', '123456', '1e-05', '0.0001', '+Inf']
    """
    if v != v:
        return "NaN"
    if v == float("inf"):
        return "+Inf"
    if v == float("-inf"):
        return "-Inf"
    if v == 0:
        return "-0" if str(v).startswith("-") else "0"
    r = repr(v)
    neg = r.startswith("-")
    if neg:
        r = r[1:]
    mant, _, exp_s = r.partition("e")
    exp10 = int(exp_s) if exp_s else 0
    ip, _, fp = mant.partition(".")
    digits = (ip + fp).lstrip("0")
    # decimal point position relative to the start of ``digits``
    lead_zeros = len(ip + fp) - len((ip + fp).lstrip("0"))
    dp = len(ip) - lead_zeros + exp10
    digits = digits.rstrip("0") or "0"
    exp = dp - 1
    # Go: with the shortest precision, %e is used when exp < -4 || exp >= 6.
    use_e = exp < -4 or exp >= 6
    if use_e:
        m = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        out = f"{m}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    elif dp <= 0:
        out = "0." + "0" * (-dp) + digits
    elif dp >= len(digits):
        out = digits + "0" * (dp - len(digits))
    else:
        out = digits[:dp] + "." + digits[dp:]
    return "-" + out if neg else out


_ESCAPE_LABEL = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})
_ESCAPE_HELP = str.maketrans({"\\": "\\\\", "\n": "\\n"})


def _le_key(labels: LabelSet) -> tuple[object, ...]:
    out: list[object] = []
    for k, v in labels:
        if k in ("le", "quantile"):
            try:
                out.append((k, 0, _parse_value(v), v))
                continue
            except ValueError:
                pass
        out.append((k, 1, 0.0, v))
    return tuple(out)


def format_prometheus_text(
    batch: SampleBatch, metadata: dict[str, MetricMetadata] | None = None
) -> bytes:
    """Render a batch as text exposition 0.0.4, families grouped, timestamps in ms.

    ``metadata`` (keyed by family name) adds ``# HELP``/``# TYPE`` lines; types
    0.0.4 does not know (gaugehistogram, stateset, info, unknown) are written
    as ``untyped``.
    """
    metadata = metadata or {}
    groups: dict[str, list[tuple[LabelSet, np.ndarray, np.ndarray]]] = {}
    for labels, ts, vals in batch.iter_series():
        name = next((v for k, v in labels if k == METRIC_NAME), "")
        groups.setdefault(_family_of(name, metadata), []).append((labels, ts, vals))
    out: list[str] = []
    for fam in sorted(groups):
        members = sorted(
            groups[fam],
            key=lambda s: (next((v for k, v in s[0] if k == METRIC_NAME), ""), _le_key(s[0])),
        )
        md = metadata.get(fam)
        if md is not None:
            member_names = [next((v for k, v in m[0] if k == METRIC_NAME), "") for m in members]
            if md.type in ("histogram", "summary"):
                header = fam
            elif md.type == "counter" and f"{fam}_total" in member_names:
                header = f"{fam}_total"
            else:
                header = member_names[0]
            if md.help:
                out.append(f"# HELP {header} {md.help.translate(_ESCAPE_HELP)}")
            t = md.type if md.type in _TYPES_004 else "untyped"
            out.append(f"# TYPE {header} {t}")
        for labels, ts, vals in members:
            name = ""
            parts = []
            for k, v in labels:
                if k == METRIC_NAME:
                    name = v
                else:
                    parts.append(f'{k}="{v.translate(_ESCAPE_LABEL)}"')
            head = f"{name}{{{','.join(parts)}}}" if parts else name
            order = np.argsort(ts, kind="stable")
            for t, v in zip(ts[order].tolist(), vals[order].tolist(), strict=True):
                out.append(f"{head} {format_go_float(v)} {t}")
    return ("\n".join(out) + "\n").encode("utf-8") if out else b""
