"""What an analysis reads: a series selector, or any PromQL expression.

The analysis endpoints — anomaly detection, forecasting, capacity planning,
outliers, correlation and change impact (root cause ranks the series of a selector) — take
one text naming what to analyse, and go through this module to read it:

* a plain **selector** (``node_load1{job="node"}``) keeps the fast path: its
  raw samples, or the rollup tiers, read directly from the store (the caller's
  own loader: ``SampleReader.select``, :func:`perfintel.performance.history.load_history`);
* any other **expression** — ``rate(http_requests_total[5m])``,
  ``histogram_quantile(0.99, sum by (le) (rate(latency_bucket[5m])))``,
  ``errors / requests * 100`` — is evaluated by the PromQL engine as a range
  query over the requested range at the analysis step
  (:func:`evaluate_range`), and each series of the result is analysed.

:func:`parse_analysis_query` tells the two apart (a selector when the text
reads as one, else an :class:`Expression`) and refuses bad text with a 400
that names the request field. Expressions are bounded like every query (the
``QuerySettings`` limits: length and depth before parsing, series, samples and
the timeout) and are evaluated in the caller's thread: call from a worker
thread, never on the event loop.

Evaluation instants are aligned to the end of the range: ``end − k·step``
for ``k = 0, 1, …``; each value is the expression as of that instant (a
``rate(x[5m])`` over the five minutes before it). A range longer than the
engine's 11,000 steps per query is evaluated in consecutive pieces (each
instant is evaluated on its own in PromQL, so the pieces join exactly),
under one deadline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from perfintel.errors import (
    BadInputError,
    ParseError,
    QueryLimitError,
    QueryTimeoutError,
    QueryTooComplexError,
)
from perfintel.model import LabelSet, Selector, parse_selector
from perfintel.query.promql.engine import Engine, Series, parse
from perfintel.query.settings import QuerySettings
from perfintel.storage.base import SampleReader

#: Most steps the engine evaluates in one range query (Prometheus's resolution limit).
STEPS_PER_PIECE = 11_000


@dataclass(frozen=True)
class Expression:
    """A PromQL expression that is not a plain selector (checked to parse within the limits)."""

    text: str

    def __str__(self) -> str:
        return self.text


#: What an analysis reads: a selector (fast path) or an expression (evaluated).
AnalysisQuery = Selector | Expression


def parse_analysis_query(
    text: str, settings: QuerySettings | None = None, *, name: str = "selector"
) -> AnalysisQuery:
    """A ``Selector`` when ``text`` is one, else an ``Expression`` that parses within the
    limits of ``settings``; ``BadInputError`` (HTTP 400) naming the field ``name``."""
    try:
        return parse_selector(text)
    except ParseError:
        pass
    try:
        parse(text, settings)
    except QueryTooComplexError as exc:
        raise QueryTooComplexError(f"invalid parameter {name!r}: {exc}") from None
    except ParseError as exc:
        raise BadInputError(
            f"invalid parameter {name!r}: not a selector or PromQL expression: {exc}"
        ) from None
    return Expression(text)


def describe(query: AnalysisQuery, what: str = "selector") -> str:
    """``match selector up{...}`` or ``result from expression rate(...)``, for messages."""
    if isinstance(query, Expression):
        return f"result from expression {query}"
    return f"match {what} {query}"


def evaluate_range(
    reader: SampleReader,
    expression: Expression,
    start_ms: int,
    end_ms: int,
    step_ms: int,
    *,
    settings: QuerySettings | None = None,
    max_series: int | None = None,
    what: str = "expression",
) -> list[Series]:
    """Every series of ``expression`` evaluated at ``end_ms − k·step_ms`` back to ``start_ms``.

    Points where the expression has no value are absent (as in a PromQL range
    result). ``QueryLimitError`` when more than ``max_series`` series result;
    the engine's own limits and one deadline (``settings.timeout_s``) bound the whole.
    """
    if step_ms <= 0:
        raise BadInputError("invalid parameter 'step': must be positive")
    if end_ms < start_ms:
        raise BadInputError("invalid parameter 'end': end is before start")
    s = settings or QuerySettings()
    engine = Engine(reader, s)
    deadline = time.monotonic() + s.timeout_s
    first = end_ms - (end_ms - start_ms) // step_ms * step_ms
    parts: dict[LabelSet, list[Series]] = {}
    piece_start = first
    while piece_start <= end_ms:
        piece_end = min(piece_start + (STEPS_PER_PIECE - 1) * step_ms, end_ms)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise QueryTimeoutError(f"{what} {expression} took longer than {s.timeout_s:g} s")
        result = engine.range(expression.text, piece_start, piece_end, step_ms, timeout_s=remaining)
        for series in result.series:
            parts.setdefault(series.labels, []).append(series)
        if max_series is not None and len(parts) > max_series:
            raise QueryLimitError(
                f"{what} {expression} gives more than {max_series} series "
                f"(limit {max_series} per request); aggregate it or narrow its selectors"
            )
        piece_start = piece_end + step_ms
    out = []
    for labels in sorted(parts):
        pieces = parts[labels]
        out.append(
            Series(
                labels,
                np.concatenate([p.timestamps for p in pieces]),
                np.concatenate([p.values for p in pieces]),
            )
        )
    return out
