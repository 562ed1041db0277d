"""OTLP metrics (OpenTelemetry): ``ExportMetricsServiceRequest`` bodies to Prometheus samples.

``parse_otlp_metrics(body, json=...)`` takes the bytes of an OTLP/HTTP request
(protobuf, or the OTLP JSON encoding) and returns a ``ParseResult``: the
samples, one error per refused metric (naming it) and the metadata of each
family. It maps the OpenTelemetry data model to Prometheus's as Prometheus's
own OTLP receiver does (its default ``UnderscoreEscapingWithSuffixes``
translation, the OpenTelemetry "Prometheus and OpenMetrics compatibility"
specification):

* **Names.** The metric name is split on every character outside
  ``[a-zA-Z0-9:]`` and joined with ``_``; the unit is appended as a word
  (``s`` → ``seconds``, ``By`` → ``bytes``, ``ms`` → ``milliseconds``,
  ``By/s`` → ``bytes_per_second``; units in braces such as ``{request}`` add
  nothing), unless the name already has it; monotonic sums end in ``_total``
  and gauges of unit ``1`` in ``_ratio``; a name starting with a digit gets a
  leading ``_``. ``http.server.request.duration`` in ``s`` becomes
  ``http_server_request_duration_seconds``.
* **Labels.** Every data-point attribute becomes a label: invalid characters
  become ``_`` (runs of them one ``_``), a name starting with a digit gets
  ``key_``; attributes that map to the same label join their values with
  ``;`` in key order. Values that are not strings are written as Prometheus
  does (integers, floats, ``true``/``false``, JSON for arrays and maps,
  base64 for bytes); empty values drop the label.
* **Resource.** ``job`` is ``service.namespace/service.name`` (or
  ``service.name``) and ``instance`` is ``service.instance.id``, on every
  series of the resource. The other resource attributes go to one
  ``target_info{job, instance, ...} 1`` series per resource (at its newest
  data point), only when there are such attributes.
* **Points.** Gauges and non-monotonic sums are gauges; cumulative monotonic
  sums are counters (``_total``); cumulative histograms become
  ``_bucket{le}`` (cumulative counts, ``le="+Inf"`` equal to the count),
  ``_sum`` (when present) and ``_count``; summaries become
  ``{quantile}``, ``_sum`` and ``_count``. A point flagged "no recorded
  value" is a Prometheus staleness marker. Timestamps go from nanoseconds to
  milliseconds.
* **Refused**, each with an error naming the metric while the other metrics
  of the request are kept: sums and histograms with **delta** temporality
  (Prometheus's receiver refuses them too: they need state to become
  cumulative), **exponential histograms** (Prometheus makes native histograms
  of them, which perfintel does not store; configure the SDK's explicit
  bucket histogram aggregation), metrics without data, and series that break
  the Prometheus naming rules.

Protobuf decoding uses the message classes generated from the official
``.proto`` files (the ``opentelemetry-proto`` package) on protobuf's C
("upb") backend; ``benchmarks/parsers.py --otlp`` measures the cost. JSON is
read by protobuf's ``json_format`` against the same classes (OTLP/JSON is
proto3's JSON mapping with integer enums, which it accepts).
"""

from __future__ import annotations

import base64
import functools
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2

from perfintel.batch import BatchBuilder, LineError, MetricMetadata, ParseResult
from perfintel.errors import InvalidSeriesError, ParseError
from perfintel.ingest.remote_write import _varint
from perfintel.model import STALE_NAN, label_set, validate_label_set

__all__ = ["encode_otlp_status", "label_name", "metric_name", "parse_otlp_metrics"]

_CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
_DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
_NO_RECORDED_VALUE = metrics_pb2.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK

_UNITS = {
    "d": "days",
    "h": "hours",
    "min": "minutes",
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "GiBy": "gibibytes",
    "TiBy": "tibibytes",
    "KBy": "kilobytes",
    "MBy": "megabytes",
    "GBy": "gigabytes",
    "TBy": "terabytes",
    "m": "meters",
    "V": "volts",
    "A": "amperes",
    "J": "joules",
    "W": "watts",
    "g": "grams",
    "Cel": "celsius",
    "Hz": "hertz",
    "1": "",
    "%": "percent",
}
_PER_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week"}
_PER_UNITS.update({"mo": "month", "y": "year"})
_SERVICE_ATTRS = ("service.name", "service.namespace", "service.instance.id")


def _is_name_char(c: str) -> bool:
    return ("a" <= c <= "z") or ("A" <= c <= "Z") or ("0" <= c <= "9") or c == ":"


