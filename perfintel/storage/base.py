"""The storage contract: what every sample store offers the rest of perfintel.

Reads return whole series as numpy arrays; writes take columnar batches. The
query layer (PromQL and the simple series query), analysis runners and the API
depend on these Protocols only, so the embedded DuckDB store, the in-memory
store used to test the code above it, and the VictoriaMetrics backend are
interchangeable.

Time ranges are inclusive on both ends and in milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from perfintel.batch import SampleBatch
from perfintel.errors import QueryLimitError
from perfintel.model import LabelSet, Selector
from perfintel.storage.samples import rollup


@dataclass
class SeriesSamples:
    """Raw samples of one series, sorted by timestamp, one sample per timestamp."""

    labels: LabelSet
    timestamps: np.ndarray  # int64 ms
    values: np.ndarray  # float64


@dataclass
class SeriesRollup:
    """Downsampled buckets of one series from a rollup tier.

    Bucket ``i`` covers ``[timestamps[i], timestamps[i] + resolution_ms)``;
    only buckets holding at least one sample are present. Staleness markers
    are excluded from the aggregates; ordinary NaNs propagate into sum/min/max.
    """

    labels: LabelSet
    resolution_ms: int
    timestamps: np.ndarray  # int64 bucket starts
    min: np.ndarray
    max: np.ndarray
    sum: np.ndarray
    count: np.ndarray  # int64
    last: np.ndarray


#: The aggregates a rollup bucket holds (besides its start).
ROLLUP_AGGREGATES = ("min", "max", "sum", "count", "last")


@dataclass
class RollupColumns:
    """Buckets of many series from one rollup tier, as flat arrays (one read, no per-series objects).

    Row ``j`` is the bucket starting at ``timestamps[j]`` of series
    ``labels[series_index[j]]``. ``labels`` are sorted and each has at least one
    row. Rows may come in any order (as the store read them) unless ``ordered``:
    then grouped by series in ``labels`` order, by bucket start within a series
    (``in_order`` gives that form). Aggregates that were not asked for are
    ``None``. Bucket semantics as in ``SeriesRollup``.
    """

    labels: list[LabelSet]
    resolution_ms: int
    series_index: np.ndarray  # int64 per row
    timestamps: np.ndarray  # int64 bucket starts
    min: np.ndarray | None = None
    max: np.ndarray | None = None
    sum: np.ndarray | None = None
    count: np.ndarray | None = None  # int64
    last: np.ndarray | None = None
    ordered: bool = False

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def offsets(self) -> np.ndarray:
        """``(n + 1,)`` row offsets of each series (only meaningful when ``ordered``)."""
        out = np.zeros(len(self.labels) + 1, np.int64)
        np.cumsum(np.bincount(self.series_index, minlength=len(self.labels)), out=out[1:])
        return out

    def in_order(self) -> RollupColumns:
        """The same rows grouped by series (``labels`` order), by bucket within a series;
        rows with equal series and bucket keep their order."""
        if self.ordered:
            return self
        idx, ts = self.series_index, self.timestamps
        order: np.ndarray | None = None
        if len(idx) > 1 and not bool(np.all(idx[1:] >= idx[:-1])):
            # stable; a radix sort for 16-bit keys
            key = idx.astype(np.uint16) if len(self.labels) <= 1 << 16 else idx
            order = np.argsort(key, kind="stable")
            idx, ts = idx[order], ts[order]
        if len(idx) > 1 and bool(np.any((ts[1:] < ts[:-1]) & (idx[1:] == idx[:-1]))):
            order = np.lexsort((self.timestamps, self.series_index))
        if order is None:
            return replace(self, ordered=True)

        def pick(c: np.ndarray | None) -> np.ndarray | None:
            return None if c is None else c[order]

        return RollupColumns(
            self.labels,
            self.resolution_ms,
            self.series_index[order],
            self.timestamps[order],
            pick(self.min),
            pick(self.max),
            pick(self.sum),
            pick(self.count),
            pick(self.last),
            ordered=True,
        )

    @classmethod
    def of(cls, rollups: Sequence[SeriesRollup], resolution_ms: int) -> RollupColumns:
        """The flat form of per-series rollups (of one resolution, sorted by labels)."""
        counts = [len(r.timestamps) for r in rollups]

        def cat(arrays: list[np.ndarray], dtype: type) -> np.ndarray:
            return (
                np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.empty(0, dtype)
            )

        return cls(
            [r.labels for r in rollups],
            resolution_ms,
            np.repeat(np.arange(len(rollups), dtype=np.int64), counts),
            cat([r.timestamps for r in rollups], np.int64),
            cat([r.min for r in rollups], np.float64),
            cat([r.max for r in rollups], np.float64),
            cat([r.sum for r in rollups], np.float64),
            cat([r.count for r in rollups], np.int64),
            cat([r.last for r in rollups], np.float64),
            ordered=True,
        )

    def per_series(self) -> list[SeriesRollup]:
        """One ``SeriesRollup`` per series (every aggregate must have been read)."""
        if not self.labels:
            return []
        cols = self.in_order()
        aggs = (cols.min, cols.max, cols.sum, cols.count, cols.last)
        if any(c is None for c in aggs):
            raise ValueError("per-series rollups need every aggregate")
        out = []
        bounds = cols.offsets.tolist()
        for i, ls in enumerate(cols.labels):
            sl = slice(bounds[i], bounds[i + 1])
            mn, mx, sm, cnt, last = (c[sl] for c in aggs if c is not None)
            out.append(
                SeriesRollup(ls, cols.resolution_ms, cols.timestamps[sl], mn, mx, sm, cnt, last)
            )
        return out


@runtime_checkable
class RollupColumnsReader(Protocol):
    """A store that can return rollups of many series as flat arrays (the DuckDB store)."""

    def select_rollup_columns(
        self,
        selector: Selector,
        start_ms: int,
        end_ms: int,
        resolution_ms: int,
        *,
        aggregates: Sequence[str] = ROLLUP_AGGREGATES,
        limits: QueryLimits | None = None,
    ) -> RollupColumns | None:
        """What ``select_rollup`` returns, flat, with only ``aggregates`` read."""
        ...


@dataclass(frozen=True)
class QueryLimits:
    """Bounds a single read may not cross; crossing one raises ``QueryLimitError``."""

    max_series: int | None = None
    max_samples: int | None = None


@dataclass
class AppendResult:
    accepted: int
    rejected: int = 0
    errors: list[str] = field(default_factory=list)
    #: The samples stored, when some of the batch were refused (else the whole batch).
    kept: SampleBatch | None = None


@dataclass
class StoreSize:
    """What a store holds, cheap to read (no scan): the self-metrics gauges poll it."""

    series: int
    samples_in_head: int  # accepted but not yet in the store's durable layout
    disk_bytes: int  # 0 when the samples live elsewhere (a remote backend)


@dataclass
class StoreStats:
    series: int
    samples_in_head: int
    disk_bytes: int
    tiers: dict[str, int] = field(default_factory=dict)  # tier name -> stored points


@dataclass
class FlushReport:
    """What ``flush`` did; ``flushed`` counts samples moved out of the head."""

    flushed: int = 0


@runtime_checkable
class SampleReader(Protocol):
    def select(
        self, selector: Selector, start_ms: int, end_ms: int, *, limits: QueryLimits | None = None
    ) -> list[SeriesSamples]:
        """Raw samples of every series matching ``selector`` with data in the range."""
        ...

    def select_rollup(
        self,
        selector: Selector,
        start_ms: int,
        end_ms: int,
        resolution_ms: int,
        *,
        limits: QueryLimits | None = None,
    ) -> list[SeriesRollup] | None:
        """Buckets from the coarsest tier whose resolution divides into ``resolution_ms``
        (i.e. tier resolution <= resolution_ms); ``None`` when no tier fits or the tier
        does not cover the range, so the caller falls back to ``select``."""
        ...

    def series(
        self, selectors: Sequence[Selector], start_ms: int, end_ms: int, *, limit: int | None = None
    ) -> list[LabelSet]:
        """Label sets of series matching any selector (all series when none) with data in range."""
        ...

    def label_names(
        self, selectors: Sequence[Selector], start_ms: int, end_ms: int
    ) -> list[str]: ...

    def label_values(
        self, name: str, selectors: Sequence[Selector], start_ms: int, end_ms: int
    ) -> list[str]: ...


@runtime_checkable
class SampleWriter(Protocol):
    def append(self, batch: SampleBatch) -> AppendResult:
        """Store a batch; when this returns, the samples are durable."""
        ...


@runtime_checkable
class Store(SampleReader, SampleWriter, Protocol):
    def stats(self) -> StoreStats:
        """Full statistics (may scan the store: not for a hot path)."""
        ...

    def size(self) -> StoreSize:
        """Cheap counters (series, head samples, bytes on disk)."""
        ...

    def flush(self, *, compact: bool = False) -> FlushReport:
        """Make every acknowledged sample visible to reads and durable in the store's
        final layout now; ``compact`` also does the store's housekeeping."""
        ...

    def close(self) -> None: ...


