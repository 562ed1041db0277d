"""An in-memory ``Store``: the fake for testing code that sits above storage.

It keeps every sample in Python lists per series and recomputes rollups on
read; it is exact and simple, not fast, and keeps nothing across restarts.
The real backends are tested against the same contract
(``tests/storage/test_contract.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from perfintel.batch import SampleBatch
from perfintel.model import LabelSet, Selector
from perfintel.storage.base import (
    AppendResult,
    FlushReport,
    QueryLimits,
    SeriesRollup,
    SeriesSamples,
    StoreSize,
    StoreStats,
    check_limits,
    label_names_of,
    label_values_of,
    rollups_from_raw,
)
from perfintel.storage.samples import dedupe_last_wins, in_range


class MemoryStore:
    def __init__(self, rollup_resolutions_ms: Sequence[int] = (300_000, 3_600_000)) -> None:
        self._lock = threading.Lock()
        self._ts: dict[LabelSet, list[np.ndarray]] = {}
        self._vals: dict[LabelSet, list[np.ndarray]] = {}
        self.rollup_resolutions_ms = sorted(rollup_resolutions_ms)

    def append(self, batch: SampleBatch) -> AppendResult:
        with self._lock:
            for labels, ts, vals in batch.iter_series():
                self._ts.setdefault(labels, []).append(ts.copy())
                self._vals.setdefault(labels, []).append(vals.copy())
        return AppendResult(accepted=len(batch))

    def _series_data(self, labels: LabelSet) -> tuple[np.ndarray, np.ndarray]:
        ts, vals = dedupe_last_wins(
            np.concatenate(self._ts[labels]), np.concatenate(self._vals[labels])
        )
        self._ts[labels], self._vals[labels] = [ts], [vals]
        return ts, vals

    def select(
        self, selector: Selector, start_ms: int, end_ms: int, *, limits: QueryLimits | None = None
    ) -> list[SeriesSamples]:
        out: list[SeriesSamples] = []
        n = 0
        with self._lock:
            for labels in sorted(self._ts):
                if not selector.matches(labels):
                    continue
                ts, vals = self._series_data(labels)
                sl = in_range(ts, start_ms, end_ms)
                if sl.stop > sl.start:
                    out.append(SeriesSamples(labels, ts[sl], vals[sl]))
                    n += sl.stop - sl.start
                    check_limits(limits, len(out), n)
        return out

    def select_rollup(
        self,
        selector: Selector,
        start_ms: int,
        end_ms: int,
        resolution_ms: int,
        *,
        limits: QueryLimits | None = None,
    ) -> list[SeriesRollup] | None:
        return rollups_from_raw(
            self, selector, start_ms, end_ms, resolution_ms, self.rollup_resolutions_ms, limits
        )

    def series(
        self, selectors: Sequence[Selector], start_ms: int, end_ms: int, *, limit: int | None = None
    ) -> list[LabelSet]:
        out = []
        with self._lock:
            for labels in sorted(self._ts):
                if selectors and not any(s.matches(labels) for s in selectors):
                    continue
                ts, _ = self._series_data(labels)
                sl = in_range(ts, start_ms, end_ms)
                if sl.stop > sl.start:
                    out.append(labels)
                    if limit and len(out) >= limit:
                        break
        return out

    def label_names(self, selectors: Sequence[Selector], start_ms: int, end_ms: int) -> list[str]:
        return label_names_of(self.series(selectors, start_ms, end_ms))

    def label_values(
        self, name: str, selectors: Sequence[Selector], start_ms: int, end_ms: int
    ) -> list[str]:
        return label_values_of(self.series(selectors, start_ms, end_ms), name)

    def stats(self) -> StoreStats:
        with self._lock:
            return StoreStats(
                series=len(self._ts),
                samples_in_head=sum(sum(len(a) for a in v) for v in self._ts.values()),
                disk_bytes=0,
            )

    def size(self) -> StoreSize:
        stats = self.stats()
        return StoreSize(stats.series, stats.samples_in_head, 0)

    def flush(self, *, compact: bool = False) -> FlushReport:
        return FlushReport()  # every sample is visible as soon as append returns

    def close(self) -> None:
        pass
