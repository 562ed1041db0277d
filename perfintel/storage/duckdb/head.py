"""The head: samples not yet flushed to the database, in memory.

Appends are O(batch): each batch becomes an immutable segment. Reads need the
samples of a few series, so segments are sorted by series id lazily (merged
LSM-style into a small number of sorted runs) the first time a query looks.
Within a run, samples keep their write order, so "last write wins" survives.

A flush ``take``s everything; the taken samples stay readable until the flush
has committed them to the database and calls ``release`` (or ``restore``
puts them back when it failed), so no query ever misses samples in flight.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

_Parts = list[tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass
class _Run:
    sids: np.ndarray  # sorted
    ts: np.ndarray
    vals: np.ndarray


class Head:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: _Parts = []
        self._runs: list[_Run] = []
        self._taken: _Parts = []
        self._taken_run: _Run | None = None
        self.samples = 0

    def append(self, sids: np.ndarray, ts: np.ndarray, vals: np.ndarray) -> None:
        if not len(ts):
            return
        with self._lock:
            self._pending.append((sids, ts, vals))
            self.samples += len(ts)

    def _sorted_runs(self) -> list[_Run]:
        """Runs oldest first: the samples being flushed, then the current ones."""
        with self._lock:
            if self._pending:
                self._runs.append(_make_run(self._pending))
                self._pending = []
            if len(self._runs) > 4:
                self._runs = [_make_run([(r.sids, r.ts, r.vals) for r in self._runs])]
            if self._taken and self._taken_run is None:
                self._taken_run = _make_run(self._taken)
            taken = [self._taken_run] if self._taken_run is not None else []
            return taken + list(self._runs)

    def read(self, sids: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Samples of the given series in write order (older runs first)."""
        out: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        for run in self._sorted_runs():
            lo = np.searchsorted(run.sids, sids, "left")
            hi = np.searchsorted(run.sids, sids, "right")
            for sid, a, b in zip(sids.tolist(), lo.tolist(), hi.tolist(), strict=True):
                if b > a:
                    out.setdefault(sid, []).append((run.ts[a:b], run.vals[a:b]))
        return {
            sid: (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
            for sid, parts in out.items()
        }

    def take(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Hand everything to a flush, in write order; it stays readable until ``release``."""
        with self._lock:
            parts = [(r.sids, r.ts, r.vals) for r in self._runs] + self._pending
            self._runs, self._pending = [], []
            self._taken = self._taken + parts
            self._taken_run = None
            self.samples = 0
        if not parts:
            return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64)
        return (
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]),
        )

    def release(self) -> None:
        """The flush committed: forget the taken samples."""
        with self._lock:
            self._taken, self._taken_run = [], None

    def restore(self, sids: np.ndarray, ts: np.ndarray, vals: np.ndarray) -> None:
        """Put samples back (before anything written since) — held back or not flushed."""
        with self._lock:
            current = [(r.sids, r.ts, r.vals) for r in self._runs] + self._pending
            self._runs = []
            self._pending = [(sids, ts, vals), *current]
            self.samples += len(ts)


def _make_run(parts: _Parts) -> _Run:
    sids = np.concatenate([p[0] for p in parts])
    ts = np.concatenate([p[1] for p in parts])
    vals = np.concatenate([p[2] for p in parts])
    order = np.argsort(sids, kind="stable")
    return _Run(sids[order], ts[order], vals[order])
