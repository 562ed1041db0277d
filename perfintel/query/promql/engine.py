"""The PromQL engine: parse, evaluate an AST at every step at once, shape the result.

A range query is not re-run per step. Each selector reads its samples once for
the whole span it needs (``[start - range - lookback - offset, end]``) and
every operator works on arrays of shape ``(series, steps)``; see
``perfintel.query.promql.values``. An instant query is a range query of one
step.

Every text is measured before it is parsed (``perfintel.query_shape``:
length and nesting depth within ``QuerySettings.max_length``/``max_depth``),
which also bounds the evaluator's recursion: ``evaluate`` recurses once per
level of the expression tree, a few Python frames each, and the default
depth limit keeps that well inside Python's recursion limit (a test evaluates
expressions at the limit of every kind of nesting).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import promql_parser as pp

from perfintel.errors import (
    BadInputError,
    ParseError,
    QueryError,
    QueryLimitError,
    QueryTooComplexError,
)
from perfintel.model import LabelSet
from perfintel.query.promql import aggregations, binary, functions, planner, selectors
from perfintel.query.promql import range_functions as rf
from perfintel.query.promql.values import Context, RangeInput, Scalar, Str, Value, Vec
from perfintel.query.settings import QuerySettings
from perfintel.query_shape import check_query
from perfintel.storage.base import QueryLimits, SampleReader

_T = TypeVar("_T")


@dataclass
class Series:
    labels: LabelSet
    timestamps: np.ndarray  # int64 ms
    values: np.ndarray  # float64


@dataclass
class QueryResult:
    """``result_type`` is ``vector``, ``matrix``, ``scalar`` or ``string`` (as Prometheus).

    ``series`` holds one point each for a vector; ``scalar`` is ``(ts_ms, value)``
    for a scalar and ``string`` for a string result.
    """

    result_type: str
    series: list[Series] = field(default_factory=list)
    scalar: tuple[int, float] | None = None
    string: tuple[int, str] | None = None


def parse(query: str, settings: QuerySettings | None = None) -> pp.Expr:
    """The syntax tree of ``query``, after checking its size against ``settings``' limits."""
    if not query.strip():
        raise ParseError("empty query")
    s = settings or QuerySettings()
    check_query(query, max_length=s.max_length, max_depth=s.max_depth)
    try:
        return pp.parse(query)
    except ValueError as exc:
        raise ParseError(str(exc)) from exc


def unwrap(node: pp.Expr) -> pp.Expr:
    while isinstance(node, pp.ParenExpr):
        node = node.expr
    return node


class Engine:
    """Evaluates PromQL over a ``SampleReader`` within ``QuerySettings`` limits."""

    def __init__(self, store: SampleReader, settings: QuerySettings | None = None) -> None:
        self.store = store
        self.settings = settings or QuerySettings()

    def _context(
        self,
        times: np.ndarray,
        start: int,
        end: int,
        step: int,
        timeout_s: float | None,
        lookback_ms: int | None,
    ) -> Context:
        s = self.settings
        budget = s.timeout_s if timeout_s is None else min(timeout_s, s.timeout_s)
        return Context(
            store=self.store,
            times=times,
            query_start=start,
            query_end=end,
            lookback_ms=s.lookback_ms if lookback_ms is None else lookback_ms,
            subquery_step_ms=s.subquery_step_ms,
            limits=QueryLimits(max_series=s.max_series, max_samples=s.max_samples),
            deadline=time.monotonic() + budget,
            use_rollups=s.use_rollups and len(times) > 1,
            step_ms=step,
        )

    def instant(
        self,
        query: str,
        time_ms: int,
        *,
        timeout_s: float | None = None,
        lookback_ms: int | None = None,
    ) -> QueryResult:
        expr = parse(query, self.settings)
        ctx = self._context(
            np.array([time_ms], np.int64), time_ms, time_ms, 0, timeout_s, lookback_ms
        )
        node = unwrap(expr)
        if isinstance(node, pp.MatrixSelector | pp.SubqueryExpr):
            ri = _bounded(_range_arg, ctx, node)
            return QueryResult("matrix", _matrix_series(ri))
        value = _bounded(evaluate, ctx, expr)
        if isinstance(value, Scalar):
            return QueryResult("scalar", scalar=(time_ms, float(value.values[0])))
        if isinstance(value, Str):
            return QueryResult("string", string=(time_ms, value.value))
        out = []
        for i in np.flatnonzero(value.present[:, 0]):
            out.append(Series(value.labels[i], np.array([time_ms]), value.values[i, :1].copy()))
        _check_points(ctx, len(out))
        return QueryResult("vector", out)

    def range(
        self,
        query: str,
        start_ms: int,
        end_ms: int,
        step_ms: int,
        *,
        timeout_s: float | None = None,
        lookback_ms: int | None = None,
    ) -> QueryResult:
        if step_ms <= 0:
            raise BadInputError(
                "zero or negative query resolution step widths are not accepted. Try a positive integer"
            )
        if end_ms < start_ms:
            raise BadInputError("end timestamp must not be before start time")
        if (end_ms - start_ms) // step_ms > 11_000:
            raise BadInputError(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
            )
        expr = parse(query, self.settings)
        node = unwrap(expr)
        if isinstance(node, pp.MatrixSelector | pp.SubqueryExpr):
            raise BadInputError(
                'invalid expression type "range vector" for range query, must be Scalar or instant Vector'
            )
        if isinstance(node, pp.StringLiteral):
            raise BadInputError(
                'invalid expression type "string" for range query, must be Scalar or instant Vector'
            )
        times = np.arange(start_ms, end_ms + 1, step_ms, dtype=np.int64)
        ctx = self._context(times, start_ms, end_ms, step_ms, timeout_s, lookback_ms)
        value = _bounded(evaluate, ctx, expr)
        if isinstance(value, Scalar):
            value = Vec([()], value.values[None, :], np.ones((1, len(times)), bool))
        if not isinstance(value, Vec):
            raise QueryError("range query must return a scalar or an instant vector")
        _check_points(ctx, int(value.present.sum()))
        out = []
        for i in sorted(range(len(value)), key=lambda i: value.labels[i]):
            m = value.present[i]
            if m.any():
                out.append(Series(value.labels[i], times[m], value.values[i, m]))
        return QueryResult("matrix", out)


