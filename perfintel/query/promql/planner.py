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

NaN samples poison ``sum``/``avg`` of every window after them on this path
(prefix sums); callers that need exact NaN semantics disable rollups.
"""

from __future__ import annotations

import numpy as np
import promql_parser as pp

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
from perfintel.storage.base import SeriesRollup

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
    rollups = ctx.store.select_rollup(
        Selector(matchers),
        int(ends[0]) - lookback,
        int(ends[-1]) - 1,
        min(ctx.step_ms, rng),
        limits=ctx.limits,
    )
    if not rollups:
        return None  # no fitting tier, or nothing rolled up yet: read raw samples
    res = rollups[0].resolution_ms
    if res <= 0 or rng % res or ctx.step_ms % res or int(ends[0]) % res:
        return None
    ctx.count_samples(sum(len(r.timestamps) for r in rollups))
    return _evaluate(name, rollups, ends, rng, res)


def _evaluate(name: str, rollups: list[SeriesRollup], ends: np.ndarray, rng: int, res: int) -> Vec:
    n = len(rollups)
    counts = np.array([len(r.timestamps) for r in rollups])
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    b = np.concatenate([r.timestamps for r in rollups]).astype(np.int64)
    sid = np.repeat(np.arange(n, dtype=np.int64), counts)
    keys = sid * KEY_SHIFT + (b + KEY_BIAS)
    base = np.arange(n, dtype=np.int64)[:, None] * KEY_SHIFT
    lo = np.searchsorted(keys, base + (ends - rng + KEY_BIAS)[None, :], "left").reshape(n, -1)
    hi = np.searchsorted(keys, base + (ends + KEY_BIAS)[None, :], "left").reshape(n, -1)
    ok = hi > lo
    mn = np.concatenate([r.min for r in rollups])
    mx = np.concatenate([r.max for r in rollups])
    sm = np.concatenate([r.sum for r in rollups])
    cn = np.concatenate([r.count for r in rollups]).astype(np.int64)
    last = np.concatenate([r.last for r in rollups])
    hi1 = np.where(ok, hi - 1, 0)
    lo0 = np.where(ok, lo, 0)
    keep_name = name == "last_over_time"
    with np.errstate(all="ignore"):
        if name in ("count_over_time", "sum_over_time", "avg_over_time"):
            ccount = np.concatenate([[0], np.cumsum(cn)])
            csum = np.concatenate([[0.0], np.cumsum(sm)])
            total_n = ccount[hi] - ccount[lo]
            total_s = csum[hi] - csum[lo]
            vals = {"count_over_time": total_n.astype(np.float64), "sum_over_time": total_s}.get(
                name, total_s / total_n
            )
        elif name == "last_over_time":
            vals = last[hi1]
        elif name in ("min_over_time", "max_over_time"):
            pick = np.fmin if name == "min_over_time" else np.fmax
            src = mn if name == "min_over_time" else mx
            vals = src[lo0].copy()
            for k in range(1, int((hi - lo).max(initial=0))):
                act = (hi - lo) > k
                vals = np.where(act, pick(vals, src[np.where(act, lo + k, 0)]), vals)
        else:
            vals = _increase(lo, hi, ok, offsets, b, mn, last, ends, rng, res)
            if name == "rate":
                vals = vals / (rng / 1000)
    labels = [ls if keep_name else drop_name(ls) for ls in (r.labels for r in rollups)]
    return merge_same_labels(Vec(labels, vals, ok).compact(), whole_range=True)


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
    cadd = np.concatenate([[0.0], np.cumsum(add)])
    hi1 = np.where(ok, hi - 1, 0)
    lo0 = np.where(ok, lo, 0)
    prev = lo0 - 1
    has_prev = (
        ok & (prev >= first_of_series) & (b[np.maximum(prev, 0)] == ends[None, :] - rng - res)
    )
    start_val = np.where(has_prev, last[np.maximum(prev, 0)], mn[lo0])
    # Resets inside the window: buckets lo..hi-1 compared with their predecessor;
    # bucket lo only counts when the predecessor is the start value.
    corr = cadd[hi1 + 1] - cadd[lo0 + 1] + np.where(has_prev, add[lo0], 0.0)
    return np.where(ok, last[hi1] - start_val + corr, np.nan)
