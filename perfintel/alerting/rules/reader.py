"""A read-through cache of one evaluation round, shared by the rules evaluated at one time.

Thousands of rules read the same few hundred metrics over the same window
(``cpu{instance="a"} > 0.9``, ``cpu{instance="b"} > 0.9`` …). ``RoundReader``
fetches each metric name once — every series of that name over a window —
and answers each rule's selector by filtering those series in memory and
slicing them to the asked range. ``prefetch`` reads many names in one store
query (a group asks for every name its rules read before it evaluates them).
Selectors without an exact metric name, ranges outside what was fetched,
and names with more series than ``max_series_per_name`` or more samples in the
window than ``max_samples_per_name`` go to the store as they are: for a metric
of millions of samples, one rule's narrow selector (``latency{service="a"}``)
is far cheaper than reading the whole metric every round.

The cache lives for one round: the store may change between rounds, and
``forget(name)`` drops a name whose samples a recording rule just wrote.
It is bounded by ``max_samples`` cached samples (beyond, reads pass through).
Not thread-safe: one round runs on one thread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from perfintel.errors import QueryLimitError
from perfintel.model import (
    METRIC_NAME,
    LabelSet,
    MatchOp,
    Selector,
    metric_name,
    selector_from_pairs,
)
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
        max_samples_per_name: int = 200_000,
    ) -> None:
        self.store = store
        self.max_series_per_name = max_series_per_name
        self.max_samples_per_name = max_samples_per_name
        self.max_samples = max_samples
        #: name -> (start, end, every series of that name over [start, end])
        self._by_name: dict[str, tuple[int, int, list[SeriesSamples]]] = {}
        self._too_big: set[str] = set()
        #: (name, label) -> label value -> series of that name with that value
        self._indexes: dict[tuple[str, str], dict[str, list[SeriesSamples]]] = {}
        self._samples = 0
        self.fetches = 0
        self.hits = 0

    def forget(self, name: str) -> None:
        for key in [k for k in self._indexes if k[0] == name]:
            del self._indexes[key]
        entry = self._by_name.pop(name, None)
        if entry is not None:
            self._samples -= sum(len(s.timestamps) for s in entry[2])

    def _index(self, name: str, label: str) -> dict[str, list[SeriesSamples]]:
        key = (name, label)
        idx = self._indexes.get(key)
        if idx is None:
            idx = {}
            for s in self._by_name[name][2]:
                idx.setdefault(dict(s.labels).get(label, ""), []).append(s)
            self._indexes[key] = idx
        return idx

    def _keep(self, name: str, start: int, end: int, series: list[SeriesSamples]) -> None:
        self.forget(name)
        self._by_name[name] = (start, end, series)
        self._samples += sum(len(s.timestamps) for s in series)

    def prefetch(self, windows: Mapping[str, int], end_ms: int) -> None:
        """Read every name of ``windows`` (name -> how far back, ms) ending at ``end_ms``,
        in as few store queries as the names' reaches allow (one per distinct reach)."""
        by_back: dict[int, list[str]] = {}
        for name, back in windows.items():
            have = self._by_name.get(name)
            if name in self._too_big or (have and have[0] <= end_ms - back and have[1] >= end_ms):
                continue
            by_back.setdefault(int(back), []).append(name)
        for back, names in by_back.items():
            if self._samples > self.max_samples:
                return
            start = end_ms - back
            for i in range(0, len(names), 500):
                self._fetch_names(names[i : i + 500], start, end_ms)

    def _name_limits(self, names: int) -> QueryLimits:
        # one sample budget for a read of many names too: a huge name among small ones
        # then costs at most the budget per halving, never its whole size
        return QueryLimits(
            max_series=self.max_series_per_name * names, max_samples=self.max_samples_per_name
        )

    def _fetch_names(self, names: list[str], start: int, end: int) -> None:
        # metric names hold only [a-zA-Z0-9_:], nothing a regex would read specially
        sel = selector_from_pairs([(METRIC_NAME, "=~", "|".join(sorted(names)))])
        self.fetches += 1
        try:
            found = self.store.select(sel, start, end, limits=self._name_limits(len(names)))
        except QueryLimitError:
            if len(names) == 1:
                self._too_big.add(names[0])
                return
            # halves until the names too big to cache are alone (a few reads for one)
            half = len(names) // 2
            self._fetch_names(names[:half], start, end)
            self._fetch_names(names[half:], start, end)
            return
        grouped: dict[str, list[SeriesSamples]] = {n: [] for n in names}
        for s in found:
            grouped.setdefault(metric_name(s.labels), []).append(s)
        for n, series in grouped.items():
            if (
                len(series) > self.max_series_per_name
                or sum(len(x.timestamps) for x in series) > self.max_samples_per_name
            ):
                self._too_big.add(n)
            else:
                self._keep(n, start, end, series)

    def select(
        self, selector: Selector, start_ms: int, end_ms: int, *, limits: QueryLimits | None = None
    ) -> list[SeriesSamples]:
        name = _exact_name(selector)
        start_ms, end_ms = int(start_ms), int(end_ms)
        if name is None or name in self._too_big:
            return self.store.select(selector, start_ms, end_ms, limits=limits)
        have = self._by_name.get(name)
        if have is not None and have[0] <= start_ms and have[1] >= end_ms:
            self.hits += 1
            series = have[2]
            exact = have[0] == start_ms and have[1] == end_ms
        else:
            if self._samples > self.max_samples:
                return self.store.select(selector, start_ms, end_ms, limits=limits)
            self.fetches += 1
            try:
                series = self.store.select(
                    selector_from_pairs([(METRIC_NAME, "=", name)]),
                    start_ms,
                    end_ms,
                    limits=self._name_limits(1),
                )
            except QueryLimitError:
                self._too_big.add(name)
                return self.store.select(selector, start_ms, end_ms, limits=limits)
            self._keep(name, start_ms, end_ms, series)
            exact = True
        rest = [m for m in selector.matchers if not (m.name == METRIC_NAME and m.op is MatchOp.EQ)]
        candidates: Sequence[SeriesSamples] = series
        eq = next((m for m in rest if m.op is MatchOp.EQ), None)
        if eq is not None:  # the equality matcher through an index of the name's label values
            candidates = self._index(name, eq.name).get(eq.value, [])
            rest = [m for m in rest if m is not eq]
        out = []
        for s in candidates:
            if rest:
                labels = dict(s.labels)
                if not all(m.matches(labels.get(m.name, "")) for m in rest):
                    continue
            if not exact:
                lo, hi = np.searchsorted(s.timestamps, [start_ms, end_ms + 1])
                if hi <= lo:
                    continue
                if hi - lo != len(s.timestamps):
                    s = SeriesSamples(s.labels, s.timestamps[lo:hi], s.values[lo:hi])
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
