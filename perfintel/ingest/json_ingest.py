"""perfintel's own JSON ingest body (``POST /api/v1/ingest``).

::

    {"series": [
      {"metric": "cpu_usage", "labels": {"host": "a"},
       "samples": [[1700000000000, 0.5], [1700000010000, "NaN"]]}
    ]}

Timestamps are integer milliseconds. Values are JSON numbers or one of the
strings ``"NaN"``, ``"+Inf"``, ``"Inf"``, ``"-Inf"`` (JSON has no literal for
them). ``metric`` may be left out when ``labels`` holds ``__name__``.

The pydantic models describe the body for the OpenAPI schema; parsing does
not go through them (per-sample errors and speed): ``parse_json_ingest``
reads the body with orjson, rejects single samples or series with a reason
such as ``series[2].samples[5]: value 'abc' is not a number`` (``line=0``)
and keeps the rest. A body that is not JSON, or not this shape at all,
raises ``ParseError``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field

from perfintel.batch import LineError, ParseResult, SampleBatch
from perfintel.errors import InvalidSeriesError, ParseError
from perfintel.model import (
    INT64_MAX,
    INT64_MIN,
    METRIC_NAME,
    LabelSet,
    label_set,
    validate_label_set,
)

__all__ = ["IngestBody", "IngestSeries", "format_json_ingest", "parse_json_ingest"]

SpecialValue = Literal["NaN", "+Inf", "Inf", "-Inf"]
SampleValue = Annotated[
    float | SpecialValue,
    Field(description='A number, or "NaN", "+Inf", "Inf" or "-Inf".'),
]


class IngestSeries(BaseModel):
    """One series and its samples."""

    model_config = ConfigDict(extra="forbid")

    metric: str | None = Field(
        None,
        description="Metric name; may be omitted when labels has __name__.",
        examples=["cpu_usage"],
    )
    labels: dict[str, str] = Field(default_factory=dict, examples=[{"host": "a"}])
    samples: list[tuple[int, SampleValue]] = Field(
        description="[timestamp_ms, value] pairs.",
        examples=[[[1700000000000, 0.5], [1700000010000, "NaN"]]],
    )


class IngestBody(BaseModel):
    """Body of ``POST /api/v1/ingest``."""

    model_config = ConfigDict(extra="forbid")

    series: list[IngestSeries]


_SPECIAL = {"NaN": float("nan"), "+Inf": float("inf"), "Inf": float("inf"), "-Inf": float("-inf")}


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:60] + "…"


def _series_labels(i: int, s: dict[str, Any]) -> LabelSet:
    labels = s.get("labels", {})
    if labels is None:
        labels = {}
    if not isinstance(labels, dict):
        raise ValueError(f"series[{i}].labels must be an object of strings")
    bad = [k for k, v in labels.items() if not isinstance(v, str)]
    if bad:
        raise ValueError(
            f"series[{i}].labels.{bad[0]} must be a string, not {_short(labels[bad[0]])}"
        )
    metric = s.get("metric")
    if metric is not None and not isinstance(metric, str):
        raise ValueError(f"series[{i}].metric must be a string")
    named = labels.get(METRIC_NAME)
    if metric and named and metric != named:
        raise ValueError(f"series[{i}]: metric {metric!r} differs from labels.__name__ {named!r}")
    pairs = dict(labels)
    if metric:
        pairs[METRIC_NAME] = metric
    ls = label_set(pairs)
    try:
        validate_label_set(ls)
    except InvalidSeriesError as exc:
        raise ValueError(f"series[{i}]: {exc}") from None
    return ls


def parse_json_ingest(data: bytes) -> ParseResult:
    """Parse the JSON ingest body; see the module docstring.

    >>> r = parse_json_ingest(b'{"series":[{"metric":"m","samples":[[1,2],[3,"x"]]}]}')
    >>> r.batch.values.tolist(), [str(e) for e in r.errors]
    ([2.0], ["series[0].samples[1]: value 'x' is not a number"])
    """
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ParseError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ParseError(
            f"body must be a JSON object with a 'series' list, not {type(doc).__name__}"
        )
    series = doc.get("series")
    if not isinstance(series, list):
        raise ParseError("body must have a 'series' list")
    extra = sorted(set(doc) - {"series"})
    if extra:
        raise ParseError(f"unexpected top-level field {extra[0]!r}")
    errors: list[LineError] = []
    out_series: list[LabelSet] = []
    pos: dict[LabelSet, int] = {}
    idx: list[int] = []
    tss: list[int] = []
    vals: list[float] = []
    for i, s in enumerate(series):
        if not isinstance(s, dict):
            errors.append(LineError(0, f"series[{i}] must be an object"))
            continue
        unknown = sorted(set(s) - {"metric", "labels", "samples"})
        if unknown:
            errors.append(LineError(0, f"series[{i}]: unexpected field {unknown[0]!r}"))
            continue
        try:
            ls = _series_labels(i, s)
        except ValueError as exc:
            errors.append(LineError(0, str(exc)))
            continue
        samples = s.get("samples")
        if not isinstance(samples, list):
            errors.append(
                LineError(0, f"series[{i}].samples must be a list of [timestamp_ms, value]")
            )
            continue
        sid = pos.get(ls)
        if sid is None:
            sid = pos[ls] = len(out_series)
            out_series.append(ls)
        for j, pair in enumerate(samples):
            where = f"series[{i}].samples[{j}]"
            if not isinstance(pair, list) or len(pair) != 2:
                errors.append(
                    LineError(0, f"{where}: expected [timestamp_ms, value], got {_short(pair)}")
                )
                continue
            t, v = pair
            if type(t) is not int:
                errors.append(
                    LineError(0, f"{where}: timestamp {_short(t)} is not an integer (ms)")
                )
                continue
            if not INT64_MIN <= t <= INT64_MAX:
                errors.append(LineError(0, f"{where}: timestamp {t} is out of the int64 range"))
                continue
            if type(v) is float or type(v) is int:
                value = float(v)
            elif isinstance(v, str) and v in _SPECIAL:
                value = _SPECIAL[v]
            else:
                errors.append(LineError(0, f"{where}: value {_short(v)} is not a number"))
                continue
            idx.append(sid)
            tss.append(t)
            vals.append(value)
    used = sorted(set(idx))
    if len(used) != len(out_series):  # drop series whose every sample was rejected
        remap = {old: new for new, old in enumerate(used)}
        out_series = [out_series[k] for k in used]
        idx = [remap[k] for k in idx]
    batch = SampleBatch(
        out_series,
        np.asarray(idx, np.int32),
        np.asarray(tss, np.int64),
        np.asarray(vals, np.float64),
    )
    return ParseResult(batch, errors)


def format_json_ingest(batch: SampleBatch) -> bytes:
    """The JSON ingest body for ``batch`` (NaN and ±Inf as strings; the staleness marker
    cannot be expressed and becomes ``"NaN"``)."""
    out = []
    for labels, ts, vals in batch.iter_series():
        d = dict(labels)
        metric = d.pop(METRIC_NAME, None)
        samples = [
            [
                t,
                v
                if v == v and abs(v) != float("inf")
                else ("NaN" if v != v else ("+Inf" if v > 0 else "-Inf")),
            ]
            for t, v in zip(ts.tolist(), vals.tolist(), strict=True)
        ]
        out.append({"metric": metric, "labels": d, "samples": samples})
    return orjson.dumps({"series": out})
