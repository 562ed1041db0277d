"""The simple series query: raw samples, or per-step buckets, optionally aggregated.

Without a step it returns raw samples. With a step, each series is cut into
buckets aligned to multiples of the step (since the Unix epoch) and reduced
with ``fn``; when a rollup tier's resolution divides the step, the buckets come
from that tier instead of raw samples (exact for every ``fn``: min of mins,
sum of sums, count of counts, last of lasts, avg = sum / count). ``agg``
then combines the series of each ``by`` group bucket by bucket.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from perfintel.errors import BadInputError
from perfintel.model import LabelSet, Selector
from perfintel.storage.base import QueryLimits, SampleReader, SeriesRollup
from perfintel.storage.samples import rollup

BucketFn = Literal["avg", "min", "max", "sum", "count", "last"]
AggFn = Literal["sum", "avg", "min", "max", "count"]
BUCKET_FNS = ("avg", "min", "max", "sum", "count", "last")
AGG_FNS = ("sum", "avg", "min", "max", "count")


@dataclass
class SeriesResult:
    labels: LabelSet
    timestamps: np.ndarray
    values: np.ndarray


@dataclass
class QueryResult:
    source: str  # "raw", "step" (raw bucketed) or the tier's resolution in ms as "tier:<ms>"
    series: list[SeriesResult]


def run_series_query(
    store: SampleReader,
    selector: Selector,
    start_ms: int,
    end_ms: int,
    *,
    step_ms: int | None = None,
    fn: str = "avg",
    agg: str | None = None,
    by: Sequence[str] = (),
    limits: QueryLimits | None = None,
) -> QueryResult:
    if end_ms < start_ms:
        raise BadInputError("invalid parameter 'end': end is before start")
    if fn not in BUCKET_FNS:
        raise BadInputError(f"invalid parameter 'fn': {fn!r} (use one of {', '.join(BUCKET_FNS)})")
    if agg is not None and agg not in AGG_FNS:
        raise BadInputError(f"invalid parameter 'agg': {agg!r} (use one of {', '.join(AGG_FNS)})")
    if step_ms is None:
        if agg is not None:
            raise BadInputError("invalid parameter 'agg': aggregation across series needs a 'step'")
        raw = store.select(selector, start_ms, end_ms, limits=limits)
        return QueryResult("raw", [SeriesResult(s.labels, s.timestamps, s.values) for s in raw])
    if step_ms <= 0:
        raise BadInputError("invalid parameter 'step': must be positive")
    rolled = store.select_rollup(selector, start_ms, end_ms, step_ms, limits=limits)
    if rolled is not None and rolled and step_ms % rolled[0].resolution_ms == 0:
        source = f"tier:{rolled[0].resolution_ms}"
        series = [_reduce_rollup(r, step_ms, fn) for r in rolled]
    else:
        source = "step"
        series = []
        for s in store.select(selector, start_ms, end_ms, limits=limits):
            b, mn, mx, sm, cnt, last = rollup(s.timestamps, s.values, step_ms)
            series.append(SeriesResult(s.labels, b, _pick(fn, mn, mx, sm, cnt, last)))
    lo = start_ms - start_ms % step_ms
    series = [_clip(s, lo, end_ms) for s in series]
    series = [s for s in series if len(s.timestamps)]
    if agg is not None:
        series = aggregate(series, agg, by)
    return QueryResult(source, series)


def _clip(s: SeriesResult, lo: int, hi: int) -> SeriesResult:
    keep = (s.timestamps >= lo) & (s.timestamps <= hi)
    return SeriesResult(s.labels, s.timestamps[keep], s.values[keep])


def _pick(
    fn: str, mn: np.ndarray, mx: np.ndarray, sm: np.ndarray, cnt: np.ndarray, last: np.ndarray
) -> np.ndarray:
    if fn == "avg":
        with np.errstate(invalid="ignore", divide="ignore"):
            return sm / cnt
    return {"min": mn, "max": mx, "sum": sm, "count": cnt.astype(np.float64), "last": last}[fn]


def _reduce_rollup(r: SeriesRollup, step_ms: int, fn: str) -> SeriesResult:
    if step_ms == r.resolution_ms:
        return SeriesResult(r.labels, r.timestamps, _pick(fn, r.min, r.max, r.sum, r.count, r.last))
    b = r.timestamps - np.mod(r.timestamps, step_ms)
    starts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
    ends = np.r_[starts[1:], len(b)]
    mn = np.minimum.reduceat(r.min, starts)
    mx = np.maximum.reduceat(r.max, starts)
    sm = np.add.reduceat(r.sum, starts)
    cnt = np.add.reduceat(r.count, starts)
    return SeriesResult(r.labels, b[starts], _pick(fn, mn, mx, sm, cnt, r.last[ends - 1]))


def aggregate(series: list[SeriesResult], agg: str, by: Sequence[str]) -> list[SeriesResult]:
    """Combine series per ``by`` group at each bucket (missing buckets are skipped, not zero)."""
    if not series:
        return []
    groups: dict[LabelSet, list[SeriesResult]] = {}
    for s in series:
        d = dict(s.labels)
        key = tuple((k, d[k]) for k in sorted(by) if k in d)
        groups.setdefault(key, []).append(s)
    out = []
    for key, members in sorted(groups.items()):
        grid = np.unique(np.concatenate([m.timestamps for m in members]))
        mat = np.full((len(members), len(grid)), np.nan)
        for i, m in enumerate(members):
            mat[i, np.searchsorted(grid, m.timestamps)] = m.values
        present = ~np.isnan(mat)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN buckets are dropped below
            if agg == "sum":
                vals = np.nansum(mat, axis=0)
            elif agg == "avg":
                vals = np.nanmean(mat, axis=0)
            elif agg == "min":
                vals = np.nanmin(mat, axis=0)
            elif agg == "max":
                vals = np.nanmax(mat, axis=0)
            else:
                vals = present.sum(axis=0).astype(np.float64)
        keep = present.any(axis=0)
        out.append(SeriesResult(key, grid[keep], vals[keep]))
    return out
