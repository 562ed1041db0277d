"""What a rule reads, worked out once when its group loads.

* :func:`reads` — every series selector of an expression and how far back
  from the evaluation time it reads (range, offset, subquery range, and the
  lookback of instant selectors). Groups prefetch the metric names their
  rules read in one store query per evaluation, and the backtest fetches
  exactly the history it needs.
* :class:`ThresholdPlan` — the most common alerting rule, ``<selector> <cmp>
  <number>`` (or ``<number> <cmp> <selector>``): evaluated without the
  PromQL engine, directly on the cached samples, with the engine's
  semantics (the latest sample within the lookback, staleness markers
  ending a series, the metric name kept, NaN never matching). A test holds
  it to the engine's answers.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import promql_parser as pp

from perfintel.model import (
    METRIC_NAME,
    STALE_NAN_BITS,
    LabelSet,
    MatchOp,
    Selector,
    matchers_from_promql,
)
from perfintel.query.promql.engine import parse, unwrap
from perfintel.storage.base import SampleReader

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
_SWAPPED = {">": "<", ">=": "<=", "<": ">", "<=": ">=", "==": "==", "!=": "!="}


def _ms(td: timedelta | None) -> int:
    return 0 if td is None else int(td.total_seconds() * 1000)


@dataclass(frozen=True)
class Read:
    """One selector of an expression: its matchers and how far back it reads (ms)."""

    selector: Selector
    back_ms: int
    pinned: bool  # an ``@`` modifier: reads at a fixed time, not relative to the evaluation

    @property
    def name(self) -> str | None:
        for m in self.selector.matchers:
            if m.name == METRIC_NAME and m.op is MatchOp.EQ:
                return m.value
        return None


def reads(expr: str | pp.Expr, lookback_ms: int) -> list[Read]:
    """Every selector of ``expr`` with its reach back from the evaluation time."""
    node = parse(expr) if isinstance(expr, str) else expr
    return list(_walk(node, 0, lookback_ms))


def _walk(n: object, extra: int, lookback_ms: int) -> Iterator[Read]:
    if isinstance(n, pp.MatrixSelector):
        vs = n.vector_selector
        back = extra + _ms(n.range) + _ms(vs.offset)
        yield Read(_selector(vs), back, vs.at is not None)
        return
    if isinstance(n, pp.VectorSelector):
        yield Read(_selector(n), extra + lookback_ms + _ms(n.offset), n.at is not None)
        return
    if isinstance(n, pp.SubqueryExpr):
        yield from _walk(n.expr, extra + _ms(n.range) + _ms(n.offset), lookback_ms)
        return
    for attr in ("expr", "lhs", "rhs", "param"):
        child = getattr(n, attr, None)
        if child is not None and not isinstance(child, str | int | float):
            yield from _walk(child, extra, lookback_ms)
    for child in getattr(n, "args", None) or []:
        yield from _walk(child, extra, lookback_ms)


def _selector(vs: pp.VectorSelector) -> Selector:
    return Selector(matchers_from_promql(vs))


@dataclass(frozen=True)
class ThresholdPlan:
    """``selector op threshold`` (``swap``: written ``threshold op selector``)."""

    selector: Selector
    op: str
    threshold: float

    def evaluate(
        self, reader: SampleReader, t_ms: int, lookback_ms: int
    ) -> list[tuple[LabelSet, float]]:
        test = _OPS[self.op]
        thr = self.threshold
        out = []
        for s in reader.select(self.selector, t_ms - lookback_ms, t_ms):
            ts = s.timestamps
            if not len(ts):
                continue
            i = len(ts) - 1
            if ts[i] > t_ms:  # a reader may hand back a wider window
                i = int(np.searchsorted(ts, t_ms, "right")) - 1
                if i < 0:
                    continue
            if ts[i] < t_ms - lookback_ms:
                continue
            v = float(s.values[i])
            if np.float64(v).view(np.uint64) == STALE_NAN_BITS:
                continue
            if test(v, thr):
                out.append((s.labels, v))
        return out


def threshold_plan(expr: str) -> ThresholdPlan | None:
    """The plan of a plain threshold rule, or ``None`` for anything else."""
    node = unwrap(parse(expr))
    if not isinstance(node, pp.BinaryExpr):
        return None
    op = str(node.op)
    if op not in _OPS or node.modifier is not None:
        return None
    lhs, rhs = unwrap(node.lhs), unwrap(node.rhs)
    if isinstance(lhs, pp.NumberLiteral) and isinstance(rhs, pp.VectorSelector):
        lhs, rhs, op = rhs, lhs, _SWAPPED[op]
    if not (isinstance(lhs, pp.VectorSelector) and isinstance(rhs, pp.NumberLiteral)):
        return None
    if lhs.offset is not None or lhs.at is not None or lhs.matchers.or_matchers:
        return None
    return ThresholdPlan(_selector(lhs), op, float(rhs.val))