def _tokens(text: str, valid: Any = _is_name_char) -> list[str]:
    """``text`` split on every run of characters that are not ``valid``."""
    out, cur = [], []
    for c in text:
        if valid(c):
            cur.append(c)
        elif cur:
            out.append("".join(cur))
            cur = []
    if cur:
        out.append("".join(cur))
    return out


def _unit_words(unit: str) -> tuple[str, str]:
    main, _, per = unit.partition("/")
    main, per = main.strip(), per.strip()
    main_word = _UNITS.get(main, main) if main and not set(main) & {"{", "}"} else ""
    per_word = _PER_UNITS.get(per, per) if per and not set(per) & {"{", "}"} else ""
    clean_main = "_".join(_tokens(main_word))
    clean_per = "_".join(_tokens(per_word))
    return clean_main, ("per_" + clean_per if clean_per else "")


def metric_name(name: str, unit: str, kind: str) -> str:
    """The Prometheus name of an OTLP metric (``kind``: gauge, counter (a monotonic sum),
    sum (a non-monotonic one), histogram, summary).

    >>> metric_name("http.server.request.duration", "s", "histogram")
    'http_server_request_duration_seconds'
    >>> metric_name("system.network.io", "By", "counter")
    'system_network_io_bytes_total'
    >>> metric_name("process.cpu.utilization", "1", "gauge")
    'process_cpu_utilization_ratio'
    >>> metric_name("requests", "{request}/s", "gauge")
    'requests_per_second'
    """
    tokens = _tokens(name)
    main, per = _unit_words(unit)
    if main and main not in tokens:
        tokens.append(main)
    if per and per not in tokens:
        tokens.append(per)
    if kind == "counter":
        tokens = [t for t in tokens if t != "total"] + ["total"]
    if unit == "1" and kind == "gauge":
        tokens = [t for t in tokens if t != "ratio"] + ["ratio"]
    out = "_".join(tokens)
    return "_" + out if out[:1].isdigit() else out


def _is_label_char(c: str) -> bool:
    return ("a" <= c <= "z") or ("A" <= c <= "Z") or ("0" <= c <= "9")


@functools.lru_cache(maxsize=1 << 14)
def label_name(key: str) -> str:
    """The Prometheus label name of an OTLP attribute key ('' when nothing valid is left).

    >>> label_name("http.request.method"), label_name("2xx"), label_name("__meta__")
    ('http_request_method', 'key_2xx', '__meta__')
    """
    reserved = len(key) >= 4 and key.startswith("__") and key.endswith("__")
    inner = key[2:-2] if reserved else key
    parts: list[str] = []
    for c in inner:
        if _is_label_char(c):
            parts.append(c)
        elif not parts or parts[-1] != "_":
            parts.append("_")
    out = "".join(parts)
    if reserved:
        out = f"__{out}__"
    if out[:1].isdigit():
        out = "key_" + out
    return "" if not out.strip("_") else out


def _any_value(v: Any, depth: int = 0) -> Any:
    """An ``AnyValue`` as plain Python (for labels; nested values as JSON)."""
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "int_value":
        return v.int_value
    if kind == "double_value":
        return v.double_value
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    if depth > 32:
        return None
    if kind == "array_value":
        return [_any_value(x, depth + 1) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _any_value(kv.value, depth + 1) for kv in v.kvlist_value.values}
    return None


def _as_label_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _format_float(value)
    if value is None:
        return ""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _attributes(kvs: Iterable[Any]) -> dict[str, str]:
    """OTLP attributes as Prometheus labels (collisions joined with ';' in key order)."""
    out: dict[str, str] = {}
    key_of: dict[str, str] = {}
    clashes: dict[str, list[tuple[str, str]]] | None = None
    for kv in kvs:
        v = kv.value
        value = v.string_value if v.WhichOneof("value") == "string_value" else None
        if value is None:
            value = _as_label_value(_any_value(v))
        name = label_name(kv.key)
        if not (name and value):
            continue
        if name in out:  # several keys map to one label
            clashes = clashes if clashes is not None else {}
            clashes.setdefault(name, [(key_of[name], out[name])]).append((kv.key, value))
        else:
            out[name] = value
            key_of[name] = kv.key
    for name, pairs in (clashes or {}).items():
        out[name] = ";".join(value for _, value in sorted(pairs))
    return out


