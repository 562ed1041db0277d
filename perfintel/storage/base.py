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
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from perfintel.errors import QueryLimitError
from perfintel.ingest.batch import SampleBatch
from perfintel.model import LabelSet, Selector


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


@dataclass
class StoreStats:
    series: int
    samples_in_head: int
    disk_bytes: int
    tiers: dict[str, int] = field(default_factory=dict)  # tier name -> stored points


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
    def stats(self) -> StoreStats: ...

    def close(self) -> None: ...


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