def _bounded(fn: Callable[[Context, pp.Expr], _T], ctx: Context, node: pp.Expr) -> _T:
    """``fn(ctx, node)``; running out of stack is the query's fault, not a server error.

    The depth limit checked before parsing keeps evaluation far from Python's
    recursion limit; this is the backstop should a caller set that limit too high."""
    try:
        return fn(ctx, node)
    except RecursionError:
        raise QueryTooComplexError(
            "query is nested too deeply to evaluate; lower query.max_depth or simplify it"
        ) from None


def _check_points(ctx: Context, n: int) -> None:
    cap = ctx.limits.max_samples
    if cap is not None and n > cap:
        raise QueryLimitError(f"query result holds more than {cap} points (limit max_samples)")


def _matrix_series(ri: RangeInput) -> list[Series]:
    lo, hi = ri.bounds()
    out = []
    for i, ls in enumerate(ri.labels):
        a, b = int(lo[i, 0]), int(hi[i, 0])
        if b > a:
            out.append(Series(ls, ri.ts[a:b].copy(), ri.vals[a:b].copy()))
    return out


def _range_arg(ctx: Context, node: pp.Expr) -> RangeInput:
    node = unwrap(node)
    if isinstance(node, pp.MatrixSelector):
        ri = selectors.range_selector(ctx, node)
        ri.step_times = (
            ctx.times if node.vector_selector.at is None else np.full(ctx.steps, ctx.query_start)
        )
        return ri
    if isinstance(node, pp.SubqueryExpr):
        grid, step, ends, rng = selectors.subquery_grid(ctx, node)
        if len(grid) == 0:
            inner: Value = Vec.empty(0)
        else:
            inner = evaluate(ctx.with_times(grid, step), node.expr)
        if isinstance(inner, Scalar):
            inner = Vec([()], inner.values[None, :], np.ones((1, len(grid)), bool))
        if not isinstance(inner, Vec):
            raise QueryError("subquery must evaluate to an instant vector or a scalar")
        ri = selectors.vec_to_range(inner, grid, ends, rng)
        ri.step_times = ctx.times if node.at is None else np.full(ctx.steps, ctx.query_start)
        return ri
    raise QueryError(f"expected a range vector, got {type(node).__name__}")


def evaluate(ctx: Context, node: pp.Expr) -> Value:
    ctx.check_deadline()
    node = unwrap(node)
    if isinstance(node, pp.NumberLiteral):
        return Scalar(np.full(ctx.steps, float(node.val)))
    if isinstance(node, pp.StringLiteral):
        return Str(node.val)
    if isinstance(node, pp.VectorSelector):
        return selectors.instant_selector(ctx, node)
    if isinstance(node, pp.UnaryExpr):
        return binary.unary_minus(evaluate(ctx, node.expr))
    if isinstance(node, pp.BinaryExpr):
        lhs = evaluate(ctx, node.lhs)
        rhs = evaluate(ctx, node.rhs)
        return binary.binary(str(node.op), lhs, rhs, node.modifier)
    if isinstance(node, pp.AggregateExpr):
        return _aggregate(ctx, node)
    if isinstance(node, pp.Call):
        return _call(ctx, node)
    if isinstance(node, pp.MatrixSelector | pp.SubqueryExpr):
        raise QueryError("a range vector cannot be used here; wrap it in a function such as rate()")
    raise QueryError(f"unsupported expression {type(node).__name__}")


