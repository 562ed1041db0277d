"""Series on one regular grid for the correlation, root-cause and change-impact models.

:func:`fetch_grid` is the single place where those analyses turn "what the
user asked for" into series on a grid; it takes a PromQL series selector
today (the analysis endpoints' shared expression helper can replace its body
without touching its callers). Each bucket ``[t, t + step)`` holds the
bucket function (``avg`` by default) of the samples in it, read from a rollup
tier when the step is a multiple of the tier's resolution
(:func:`perfintel.query.series_query.run_series_query`); NaN marks a bucket
without samples. Series without a single sample in the range are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perfintel.analysis.signals import Grid, SeriesInput, series_input
from perfintel.errors import BadInputError
from perfintel.model import LabelSet, Selector
from perfintel.performance.history import count_series
from perfintel.query.series_query import run_series_query
from perfintel.storage.base import (
    QueryLimits,
    RollupColumns,
    RollupColumnsReader,
    SampleReader,
)
from perfintel.storage.samples import coarsen_many, rollup_many

#: most grid points of one series
MAX_GRID_POINTS = 20_000


@dataclass
class GridSet:
    """Series on ``grid``: ``values[i]`` belongs to ``labels[i]`` (NaN: no data in the bucket).

    ``source`` is ``"raw"`` or ``"tier:<resolution ms>"``.
    """

    grid: Grid
    source: str
    labels: list[LabelSet]
    values: np.ndarray

    def inputs(self) -> list[SeriesInput]:
        """The series as model inputs (counters recognised by their names)."""
        return [series_input(ls, v) for ls, v in zip(self.labels, self.values, strict=True)]


def grid_for(start_ms: int, end_ms: int, step_ms: int) -> Grid:
    """The grid of buckets aligned to multiples of ``step_ms`` covering ``[start_ms, end_ms]``."""
    if step_ms <= 0:
        raise BadInputError("invalid parameter 'step': must be positive")
    if end_ms < start_ms:
        raise BadInputError("invalid parameter 'end': end is before start")
    first = start_ms - start_ms % step_ms
    size = (end_ms - first) // step_ms + 1
    if size > MAX_GRID_POINTS:
        raise BadInputError(
            f"invalid parameter 'step': {size} steps in the range (limit {MAX_GRID_POINTS}); "
            "use a longer step or a shorter range"
        )
    return Grid(first, step_ms, int(size))


def fetch_grid(
    reader: SampleReader,
    selector: Selector,
    grid: Grid,
    *,
    fn: str = "avg",
    max_series: int,
    max_samples: int | None = None,
    what: str = "selector",
) -> GridSet:
    """Every series matching ``selector`` on ``grid`` (see the module docstring).

    Raises ``QueryLimitError`` when more than ``max_series`` series match
    (checked on the index before any sample is read) or the read crosses
    ``max_samples``.
    """
    end = grid.time(grid.size - 1) + grid.step_ms - 1
    count_series(reader, selector, grid.start_ms, end, max_series=max_series, what=what)
    limits = QueryLimits(max_series=max_series, max_samples=max_samples)
    result = run_series_query(
        reader, selector, grid.start_ms, end, step_ms=grid.step_ms, fn=fn, limits=limits
    )
    labels: list[LabelSet] = []
    rows: list[np.ndarray] = []
    for s in result.series:
        idx = (np.asarray(s.timestamps, dtype=np.int64) - grid.start_ms) // grid.step_ms
        keep = (idx >= 0) & (idx < grid.size)
        if not keep.any():
            continue
        row = np.full(grid.size, np.nan)
        row[idx[keep]] = s.values[keep]
        labels.append(s.labels)
        rows.append(row)
    values = np.vstack(rows) if rows else np.zeros((0, grid.size))
    source = "raw" if result.source in ("raw", "step") else result.source
    return GridSet(grid, source, labels, values)


#: the steps an automatic grid step snaps up to (seconds): the usual scrape intervals
SNAP_STEPS_S = (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600)
#: how much of the range a sampling interval is read from (the most recent part)
PROBE_MS = 10 * 60_000


def sampling_step_ms(
    reader: SampleReader,
    selector: Selector,
    start_ms: int,
    end_ms: int,
    *,
    max_points: int,
    fallback_ms: int,
    max_series: int,
    max_samples: int | None = None,
) -> int:
    """A grid step at the resolution the series of ``selector`` are sampled at.

    The interval is read from the last ``PROBE_MS`` of ``[start_ms, end_ms]``:
    the 90th percentile over series of each one's median spacing (so that a
    series scraped less often than the others still has a sample in nearly
    every bucket), snapped up to a usual scrape interval; at least the step
    that keeps the range within ``max_points`` buckets. ``fallback_ms`` when
    no series has two raw samples there (only rollup tiers cover it).
    """
    floor = -(-(end_ms - start_ms + 1) // max_points)
    limits = QueryLimits(max_series=max_series, max_samples=max_samples)
    probe = reader.select(selector, max(start_ms, end_ms - PROBE_MS), end_ms, limits=limits)
    spacings = [
        float(np.median(np.diff(np.asarray(s.timestamps, np.int64))))
        for s in probe
        if len(s.timestamps) >= 2
    ]
    if not spacings:
        return max(fallback_ms, _snap(floor))
    return _snap(max(float(np.percentile(spacings, 90)), floor))


def _snap(interval_ms: float) -> int:
    """The usual scrape interval at or just above ``interval_ms`` (15.2 s of spacing is a
    15 s interval with jitter)."""
    return next((1000 * s for s in SNAP_STEPS_S if 1000 * s >= 0.95 * interval_ms), 3_600_000)


@dataclass
class BucketSet:
    """Series on ``grid`` with several bucket aggregates: ``aggs[name][i]`` for ``labels[i]``.

    Aggregates are those of the rollup tiers (``min``, ``max``, ``sum``,
    ``count``, ``last``) plus ``avg`` (sum / count); NaN where a bucket has no
    samples.
    """

    grid: Grid
    source: str
    labels: list[LabelSet]
    aggs: dict[str, np.ndarray]


def fetch_buckets(
    reader: SampleReader,
    selector: Selector,
    grid: Grid,
    aggregates: tuple[str, ...],
    *,
    max_series: int,
    max_samples: int | None = None,
) -> BucketSet:
    """Several bucket aggregates of every series matching ``selector``, in one read.

    From the coarsest rollup tier not coarser than the step when one covers
    the range (combined to the step: min of mins, sum of sums…), else from
    raw samples bucketed here.
    """
    end = grid.time(grid.size - 1) + grid.step_ms - 1
    limits = QueryLimits(max_series=max_series, max_samples=max_samples)
    need = tuple(
        sorted(
            {a for a in aggregates if a != "avg"}
            | ({"sum", "count"} if "avg" in aggregates else set())
        )
    )
    cols: RollupColumns | None
    if isinstance(reader, RollupColumnsReader):
        cols = reader.select_rollup_columns(
            selector, grid.start_ms, end, grid.step_ms, aggregates=need, limits=limits
        )
    else:
        rollups = reader.select_rollup(selector, grid.start_ms, end, grid.step_ms, limits=limits)
        cols = RollupColumns.of(rollups, rollups[0].resolution_ms) if rollups else None
    source = f"tier:{cols.resolution_ms}" if cols is not None and len(cols) else "raw"
    if cols is None or not len(cols) or grid.step_ms % cols.resolution_ms:
        raw = reader.select(selector, grid.start_ms, end, limits=limits)
        labels = [s.labels for s in raw]
        if raw:
            sid = np.concatenate(
                [np.full(len(s.timestamps), i, np.int64) for i, s in enumerate(raw)]
            )
            ts = np.concatenate([np.asarray(s.timestamps, np.int64) for s in raw])
            vals = np.concatenate([np.asarray(s.values, np.float64) for s in raw])
            parts = rollup_many(sid, ts, vals, grid.step_ms)
        else:
            parts = rollup_many(
                np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), grid.step_ms
            )
        source = "raw"
    else:
        c = cols.in_order()
        labels = list(c.labels)
        nil = np.zeros(len(c.timestamps))

        def col(a: np.ndarray | None) -> np.ndarray:
            return nil if a is None else a  # an aggregate not read (and not wanted)

        parts = coarsen_many(
            c.series_index,
            c.timestamps,
            col(c.min),
            col(c.max),
            col(c.sum),
            col(c.count).astype(np.int64),
            col(c.last),
            grid.step_ms,
        )
    sid, start, mn, mx, sm, cnt, last = parts
    idx = (start - grid.start_ms) // grid.step_ms
    keep = (idx >= 0) & (idx < grid.size)
    by_name = {"min": mn, "max": mx, "sum": sm, "count": cnt.astype(np.float64), "last": last}
    out: dict[str, np.ndarray] = {}
    for name in need:
        m = np.full((len(labels), grid.size), np.nan)
        m[sid[keep], idx[keep]] = by_name[name][keep]
        out[name] = m
    if "avg" in aggregates:
        with np.errstate(invalid="ignore", divide="ignore"):
            out["avg"] = out["sum"] / out["count"]
    return BucketSet(grid, source, labels, {a: out[a] for a in aggregates})
