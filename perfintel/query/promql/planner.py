"""Answer coarse range queries from rollup tiers instead of raw samples.

Applies to range queries (more than one step) of ``avg|min|max|sum|count|last_over_time(x[r])``
and of ``rate|increase(x_total[r])`` (a counter, recognised by its ``_total``
suffix) when the store has a tier of resolution ``res`` such that ``r``, the
step, the offset and the start are multiples of ``res`` and there is no ``@``.

The window of step ``t`` becomes the buckets starting in ``[t - r, t)``, i.e.
the samples in ``[t - r, t)`` where the raw answer uses ``[t - r, t]``.
Tolerance against the raw answer (tested in ``tests/query/test_promql_planner.py``):

* ``count_over_time``: off by the samples stamped exactly ``t`` (at most one per
  scrape), so within ``1 / (r / scrape_interval)`` relative (0.28 % for 1 h
  windows of 10 s scrapes); ``sum``/``avg`` likewise within about one sample's
  share of the window (0.5 % in the test).
* ``min``/``max``: differ only when the extreme is the sample at exactly ``t``;
  ``last_over_time`` returns the last sample before ``t`` (1 % in the test).
* ``rate``/``increase``: the difference of the last samples of the buckets
  ending at ``t - r`` and at ``t``, without extrapolation: exact for a steadily
  growing counter; otherwise off by the growth of about one scrape at each end
  of the window (2 % for 1 h and 4 % for 30 min windows of a noisy 10 s counter
  in the test). A reset inside a bucket
  (its ``min`` below the previous bucket's ``last``) adds the previous ``last``,
  which can miss up to one bucket of growth before the reset. A series that
  starts inside the window counts from its first bucket's ``min``.

Sums (and the reset corrections of ``rate``/``increase``) stay within each
series: a window of up to 32 buckets adds its buckets
in time order (one bucket per window, the usual ``x[r]`` at step ``r``, is
that bucket's sum exactly); wider ones subtract prefix sums taken along the
series. A NaN sample therefore poisons ``sum``/``avg`` of the windows holding
its bucket (with windows of more than 32 buckets, every later window of that
series); callers that need exact NaN semantics disable rollups.

The store returns the buckets of every series at once as flat columns
(``RollupColumns``), in the order it read them. When the ``(series, bucket)``
grid is not much bigger than the data, the windows are computed on that dense
grid (no sorting, column slices per step); otherwise on rows sorted by series
and bucket. Both give the same numbers.
"""

from __future__ import annotations

import numpy as np
import promql_parser as pp

from perfintel.errors import QueryError
from perfintel.model import METRIC_NAME, Selector, matchers_from_promql
from perfintel.query.promql.selectors import duration_ms
from perfintel.query.promql.values import (
    KEY_BIAS,
    KEY_SHIFT,
    Context,
    Vec,
    drop_name,
    merge_same_labels,
)
from perfintel.storage.base import RollupColumns, RollupColumnsReader

ROLLUP_FUNCTIONS = {
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "last_over_time",
    "rate",
    "increase",
}


#: The bucket aggregates each function reads.
_AGGREGATES = {
    "avg_over_time": ("sum", "count"),
    "min_over_time": ("min",),
    "max_over_time": ("max",),
    "sum_over_time": ("sum",),
    "count_over_time": ("count",),
    "last_over_time": ("last",),
    "rate": ("min", "last"),
    "increase": ("min", "last"),
}
_SEQUENTIAL_WINDOW = 32  # windows of up to this many buckets are summed bucket by bucket


