"""The series index: label sets ↔ dense integer ids, and postings for matching.

Ids are assigned in order of first appearance and never reused, so the
write-ahead log can refer to series by id. Matching works on the distinct
values of a label (a regex runs once per value, never once per series) and
combines boolean masks over the id space.

Thread-safety: ``resolve`` is called under the store's append lock; readers
take a consistent snapshot of the id count, and lists are only appended to.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable

import numpy as np

from perfintel.model import LabelSet, MatchOp, Selector


class SeriesIndex:
    def __init__(self) -> None:
        self._ids: dict[LabelSet, int] = {}
        self.labels: list[LabelSet] = []
        # postings[name][value] -> list of ids
        self._postings: dict[str, dict[str, list[int]]] = {}
        self._lock = threading.Lock()
        self.min_ts = np.empty(0, np.int64)
        self.max_ts = np.empty(0, np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def get(self, labels: LabelSet) -> int | None:
        return self._ids.get(labels)

    def add(self, labels: LabelSet, sid: int | None = None) -> int:
        """Register a new series (``sid`` given when replaying a log or loading the table)."""
        # Interned strings: the same names and values recur across many series.
        labels = tuple((sys.intern(k), sys.intern(v)) for k, v in labels)
        with self._lock:
            if sid is None:
                sid = len(self.labels)
            if sid != len(self.labels):
                raise ValueError(
                    f"series ids must be dense: got {sid}, expected {len(self.labels)}"
                )
            self._ids[labels] = sid
            self.labels.append(labels)
            for k, v in labels:
                self._postings.setdefault(k, {}).setdefault(v, []).append(sid)
            if sid >= len(self.min_ts):
                grow = max(1024, len(self.min_ts))
                self.min_ts = np.concatenate([self.min_ts, np.full(grow, np.iinfo(np.int64).max)])
                self.max_ts = np.concatenate([self.max_ts, np.full(grow, np.iinfo(np.int64).min)])
        return sid

    def resolve(self, series: Iterable[LabelSet]) -> tuple[np.ndarray, list[tuple[int, LabelSet]]]:
        """Ids for label sets, registering unknown ones; returns (ids, newly added)."""
        ids = []
        new = []
        for ls in series:
            sid = self._ids.get(ls)
            if sid is None:
                sid = self.add(ls)
                new.append((sid, ls))
            ids.append(sid)
        return np.asarray(ids, dtype=np.int64), new

    def note_range(self, sids: np.ndarray, ts: np.ndarray) -> None:
        np.minimum.at(self.min_ts, sids, ts)
        np.maximum.at(self.max_ts, sids, ts)

    def match(self, selector: Selector) -> np.ndarray:
        """Sorted ids of series whose labels satisfy every matcher."""
        n = len(self.labels)
        mask = np.ones(n, bool)
        for m in selector.matchers:
            values = self._postings.get(m.name, {})
            if m.op is MatchOp.EQ and m.value:
                hit = np.zeros(n, bool)
                hit[values.get(m.value, [])] = True
            else:
                # Build from the values that match; absent label counts as "".
                hit = np.zeros(n, bool)
                for v, ids in list(values.items()):
                    if m.matches(v):
                        hit[ids] = True
                if m.matches(""):
                    has = np.zeros(n, bool)
                    for ids in list(values.values()):
                        has[ids] = True
                    hit |= ~has
            mask &= hit[:n]
            if not mask.any():
                break
        return np.flatnonzero(mask)

    def overlapping(self, sids: np.ndarray, start_ms: int, end_ms: int) -> np.ndarray:
        """Subset of ``sids`` that may hold samples in the range."""
        return sids[(self.max_ts[sids] >= start_ms) & (self.min_ts[sids] <= end_ms)]

    def label_names(self) -> list[str]:
        return sorted(self._postings)