def _aggregate(ctx: Context, node: pp.AggregateExpr) -> Vec:
    op = str(node.op)
    inner = evaluate(ctx, node.expr)
    if not isinstance(inner, Vec):
        raise QueryError(f"expected an instant vector in aggregation {op}")
    param: np.ndarray | str | None = None
    if node.param is not None:
        p = evaluate(ctx, node.param)
        if isinstance(p, Scalar):
            param = p.values
        elif isinstance(p, Str):
            param = p.value
        else:
            raise QueryError(f"expected a scalar or string parameter in aggregation {op}")
    mod = node.modifier
    without: bool | None = None
    names: list[str] = []
    if mod is not None:
        without = str(mod.type).rsplit(".", 1)[-1] == "Without"
        names = list(mod.labels)
    return aggregations.aggregate(op, inner, names, without, param, ctx.check_deadline)


def _call(ctx: Context, node: pp.Call) -> Value:
    name = node.func.name
    args = list(node.args)
    if name in rf.RANGE_FUNCTIONS or name in (
        "quantile_over_time",
        "predict_linear",
        "absent_over_time",
    ):
        return _range_call(ctx, name, args)
    if name == "timestamp":
        return functions.timestamp(_vector(evaluate(ctx, args[0]), name), ctx.times)
    if name == "absent":
        arg = unwrap(args[0])
        vec = _vector(evaluate(ctx, arg), name)
        matchers = None
        if isinstance(arg, pp.VectorSelector):
            matchers = selectors.matchers_from_promql(arg)
        return functions.absent(vec, matchers, ctx.steps)
    handler = _CALLS.get(name)
    if handler is None:
        raise QueryError(f"function {name!r} is not supported")
    return handler(ctx, [evaluate(ctx, a) for a in args])


def _vector(v: Value, fn: str) -> Vec:
    if not isinstance(v, Vec):
        raise QueryError(f"expected an instant vector argument to {fn}")
    return v


def _range_call(ctx: Context, name: str, args: list[pp.Expr]) -> Vec:
    matrix_pos = 1 if name == "quantile_over_time" else 0
    target = unwrap(args[matrix_pos])
    if ctx.use_rollups and isinstance(target, pp.MatrixSelector):
        planned = planner.try_rollup(ctx, name, target)
        if planned is not None:
            return planned
    ri = _range_arg(ctx, target)
    ri.check_deadline = ctx.check_deadline
    ctx.check_deadline()
    if name == "quantile_over_time":
        q = evaluate(ctx, args[0])
        if not isinstance(q, Scalar):
            raise QueryError("expected a scalar quantile in quantile_over_time")
        return rf.quantile_over_time(ri, q.values)
    if name == "predict_linear":
        t = evaluate(ctx, args[1])
        if not isinstance(t, Scalar):
            raise QueryError("expected a scalar duration in predict_linear")
        return rf.predict_linear(ri, t.values)
    if name == "absent_over_time":
        return functions.absent_over_time(ri)
    return rf.RANGE_FUNCTIONS[name](ri)


def _time(ctx: Context, _args: list[Value]) -> Value:
    return Scalar(ctx.times / 1000.0)


def _math(name: str) -> Callable[[Context, list[Value]], Value]:
    return lambda _ctx, args: functions.math_function(name, args[0])


def _clamp(name: str) -> Callable[[Context, list[Value]], Value]:
    return lambda _ctx, args: functions.clamp(name, args)


def _date(name: str) -> Callable[[Context, list[Value]], Value]:
    return lambda ctx, args: functions.date_function(name, args, ctx.times)


def _hq(_ctx: Context, args: list[Value]) -> Value:
    q = args[0]
    if not isinstance(q, Scalar):
        raise QueryError("expected a scalar quantile in histogram_quantile")
    return functions.histogram_quantile(q.values, _vector(args[1], "histogram_quantile"))


_CALLS: dict[str, Callable[[Context, list[Value]], Value]] = {
    **{n: _math(n) for n in functions._MATH},
    **{n: _clamp(n) for n in ("clamp", "clamp_min", "clamp_max")},
    **{
        n: _date(n)
        for n in (
            "day_of_week",
            "day_of_month",
            "day_of_year",
            "days_in_month",
            "hour",
            "minute",
            "month",
            "year",
        )
    },
    "round": lambda _ctx, args: functions.round_(args),
    "label_replace": lambda _ctx, args: functions.label_replace(args),
    "label_join": lambda _ctx, args: functions.label_join(args),
    "vector": lambda _ctx, args: functions.vector(args[0]),
    "scalar": lambda _ctx, args: functions.scalar(args[0]),
    "time": _time,
    "pi": lambda ctx, _args: Scalar(np.full(ctx.steps, np.pi)),
    "sort": lambda _ctx, args: functions.sort_rows(_vector(args[0], "sort"), False),
    "sort_desc": lambda _ctx, args: functions.sort_rows(_vector(args[0], "sort_desc"), True),
    "histogram_quantile": _hq,
}
