"""The series index: label sets ↔ dense integer ids, and postings for matching.

Ids are assigned in order of first appearance and never reused, so the
write-ahead log can refer to series by id. Matching works on the distinct
values of a label (a regex runs once per value, never once per series) and
combines boolean masks over the id space.

Memory (it holds one entry per series, so it is kept compact): each distinct
``(name, value)`` pair is one tuple shared by every label set that has it, so
a label set costs its outer tuple plus the pairs no other series has. Postings
are not per-value lists of Python ints: per label name, two int32 columns
(series id, value code) that grow by doubling, with one entry per series that
has the label; a matcher compares value codes over that column.

Thread-safety: ``add`` (and so ``resolve``) is called under the store's
append lock; readers take a consistent snapshot (id count, column lengths)
under the index's own lock and never see a column entry past their id count.
Columns are only appended to: growing one copies it into a new array, so a
snapshot's arrays stay valid.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from perfintel.model import LabelSet, MatchOp, Selector


class _Column:
    """One label name: ``(series id, value code)`` per series that has the label."""

    __slots__ = ("codes", "n", "name", "sids", "value_code", "values")

    def __init__(self, name: str) -> None:
        self.name = name
        self.sids = np.empty(64, np.int32)
        self.codes = np.empty(64, np.int32)
        self.n = 0
        self.value_code: dict[str, int] = {}  # value -> code (index into ``values``)
        self.values: list[tuple[str, str]] = []  # code -> the shared (name, value) pair

    def append(self, sid: int, code: int) -> None:
        n = self.n
        if n == len(self.sids):
            self.sids = np.concatenate([self.sids, np.empty(n, np.int32)])
            self.codes = np.concatenate([self.codes, np.empty(n, np.int32)])
        self.sids[n] = sid
        self.codes[n] = code
        self.n = n + 1


class _View(NamedTuple):
    sids: np.ndarray
    codes: np.ndarray
    column: _Column
    n_values: int


_EMPTY = _View(np.empty(0, np.int32), np.empty(0, np.int32), _Column(""), 0)


class SeriesIndex:
    def __init__(self) -> None:
        self._ids: dict[LabelSet, int] = {}
        self.labels: list[LabelSet] = []
        self._columns: dict[str, _Column] = {}
        self._lock = threading.Lock()
        self.min_ts = np.empty(0, np.int64)
        self.max_ts = np.empty(0, np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def get(self, labels: LabelSet) -> int | None:
        return self._ids.get(labels)

    def add(self, labels: LabelSet, sid: int | None = None) -> int:
        """Register a new series (``sid`` given when replaying a log or loading the table)."""
        with self._lock:
            if sid is None:
                sid = len(self.labels)
            if sid != len(self.labels):
                raise ValueError(
                    f"series ids must be dense: got {sid}, expected {len(self.labels)}"
                )
            pairs = []
            for k, v in labels:
                col = self._columns.get(k)
                if col is None:
                    k = sys.intern(k)
                    col = self._columns[k] = _Column(k)
                code = col.value_code.get(v)
                if code is None:
                    # One shared pair per distinct (name, value): equal values of
                    # different series are one string without interning them.
                    code = col.value_code[v] = len(col.values)
                    col.values.append((col.name, v))
                pairs.append(col.values[code])
                col.append(sid, code)
            stored = tuple(pairs)
            self._ids[stored] = sid
            if sid >= len(self.min_ts):
                grow = max(1024, len(self.min_ts))
                self.min_ts = np.concatenate([self.min_ts, np.full(grow, np.iinfo(np.int64).max)])
                self.max_ts = np.concatenate([self.max_ts, np.full(grow, np.iinfo(np.int64).min)])
            self.labels.append(stored)  # last: readers size their view by len(labels)
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

    def _snapshot(self, names: Iterable[str]) -> tuple[int, dict[str, _View]]:
        """The id count and, per label name, its columns as of now."""
        with self._lock:
            n = len(self.labels)
            cols = {}
            for name in names:
                col = self._columns.get(name)
                if col is not None:
                    cols[name] = _View(col.sids[: col.n], col.codes[: col.n], col, len(col.values))
            return n, cols

    def match(self, selector: Selector) -> np.ndarray:
        """Sorted ids of series whose labels satisfy every matcher."""
        n, cols = self._snapshot({m.name for m in selector.matchers})
        mask = np.ones(n, bool)
        for m in selector.matchers:
            view = cols.get(m.name, _EMPTY)
            sids, codes = view.sids, view.codes
            hit = np.zeros(n, bool)
            if m.op is MatchOp.EQ and m.value:
                # A value added after the snapshot has a code no snapshot entry holds.
                code = view.column.value_code.get(m.value)
                if code is not None:
                    hit[sids[codes == code]] = True
            else:
                # Build from the values that match; absent label counts as "".
                values = view.column.values[: view.n_values]
                ok = np.fromiter((m.matches(v) for _k, v in values), bool, len(values))
                if ok.any():
                    hit[sids[ok[codes]]] = True
                if m.matches(""):
                    has = np.zeros(n, bool)
                    has[sids] = True
                    hit |= ~has
            mask &= hit
            if not mask.any():
                break
        return np.flatnonzero(mask)

    def overlapping(self, sids: np.ndarray, start_ms: int, end_ms: int) -> np.ndarray:
        """Subset of ``sids`` that may hold samples in the range."""
        return sids[(self.max_ts[sids] >= start_ms) & (self.min_ts[sids] <= end_ms)]

    def label_names(self) -> list[str]:
        return sorted(self._columns)
