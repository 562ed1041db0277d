"""Timestamp bounds of appended samples, like Prometheus's out-of-bounds errors.

A sample older than the raw retention would be deleted by the next retention
pass (and, once its raw block has expired, could only damage the rollups
built from it); one far ahead of the clock is almost always a unit mistake.
Both are refused, the good samples beside them kept, with a message that
names the likely cause.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from perfintel.batch import SampleBatch
from perfintel.model import format_series
from perfintel.timeparse import format_duration_ms

_UNITS = (  # (factor to milliseconds, what the client probably sent)
    (1000, "seconds sent where milliseconds are expected?"),
    (1e-3, "microseconds sent where milliseconds are expected?"),
    (1e-6, "nanoseconds sent where milliseconds are expected?"),
)


def split_out_of_bounds(
    batch: SampleBatch, lo_ms: int, hi_ms: int, retention_ms: int, future_ms: int
) -> tuple[SampleBatch, int, list[str]]:
    """``batch`` without samples outside ``[lo_ms, hi_ms]``; returns (kept, refused
    count, one message per kind of problem). Series left without samples are
    dropped from the kept batch (they must not be registered)."""
    ts = batch.timestamps
    ok = (ts >= lo_ms) & (ts <= hi_ms)
    if ok.all():
        return batch, 0, []
    bad = np.flatnonzero(~ok)
    errors = []
    for name, sel in (("old", ts[bad] < lo_ms), ("new", ts[bad] > hi_ms)):
        idx = bad[sel]
        if not len(idx):
            continue
        first = int(idx[0])
        t = int(ts[first])
        series = format_series(batch.series[int(batch.series_idx[first])])
        if name == "old":
            limit = f"older than the raw retention ({format_duration_ms(retention_ms)})"
        else:
            limit = f"more than {format_duration_ms(future_ms)} ahead of the server's clock"
        errors.append(
            f"{len(idx)} sample(s) refused, timestamp {limit}: the first, of {series}, "
            f"has timestamp {t} ms = {_date(t)}: {_hint(t, lo_ms, hi_ms, name)}"
        )
    kept_idx = batch.series_idx[ok]
    used = np.unique(kept_idx)
    remap = np.full(len(batch.series), -1, np.int32)
    remap[used] = np.arange(len(used), dtype=np.int32)
    kept = SampleBatch(
        [batch.series[i] for i in used.tolist()],
        remap[kept_idx],
        ts[ok],
        batch.values[ok],
    )
    return kept, len(bad), errors


def _date(ms: int) -> str:
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return "out of the calendar"


def _hint(t: int, lo_ms: int, hi_ms: int, name: str) -> str:
    if t == 0:
        return "timestamp 0: a sample without a timestamp sent as 0?"
    if t < 0:
        return "a negative timestamp: an overflow or an unset value?"
    for factor, hint in _UNITS:
        if lo_ms <= t * factor <= hi_ms:
            return hint
    if name == "old":
        return "old data (a backfill beyond the raw retention is refused; raise storage.raw_retention)?"
    return "is the client's clock right?"