def try_rollup(ctx: Context, name: str, ms: pp.MatrixSelector) -> Vec | None:
    """The function's result from rollups, or ``None`` when raw samples must be used."""
    if name not in ROLLUP_FUNCTIONS or ctx.step_ms <= 0 or len(ctx.times) < 2:
        return None
    vs = ms.vector_selector
    if vs.at is not None or vs.matchers.or_matchers:
        return None
    matchers = matchers_from_promql(vs)
    if name in ("rate", "increase"):
        names = [m.value for m in matchers if m.name == METRIC_NAME and m.op.value == "="]
        if not names or not names[0].endswith("_total"):
            return None
    rng = duration_ms(ms.range)
    off = duration_ms(vs.offset)
    ends = ctx.times - off
    # rate/increase also need the bucket just before the window (at most ``rng`` wide).
    lookback = 2 * rng if name in ("rate", "increase") else rng
    args = (Selector(matchers), int(ends[0]) - lookback, int(ends[-1]) - 1, min(ctx.step_ms, rng))
    cols: RollupColumns | None
    if isinstance(ctx.store, RollupColumnsReader):
        cols = ctx.store.select_rollup_columns(
            *args, aggregates=_AGGREGATES[name], limits=ctx.limits
        )
    else:
        rollups = ctx.store.select_rollup(*args, limits=ctx.limits)
        cols = RollupColumns.of(rollups, rollups[0].resolution_ms) if rollups else None
    if cols is None or not len(cols):
        return None  # no fitting tier, or nothing rolled up yet: read raw samples
    res = cols.resolution_ms
    if res <= 0 or rng % res or ctx.step_ms % res or int(ends[0]) % res:
        return None
    ctx.count_samples(len(cols.timestamps))
    return _evaluate(name, cols, ends, rng, res)


