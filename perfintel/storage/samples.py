"""Pure array operations on one series' samples, shared by every store."""

from __future__ import annotations

import numpy as np

from perfintel.model import STALE_NAN_BITS


def dedupe_last_wins(timestamps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort by timestamp; for a repeated timestamp keep the sample written last.

    Inputs are in write order, so a stable sort keeps later writes after
    earlier ones and the last of each run of equal timestamps wins.
    """
    if len(timestamps) == 0:
        return timestamps.astype(np.int64, copy=False), values.astype(np.float64, copy=False)
    if np.all(timestamps[1:] > timestamps[:-1]):
        return timestamps, values
    order = np.argsort(timestamps, kind="stable")
    ts = timestamps[order]
    vals = values[order]
    keep = np.ones(len(ts), bool)
    keep[:-1] = ts[1:] != ts[:-1]
    return ts[keep], vals[keep]


def in_range(timestamps: np.ndarray, start_ms: int, end_ms: int) -> slice:
    """Slice of a sorted timestamp array inside ``[start_ms, end_ms]``."""
    lo = int(np.searchsorted(timestamps, start_ms, "left"))
    hi = int(np.searchsorted(timestamps, end_ms, "right"))
    return slice(lo, hi)


def rollup(
    timestamps: np.ndarray, values: np.ndarray, resolution_ms: int
) -> tuple[np.ndarray, ...]:
    """Aggregate sorted samples into buckets of ``resolution_ms``.

    Returns ``(bucket_start, min, max, sum, count, last)``; staleness markers
    are skipped so a series that went stale does not poison its last bucket.
    """
    return rollup_many(np.zeros(len(timestamps), np.int64), timestamps, values, resolution_ms)[1:]


def rollup_many(
    series: np.ndarray, timestamps: np.ndarray, values: np.ndarray, resolution_ms: int
) -> tuple[np.ndarray, ...]:
    """``rollup`` of many series at once: samples sorted by (series, timestamp).

    Returns ``(series, bucket_start, min, max, sum, count, last)`` per bucket,
    the same buckets ``rollup`` gives each series on its own.
    """
    live = values.view(np.uint64) != np.uint64(STALE_NAN_BITS)
    sids, ts, vals = series[live], timestamps[live], values[live]
    # each sample a bucket of its own, combined into buckets of ``resolution_ms``
    return coarsen_many(sids, ts, vals, vals, vals, np.ones(len(ts), np.int64), vals, resolution_ms)


def coarsen_many(
    series: np.ndarray,
    starts: np.ndarray,
    mins: np.ndarray,
    maxs: np.ndarray,
    sums: np.ndarray,
    counts: np.ndarray,
    lasts: np.ndarray,
    resolution_ms: int,
) -> tuple[np.ndarray, ...]:
    """Combine buckets sorted by (series, start) into buckets of ``resolution_ms``
    (min of mins, max of maxes, sum of sums and counts, last of lasts).

    Returns ``(series, bucket_start, min, max, sum, count, last)`` per bucket.
    """
    if len(starts) == 0:
        e = np.empty(0)
        return np.empty(0, np.int64), np.empty(0, np.int64), e, e, e, np.empty(0, np.int64), e
    buckets = starts - np.mod(starts, resolution_ms)
    first = np.flatnonzero(np.r_[True, (buckets[1:] != buckets[:-1]) | (series[1:] != series[:-1])])
    last = np.r_[first[1:], len(starts)] - 1
    with np.errstate(invalid="ignore", over="ignore"):  # sums of huge values: ±inf, as IEEE says
        return (
            series[first],
            buckets[first],
            np.minimum.reduceat(mins, first),
            np.maximum.reduceat(maxs, first),
            np.add.reduceat(sums, first),
            np.add.reduceat(counts, first),
            lasts[last],
        )
