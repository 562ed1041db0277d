"""Instant and range selectors: reading samples once and selecting them at every step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import promql_parser as pp

from perfintel.errors import QueryError, QueryLimitError
from perfintel.model import Selector, is_stale, matchers_from_promql
from perfintel.query.promql.values import KEY_BIAS, KEY_SHIFT, Context, RangeInput, Vec
from perfintel.storage.base import SeriesSamples

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def duration_ms(td: timedelta | None) -> int:
    return 0 if td is None else td // _MS


def reference_times(ctx: Context, at: pp.AtModifier | None, offset: timedelta | None) -> np.ndarray:
    """The time each step reads at: the step (or the ``@`` time) minus the offset."""
    off = duration_ms(offset)
    if at is None:
        return ctx.times - off
    kind = str(at.type).rsplit(".", 1)[-1]
    if kind == "Start":
        t = ctx.query_start
    elif kind == "End":
        t = ctx.query_end
    else:
        if at.at is None:
            raise QueryError("@ modifier without a timestamp")
        dt = at.at if at.at.tzinfo else at.at.replace(tzinfo=UTC)
        t = (dt - _EPOCH) // _MS
    return np.full(ctx.steps, t - off, dtype=np.int64)


def fetch(ctx: Context, vs: pp.VectorSelector, start_ms: int, end_ms: int) -> list[SeriesSamples]:
    if vs.matchers.or_matchers:
        raise QueryError("'or' in label matchers is not supported")
    selector = Selector(matchers_from_promql(vs))
    ctx.check_deadline()
    out = ctx.store.select(selector, start_ms, end_ms, limits=ctx.limits)
    ctx.count_samples(sum(len(s.timestamps) for s in out))
    cap = ctx.limits.max_samples
    if cap is not None and len(out) * ctx.steps > cap:
        # Every operator holds (series x steps) arrays: refuse before allocating them.
        raise QueryLimitError(
            f"query would evaluate {len(out)} series at {ctx.steps} steps, more than "
            f"{cap} points (limit max_samples)"
        )
    return out


def _flatten(series: list[SeriesSamples]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    offsets = np.zeros(len(series) + 1, dtype=np.int64)
    if series:
        offsets[1:] = np.cumsum([len(s.timestamps) for s in series])
        ts = np.concatenate([np.asarray(s.timestamps, dtype=np.int64) for s in series])
        vals = np.concatenate([np.asarray(s.values, dtype=np.float64) for s in series])
    else:
        ts, vals = np.empty(0, np.int64), np.empty(0, np.float64)
    return offsets, ts, vals


def instant_selector(ctx: Context, vs: pp.VectorSelector) -> Vec:
    """Latest sample at or before each reference time, within the lookback window.

    A staleness marker as the latest sample means the series is absent.
    """
    refs = reference_times(ctx, vs.at, vs.offset)
    series = fetch(ctx, vs, int(refs.min()) - ctx.lookback_ms, int(refs.max()))
    n, steps = len(series), ctx.steps
    if n == 0:
        return Vec.empty(steps)
    offsets, ts, vals = _flatten(series)
    sid = np.repeat(np.arange(n, dtype=np.int64), np.diff(offsets))
    keys = sid * KEY_SHIFT + (ts + KEY_BIAS)
    base = np.arange(n, dtype=np.int64)[:, None] * KEY_SHIFT
    idx = np.searchsorted(keys, base + (refs + KEY_BIAS)[None, :], "right") - 1
    first = offsets[:-1][:, None]
    valid = idx >= first
    safe = np.where(valid, idx, 0)
    if len(ts) == 0:
        return Vec.empty(steps)
    t = ts[safe]
    v = vals[safe]
    present = valid & (t >= refs[None, :] - ctx.lookback_ms) & ~is_stale(v)
    return Vec([s.labels for s in series], v, present, t).compact()


def range_selector(ctx: Context, ms: pp.MatrixSelector) -> RangeInput:
    vs = ms.vector_selector
    rng = duration_ms(ms.range)
    ends = reference_times(ctx, vs.at, vs.offset)
    series = fetch(ctx, vs, int(ends.min()) - rng, int(ends.max()))
    offsets, ts, vals = _flatten(series)
    live = ~is_stale(vals)
    if not live.all():
        sid = np.repeat(np.arange(len(series)), np.diff(offsets))
        counts = np.bincount(sid[live], minlength=len(series))
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        ts, vals = ts[live], vals[live]
    return RangeInput(
        [s.labels for s in series], offsets, ts, vals, ends, rng, matchers_from_promql(vs)
    )


def vec_to_range(vec: Vec, grid: np.ndarray, ends: np.ndarray, rng: int) -> RangeInput:
    """A subquery's inner result (evaluated on ``grid``) as a range-function input."""
    counts = vec.present.sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    ts = np.broadcast_to(grid, vec.values.shape)[vec.present]
    vals = vec.values[vec.present]
    return RangeInput(list(vec.labels), offsets, ts.astype(np.int64), vals, ends, rng, None)


def subquery_grid(ctx: Context, sq: pp.SubqueryExpr) -> tuple[np.ndarray, int, np.ndarray, int]:
    """``(inner_times, inner_step, window_ends, range)`` of a subquery, aligned as Prometheus."""
    step = duration_ms(sq.step) or ctx.subquery_step_ms
    rng = duration_ms(sq.range)
    ends = reference_times(ctx, sq.at, sq.offset)
    lo = int(ends.min()) - rng
    start = (lo // step) * step
    if start < lo:
        start += step
    end = int(ends.max())
    if end < start:
        return np.empty(0, np.int64), step, ends, rng
    return np.arange(start, end + 1, step, dtype=np.int64), step, ends, rng