def _format_float(x: float) -> str:
    """As Go's ``FormatFloat(x, 'f', -1, 64)``: shortest digits, never an exponent
    (how Prometheus's receiver writes ``le``, ``quantile`` and float attributes)."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return str(np.format_float_positional(x, trim="-"))


def _ms(time_unix_nano: int) -> int:
    return int(time_unix_nano) // 1_000_000


def _value(point: Any) -> float:
    if point.flags & _NO_RECORDED_VALUE:
        return STALE_NAN
    kind = point.WhichOneof("value")
    return float(point.as_int) if kind == "as_int" else float(point.as_double)


class _Emitter:
    """Collects one request's samples into a batch, validating each new series once."""

    def __init__(self) -> None:
        self.builder = BatchBuilder()
        self.errors: list[LineError] = []
        self.metadata: dict[str, MetricMetadata] = {}
        self._valid: dict[tuple[tuple[str, str], ...], str | None] = {}

    def add(self, name: str, labels: dict[str, str], ts: int, value: float) -> str | None:
        ls = label_set({**labels, "__name__": name})
        verdict = self._valid.get(ls, "")
        if verdict == "":
            try:
                validate_label_set(ls)
                verdict = None
            except InvalidSeriesError as exc:
                verdict = str(exc)
            self._valid[ls] = verdict
        if verdict is None:
            self.builder.add(ls, ts, value)
        return verdict


def parse_otlp_metrics(body: bytes, *, json: bool = False) -> ParseResult:
    """Samples of an OTLP ``ExportMetricsServiceRequest`` (protobuf, or JSON with ``json``).

    A body that is not such a request raises ``ParseError``; each metric that
    cannot be mapped is one error (``line`` 0) naming it, and the rest is kept.

    >>> from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ...     ExportMetricsServiceRequest)
    >>> req = ExportMetricsServiceRequest()
    >>> m = req.resource_metrics.add().scope_metrics.add().metrics.add(name="queue.size")
    >>> _ = m.gauge.data_points.add(as_int=3, time_unix_nano=1_700_000_000_000_000_000)
    >>> r = parse_otlp_metrics(req.SerializeToString())
    >>> r.batch.series, r.batch.values.tolist()
    ([(('__name__', 'queue_size'),)], [3.0])
    """
    request = _decode(body, json)
    out = _Emitter()
    for rm in request.resource_metrics:
        resource = {kv.key: kv for kv in rm.resource.attributes}
        promoted = _promoted(resource)
        newest = 0
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                problem, latest = _metric(metric, promoted, out)
                newest = max(newest, latest)
                if problem:
                    out.errors.append(LineError(0, f"metric {metric.name!r}: {problem}"))
        info = _attributes(kv for key, kv in resource.items() if key not in _SERVICE_ATTRS)
        if info and newest:
            problem = out.add("target_info", {**info, **promoted}, newest, 1.0)
            if problem:
                out.errors.append(LineError(0, f"target_info: {problem}"))
    return ParseResult(out.builder.build(), out.errors, out.metadata)


def _decode(body: bytes, as_json: bool) -> Any:
    request = ExportMetricsServiceRequest()
    try:
        if as_json:
            json_format.Parse(bytes(body).decode("utf-8"), request, ignore_unknown_fields=True)
        else:
            request.ParseFromString(bytes(body))
    except (DecodeError, json_format.ParseError, UnicodeDecodeError, RecursionError) as exc:
        kind = "OTLP JSON" if as_json else "an OTLP protobuf ExportMetricsServiceRequest"
        raise ParseError(f"body is not {kind}: {exc}") from None
    except (ValueError, TypeError) as exc:  # json_format on out-of-range numbers and the like
        raise ParseError(f"body is not OTLP JSON: {exc}") from None
    return request