def _window_bounds(
    offsets: np.ndarray, b: np.ndarray, ends: np.ndarray, rng: int, res: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)`` of shape ``(n, steps)``: the flat positions of the buckets starting in
    ``[end - rng, end)`` of each series at each step (bucket starts sorted within a series).

    Three ways to the same answer, cheapest first: when every series has the same
    buckets (the usual case), one search in the first series' buckets; when the
    buckets' grid is not much bigger than the data, a running count along a dense
    row of the grid per series; otherwise a binary search on composite
    ``(series, start)`` keys.
    """
    n, steps = len(offsets) - 1, len(ends)
    counts = np.diff(offsets)
    first = offsets[:-1, None]
    length = int(counts[0]) if n else 0
    if length and length * n == len(b) and bool(np.all(counts == length)):
        grid = b.reshape(n, length)
        if bool(np.all(grid == grid[0])):
            lo: np.ndarray = first + np.searchsorted(grid[0], ends - rng, "left")[None, :]
            hi: np.ndarray = first + np.searchsorted(grid[0], ends, "left")[None, :]
            return lo, hi
    g0 = min(int(b.min()), int(ends[0]) - rng)
    width = (max(int(b.max()) + res, int(ends[-1])) - g0) // res
    col = (b - g0) // res
    step_up = np.diff(col) > 0
    step_up[offsets[1:-1] - 1] = True  # a new series may start anywhere
    if bool(np.all(step_up)) and n * (width + 1) <= 4 * len(b) + 2 * n * steps + 65_536:
        seen = np.zeros((n, width + 1), np.int32)
        seen.ravel()[np.repeat(np.arange(n, dtype=np.int64) * (width + 1), counts) + col + 1] = 1
        np.cumsum(seen, axis=1, out=seen)  # seen[i, c]: buckets of series i before column c
        lo = first + seen[:, (ends - rng - g0) // res]
        hi = first + seen[:, (ends - g0) // res]
        return lo, hi
    sid = np.repeat(np.arange(n, dtype=np.int64), counts)
    keys = sid * KEY_SHIFT + (b + KEY_BIAS)
    base = np.arange(n, dtype=np.int64)[:, None] * KEY_SHIFT
    lo = np.searchsorted(keys, base + (ends - rng + KEY_BIAS)[None, :], "left").reshape(n, -1)
    hi = np.searchsorted(keys, base + (ends + KEY_BIAS)[None, :], "left").reshape(n, -1)
    return lo, hi


def _window_sums(
    x: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    ok: np.ndarray,
    offsets: np.ndarray,
    buckets: int,
) -> np.ndarray:
    """Sum of ``x[lo:hi]`` per window (float or integer ``x``), from the series' own buckets.

    Windows of up to ``_SEQUENTIAL_WINDOW`` buckets (``buckets`` = range ÷
    resolution) add their buckets in time order; wider ones subtract prefix sums
    taken along each series (padded rows), so one series' magnitude never costs
    another precision, as one running sum over every series would.
    """
    span = hi - lo
    if buckets <= _SEQUENTIAL_WINDOW:
        acc = x[np.where(ok, lo, 0)]
        for k in range(1, int(span.max(initial=0))):
            act = span > k
            acc = np.where(act, acc + x[np.where(act, lo + k, 0)], acc)
        return acc
    n = len(offsets) - 1
    counts = np.diff(offsets)
    longest = int(counts.max(initial=0))
    first = offsets[:-1, None]
    if n * (longest + 1) <= 4 * len(x) + 65_536:
        rows = np.zeros((n, longest + 1), x.dtype)
        pos = np.arange(len(x)) - np.repeat(offsets[:-1], counts)
        rows.ravel()[np.repeat(np.arange(n, dtype=np.int64) * (longest + 1), counts) + pos + 1] = x
        np.cumsum(rows, axis=1, out=rows)
        r = np.arange(n)[:, None]
        return rows[r, hi - first] - rows[r, lo - first]
    csum = np.concatenate([np.zeros(1, x.dtype), np.cumsum(x)])
    return csum[hi] - csum[lo]


def _evaluate(name: str, cols: RollupColumns, ends: np.ndarray, rng: int, res: int) -> Vec:
    with np.errstate(all="ignore"):
        dense = (
            None if name in ("rate", "increase") else _evaluate_dense(name, cols, ends, rng, res)
        )
        vals, ok = (
            dense if dense is not None else _evaluate_rows(name, cols.in_order(), ends, rng, res)
        )
    keep_name = name == "last_over_time"
    labels = cols.labels if keep_name else [drop_name(ls) for ls in cols.labels]
    return merge_same_labels(Vec(list(labels), vals, ok).compact(), whole_range=True)


def _need(name: str, x: np.ndarray | None) -> np.ndarray:
    if x is None:
        raise QueryError(f"the store did not return the rollup aggregates {name} needs")
    return x


def _take_extreme(cur: np.ndarray, v: np.ndarray, smallest: bool) -> np.ndarray:
    """Prometheus's ``min_over_time``/``max_over_time`` step: replace while the new value
    is smaller (larger) or the current one is NaN."""
    better = (cur > v) if smallest else (cur < v)
    return better | np.isnan(cur)


def _evaluate_dense(
    name: str, cols: RollupColumns, ends: np.ndarray, rng: int, res: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """The windows on a dense ``(series, bucket)`` grid, rows placed in any order they came.

    ``None`` when the grid would be much bigger than the data (series that exist for
    part of the range only) or two rows share a cell: the row-wise path answers then.
    Same arithmetic as the row-wise path: a window adds its buckets in time order
    (absent ones as -0.0, which adds nothing), or takes prefix sums along its row.
    """
    n, steps = len(cols), len(ends)
    b = cols.timestamps
    if n == 0 or len(b) == 0:
        return None
    g0 = min(int(b.min()), int(ends[0]) - rng)
    width = (max(int(b.max()) + res, int(ends[-1])) - g0) // res
    if n * width > 2 * len(b) + 2 * n * steps + 65_536:
        return None
    cell = cols.series_index * width + (b - g0) // res
    occupied = np.zeros(n * width, bool)
    occupied[cell] = True
    if int(np.count_nonzero(occupied)) != len(b):
        return None
    present = occupied.reshape(n, width)
    k = rng // res  # buckets per window
    first = (ends - rng - g0) // res  # each window's first column
    stride = int(first[1] - first[0]) if steps > 1 else 1
    even = stride > 0 and bool(np.all(np.diff(first) == stride))

    def at(g: np.ndarray, d: int) -> np.ndarray:
        """Column ``first + d`` of every window: a strided view when steps are even."""
        if even:
            a = int(first[0]) + d
            return g[:, a : a + stride * (steps - 1) + 1 : stride]
        return g[:, first + d]

    def grid(x: np.ndarray, fill: float | int) -> np.ndarray:
        out = np.full(n * width, fill, x.dtype)
        out[cell] = x
        return out.reshape(n, width)

    def window_sums(g: np.ndarray) -> np.ndarray:
        if k <= _SEQUENTIAL_WINDOW:
            acc = at(g, 0).copy()
            for d in range(1, k):
                acc += at(g, d)
            return acc
        csum = np.zeros((n, width + 1), g.dtype)
        np.cumsum(g, axis=1, out=csum[:, 1:])
        return at(csum, k) - at(csum, 0)

    if k <= _SEQUENTIAL_WINDOW:
        ok = at(present, 0).copy()
        for d in range(1, k):
            ok |= at(present, d)
    else:
        ok = window_sums(present.astype(np.int32)) > 0
    if name == "last_over_time":
        latest = np.where(present, np.arange(width), -1)
        np.maximum.accumulate(latest, axis=1, out=latest)
        idx = at(latest, k - 1)
        rows = np.arange(n)[:, None]
        return grid(_need(name, cols.last), np.nan)[rows, np.maximum(idx, 0)], ok
    if name in ("sum_over_time", "avg_over_time"):
        # absent buckets add -0.0 bucket by bucket, 0.0 in a prefix sum (as padded rows)
        vals = window_sums(grid(_need(name, cols.sum), -0.0 if k <= _SEQUENTIAL_WINDOW else 0.0))
        if name == "avg_over_time":
            vals /= window_sums(grid(_need(name, cols.count), 0))
        return vals, ok
    if name == "count_over_time":
        return window_sums(grid(_need(name, cols.count), 0)).astype(np.float64), ok
    smallest = name == "min_over_time"
    g = grid(_need(name, cols.min if smallest else cols.max), np.nan)
    vals = at(g, 0).copy()
    for d in range(1, k):
        v = at(g, d)
        vals = np.where(at(present, d) & _take_extreme(vals, v, smallest), v, vals)
    return vals, ok


def _evaluate_rows(
    name: str, cols: RollupColumns, ends: np.ndarray, rng: int, res: int
) -> tuple[np.ndarray, np.ndarray]:
    """The windows from rows ordered by series, then bucket."""
    offsets = cols.offsets
    b = cols.timestamps
    lo, hi = _window_bounds(offsets, b, ends, rng, res)
    ok = hi > lo
    k = rng // res
    if name in ("sum_over_time", "avg_over_time"):
        vals = _window_sums(_need(name, cols.sum), lo, hi, ok, offsets, k)
        if name == "avg_over_time":
            vals /= _window_sums(_need(name, cols.count), lo, hi, ok, offsets, k)
    elif name == "count_over_time":
        vals = _window_sums(_need(name, cols.count), lo, hi, ok, offsets, k).astype(np.float64)
    elif name == "last_over_time":
        vals = _need(name, cols.last)[np.where(ok, hi - 1, 0)]
    elif name in ("min_over_time", "max_over_time"):
        smallest = name == "min_over_time"
        src = _need(name, cols.min if smallest else cols.max)
        vals = src[np.where(ok, lo, 0)]
        for k in range(1, int((hi - lo).max(initial=0))):
            act = (hi - lo) > k
            v = src[np.where(act, lo + k, 0)]
            vals = np.where(act & _take_extreme(vals, v, smallest), v, vals)
    else:
        mn, last = _need(name, cols.min), _need(name, cols.last)
        vals = _increase(lo, hi, ok, offsets, b, mn, last, ends, rng, res)
        if name == "rate":
            vals = vals / (rng / 1000)
    return vals, ok


def _increase(
    lo: np.ndarray,
    hi: np.ndarray,
    ok: np.ndarray,
    offsets: np.ndarray,
    b: np.ndarray,
    mn: np.ndarray,
    last: np.ndarray,
    ends: np.ndarray,
    rng: int,
    res: int,
) -> np.ndarray:
    """Counter growth over each window from bucket ``last``/``min`` values."""
    first_of_series = offsets[:-1][:, None]
    reset = np.zeros(len(last), bool)
    reset[1:] = mn[1:] < last[:-1]
    reset[offsets[:-1][offsets[:-1] < len(last)]] = False
    add = np.where(reset, np.concatenate([[0.0], last[:-1]]), 0.0)
    hi1 = np.where(ok, hi - 1, 0)
    lo0 = np.where(ok, lo, 0)
    prev = lo0 - 1
    has_prev = (
        ok & (prev >= first_of_series) & (b[np.maximum(prev, 0)] == ends[None, :] - rng - res)
    )
    start_val = np.where(has_prev, last[np.maximum(prev, 0)], mn[lo0])
    # Resets inside the window: buckets lo..hi-1 compared with their predecessor;
    # bucket lo only counts when the predecessor is the start value.
    # (Summed along each series, as ``_window_sums`` does, not as one running sum.)
    corr = _window_sums(add, lo, hi, ok, offsets, rng // res) - np.where(has_prev, 0.0, add[lo0])
    return np.where(ok, last[hi1] - start_val + corr, np.nan)