@dataclass
class SnapshotReport:
    """What a store's ``snapshot`` wrote: where, how many bytes, in how long.

    ``samples_in_wal`` is how many samples the copied write-ahead log holds
    (not yet in the database at the snapshot's instant; replayed on open)."""

    path: Path
    bytes: int
    series: int
    samples_in_wal: int
    seconds: float


@runtime_checkable
class SnapshotWriter(Protocol):
    """A store that can copy itself, consistently, while writes go on (the admin snapshot)."""

    def snapshot(self, target: Path) -> SnapshotReport: ...


def label_names_of(series: Sequence[LabelSet]) -> list[str]:
    """Sorted distinct label names of some series (shared by the stores)."""
    return sorted({k for ls in series for k, _ in ls})


def label_values_of(series: Sequence[LabelSet], name: str) -> list[str]:
    """Sorted distinct values of label ``name`` among some series."""
    return sorted({v for ls in series for k, v in ls if k == name})


def check_limits(limits: QueryLimits | None, series: int, samples: int) -> None:
    """Raise ``QueryLimitError`` once a read has crossed one of ``limits``."""
    if limits is None:
        return
    if limits.max_series is not None and series > limits.max_series:
        raise QueryLimitError(
            f"query selects more than {limits.max_series} series (limit max_series)"
        )
    if limits.max_samples is not None and samples > limits.max_samples:
        raise QueryLimitError(
            f"query loads more than {limits.max_samples} samples (limit max_samples)"
        )


def rollups_from_raw(
    reader: SampleReader,
    selector: Selector,
    start_ms: int,
    end_ms: int,
    resolution_ms: int,
    resolutions_ms: Sequence[int],
    limits: QueryLimits | None = None,
) -> list[SeriesRollup] | None:
    """``select_rollup`` for a store without tiers of its own: buckets computed from raw samples.

    The resolution is the coarsest of ``resolutions_ms`` that fits into ``resolution_ms``
    (``None`` when none does), as a store with tiers would answer.
    """
    fitting = [r for r in sorted(resolutions_ms) if r <= resolution_ms]
    if not fitting:
        return None
    res = fitting[-1]
    lo = start_ms - start_ms % res
    out = []
    for s in reader.select(selector, lo, end_ms, limits=limits):
        b, mn, mx, sm, cnt, last = rollup(s.timestamps, s.values, res)
        keep = (b >= lo) & (b <= end_ms)
        if keep.any():
            out.append(
                SeriesRollup(
                    s.labels, res, b[keep], mn[keep], mx[keep], sm[keep], cnt[keep], last[keep]
                )
            )
    return out