def _promoted(resource: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = {}
    name = resource.get("service.name")
    if name is not None:
        job = _as_label_value(_any_value(name.value))
        ns = resource.get("service.namespace")
        namespace = _as_label_value(_any_value(ns.value)) if ns is not None else ""
        if namespace:
            job = f"{namespace}/{job}"
        if job:
            labels["job"] = job
    instance = resource.get("service.instance.id")
    if instance is not None:
        value = _as_label_value(_any_value(instance.value))
        if value:
            labels["instance"] = value
    return labels


def _metric(metric: Any, promoted: dict[str, str], out: _Emitter) -> tuple[str | None, int]:
    """Emit one metric's samples; (the reason it was refused, or None; its newest ms)."""
    data = metric.WhichOneof("data")
    if data is None:
        return "has no data (gauge, sum, histogram or summary)", 0
    if data == "exponential_histogram":
        return (
            "exponential histograms are not supported (Prometheus maps them to native "
            "histograms); configure the SDK to export explicit-bucket histograms",
            0,
        )
    temporality = getattr(getattr(metric, data), "aggregation_temporality", _CUMULATIVE)
    if data in ("sum", "histogram") and temporality != _CUMULATIVE:
        which = "delta" if temporality == _DELTA else "unspecified"
        return (
            f"{which} temporality is not supported: Prometheus stores cumulative {data}s "
            "(set the exporter's temporality preference to cumulative)",
            0,
        )
    # Prometheus's receiver names a non-monotonic sum as a sum (no _ratio) and stores a gauge.
    naming = "counter" if data == "sum" and metric.sum.is_monotonic else data
    name = metric_name(metric.name, metric.unit, naming)
    if not name:
        return "its name has no character a Prometheus name may hold", 0
    kind = {"counter": "counter", "gauge": "gauge", "sum": "gauge"}.get(naming, naming)
    out.metadata[name] = MetricMetadata(kind, metric.description, _unit_words(metric.unit)[0])
    points = getattr(metric, data).data_points
    if kind in ("gauge", "counter"):
        return _numbers(name, points, promoted, out)
    if kind == "histogram":
        return _histograms(name, points, promoted, out)
    return _summaries(name, points, promoted, out)


def _emit_all(out: _Emitter, rows: Sequence[tuple[str, dict[str, str], int, float]]) -> str | None:
    problem = None
    for name, labels, ts, value in rows:
        problem = out.add(name, labels, ts, value) or problem
    return problem


def _numbers(
    name: str, points: Any, promoted: dict[str, str], out: _Emitter
) -> tuple[str | None, int]:
    newest, problem = 0, None
    for p in points:
        ts = _ms(p.time_unix_nano)
        newest = max(newest, ts)
        labels = {**_attributes(p.attributes), **promoted}
        problem = out.add(name, labels, ts, _value(p)) or problem
    return problem, newest


def _histograms(
    name: str, points: Any, promoted: dict[str, str], out: _Emitter
) -> tuple[str | None, int]:
    newest, problem = 0, None
    for p in points:
        ts = _ms(p.time_unix_nano)
        newest = max(newest, ts)
        labels = {**_attributes(p.attributes), **promoted}
        stale = bool(p.flags & _NO_RECORDED_VALUE)
        bounds = list(p.explicit_bounds)
        counts = list(p.bucket_counts)
        if counts and len(counts) != len(bounds) + 1:
            problem = (
                f"a histogram point has {len(counts)} bucket counts for {len(bounds)} bounds "
                "(needs one more count than bounds)"
            )
            continue
        rows: list[tuple[str, dict[str, str], int, float]] = []
        running = 0
        for bound, count in zip(bounds, counts, strict=False):
            running += count
            value = STALE_NAN if stale else float(running)
            rows.append((name + "_bucket", {**labels, "le": _format_float(bound)}, ts, value))
        total = STALE_NAN if stale else float(p.count)
        rows.append((name + "_bucket", {**labels, "le": "+Inf"}, ts, total))
        if p.HasField("sum") or stale:
            rows.append((name + "_sum", labels, ts, STALE_NAN if stale else p.sum))
        rows.append((name + "_count", labels, ts, total))
        problem = _emit_all(out, rows) or problem
    return problem, newest


def _summaries(
    name: str, points: Any, promoted: dict[str, str], out: _Emitter
) -> tuple[str | None, int]:
    newest, problem = 0, None
    for p in points:
        ts = _ms(p.time_unix_nano)
        newest = max(newest, ts)
        labels = {**_attributes(p.attributes), **promoted}
        stale = bool(p.flags & _NO_RECORDED_VALUE)
        rows: list[tuple[str, dict[str, str], int, float]] = [
            (
                name,
                {**labels, "quantile": _format_float(q.quantile)},
                ts,
                STALE_NAN if stale else q.value,
            )
            for q in p.quantile_values
        ]
        rows.append((name + "_sum", labels, ts, STALE_NAN if stale else p.sum))
        rows.append((name + "_count", labels, ts, STALE_NAN if stale else float(p.count)))
        problem = _emit_all(out, rows) or problem
    return problem, newest


def encode_otlp_status(code: int, message: str, *, json: bool = False) -> bytes:
    """A ``google.rpc.Status`` (what OTLP/HTTP answers errors with), protobuf or JSON.

    ``message Status { int32 code = 1; string message = 2; ... }``: two fields,
    encoded here rather than through another generated package.

    >>> encode_otlp_status(3, "no")
    b'\\x08\\x03\\x12\\x02no'
    """
    if json:
        return orjson.dumps({"code": code, "message": message})
    text = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text
