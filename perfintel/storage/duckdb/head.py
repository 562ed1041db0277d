"""The head: samples not yet flushed to the database, in memory.

Appends are O(batch): each batch becomes an immutable segment. Reads need the
samples of a few series, so segments are sorted by series id lazily (merged
LSM-style into a small number of sorted runs) the first time a query looks.
Within a run, samples keep their write order, so "last write wins" survives.

A flush ``take``s everything; the taken samples stay readable until the flush
has committed them to the database and calls ``release`` (or ``restore``
puts them back when it failed), so no query ever misses samples in flight.

Memory: series ids are kept as int32 (ids are dense, far below 2**31), so a
sample costs 20 bytes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

_Parts = list[tuple[np.ndarray, np.ndarray, np.ndarray]]
_SID = np.int32


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
        sids = sids.astype(_SID, copy=False)
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
        runs = self._sorted_runs()
        want = sids.astype(_SID) if runs else sids  # same dtype: no conversion of a run
        for run in runs:
            lo = np.searchsorted(run.sids, want, "left")
            hi = np.searchsorted(run.sids, want, "right")
            for sid, a, b in zip(sids.tolist(), lo.tolist(), hi.tolist(), strict=True):
                if b > a:
                    out.setdefault(sid, []).append((run.ts[a:b], run.vals[a:b]))
        return {
            sid: (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
            for sid, parts in out.items()
        }

    def parts(self) -> _Parts:
        """The current (not taken) samples as segments, oldest first; they are never modified."""
        with self._lock:
            return [(r.sids, r.ts, r.vals) for r in self._runs] + self._pending

    def take_parts(self) -> _Parts:
        """Hand everything to a flush as segments in write order; it stays readable until ``release``."""
        with self._lock:
            parts = [(r.sids, r.ts, r.vals) for r in self._runs] + self._pending
            self._runs, self._pending = [], []
            self._taken = self._taken + parts
            self._taken_run = None
            self.samples = 0
        return parts

    def take(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``take_parts`` concatenated."""
        parts = self.take_parts()
        if not parts:
            return np.empty(0, _SID), np.empty(0, np.int64), np.empty(0, np.float64)
        return (
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]),
        )

    def release(self) -> None:
        """The flush committed: forget the taken samples."""
        with self._lock:
            self._taken, self._taken_run = [], None

    def restore_parts(self, parts: _Parts) -> None:
        """``restore`` segments given in write order (a failed flush puts back what it took)."""
        for sids, ts, vals in reversed(parts):
            if len(ts):
                self.restore(sids, ts, vals)

    def restore(self, sids: np.ndarray, ts: np.ndarray, vals: np.ndarray) -> None:
        """Put samples back (before anything written since) — held back or not flushed."""
        sids = sids.astype(_SID, copy=False)
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
