"""A read-through cache of one evaluation round, shared by the rules evaluated at one time.

Thousands of rules read the same few hundred metrics over the same window
(``cpu{instance="a"} > 0.9``, ``cpu{instance="b"} > 0.9`` …). ``RoundReader``
fetches each metric name once per ``(start, end)`` — every series of that
name — and answers each rule's selector by filtering those series in memory.
Selectors without an exact metric name, and names with more series than
``max_series_per_name``, go to the store as they are.

The cache lives for one round: the store may change between rounds, and
``forget(name)`` drops a name whose samples a recording rule just wrote.
It is bounded by ``max_samples`` cached samples (beyond, reads pass through).
Not thread-safe: one round runs on one thread.
"""

from __future__ import annotations

from collections.abc import Sequence

from perfintel.errors import QueryLimitError
from perfintel.model import METRIC_NAME, LabelSet, MatchOp, Selector, selector_from_pairs
from perfintel.storage.base import (
    QueryLimits,
    SampleReader,
    SeriesRollup,
    SeriesSamples,
    check_limits,
)


class RoundReader:
    """A ``SampleReader`` over ``store`` that fetches each metric name once per window."""

    def __init__(
        self,
        store: SampleReader,
        *,
        max_series_per_name: int = 10_000,
        max_samples: int = 20_000_000,
    ) -> None:
        self.store = store
        self.max_series_per_name = max_series_per_name
        self.max_samples = max_samples
        self._by_name: dict[tuple[str, int, int], list[SeriesSamples]] = {}
        self._too_big: set[str] = set()
        self._samples = 0
        self.fetches = 0
        self.hits = 0

    def forget(self, name: str) -> None:
        for key in [k for k in self._by_name if k[0] == name]:
            series = self._by_name.pop(key)
            self._samples -= sum(len(s.timestamps) for s in series)

    def select(
        self, selector: Selector, start_ms: int, end_ms: int, *, limits: QueryLimits | None = None
    ) -> list[SeriesSamples]:
        name = _exact_name(selector)
        if name is None or name in self._too_big:
            return self.store.select(selector, start_ms, end_ms, limits=limits)
        key = (name, int(start_ms), int(end_ms))
        series = self._by_name.get(key)
        if series is None:
            if self._samples > self.max_samples:
                return self.store.select(selector, start_ms, end_ms, limits=limits)
            self.fetches += 1
            try:
                series = self.store.select(
                    selector_from_pairs([(METRIC_NAME, "=", name)]),
                    start_ms,
                    end_ms,
                    limits=QueryLimits(max_series=self.max_series_per_name),
                )
            except QueryLimitError:
                self._too_big.add(name)
                return self.store.select(selector, start_ms, end_ms, limits=limits)
            self._by_name[key] = series
            self._samples += sum(len(s.timestamps) for s in series)
        else:
            self.hits += 1
        rest = [m for m in selector.matchers if not (m.name == METRIC_NAME and m.op is MatchOp.EQ)]
        if not rest:
            out = list(series)
        else:
            out = []
            for s in series:
                labels = dict(s.labels)
                if all(m.matches(labels.get(m.name, "")) for m in rest):
                    out.append(s)
        check_limits(limits, len(out), sum(len(s.timestamps) for s in out))
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
        return self.store.select_rollup(selector, start_ms, end_ms, resolution_ms, limits=limits)

    def series(
        self, selectors: Sequence[Selector], start_ms: int, end_ms: int, *, limit: int | None = None
    ) -> list[LabelSet]:
        return self.store.series(selectors, start_ms, end_ms, limit=limit)

    def label_names(self, selectors: Sequence[Selector], start_ms: int, end_ms: int) -> list[str]:
        return self.store.label_names(selectors, start_ms, end_ms)

    def label_values(
        self, name: str, selectors: Sequence[Selector], start_ms: int, end_ms: int
    ) -> list[str]:
        return self.store.label_values(name, selectors, start_ms, end_ms)


def _exact_name(selector: Selector) -> str | None:
    for m in selector.matchers:
        if m.name == METRIC_NAME and m.op is MatchOp.EQ:
            return m.value
    return None
