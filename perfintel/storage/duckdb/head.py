"""The head: samples not yet flushed to the database, in memory.

Appends are O(batch): each batch becomes an immutable segment. Reads need the
samples of a few series, so segments are sorted by series id lazily (merged
LSM-style into a small number of sorted runs) the first time a query looks.
Within a run, samples keep their write order, so "last write wins" survives.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np


@dataclass
class _Run:
    sids: np.ndarray  # sorted
    ts: np.ndarray
    vals: np.ndarray


class Head:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._runs: list[_Run] = []
        self.samples = 0
        self.min_ts: int | None = None

    def append(self, sids: np.ndarray, ts: np.ndarray, vals: np.ndarray) -> None:
        if not len(ts):
            return
        with self._lock:
            self._pending.append((sids, ts, vals))
            self.samples += len(ts)
            lo = int(ts.min())
            self.min_ts = lo if self.min_ts is None else min(self.min_ts, lo)

    def _sorted_runs(self) -> list[_Run]:
        with self._lock:
            if self._pending:
                self._runs.append(_make_run(self._pending))
                self._pending = []
            if len(self._runs) > 4:
                merged = _make_run([(r.sids, r.ts, r.vals) for r in self._runs])
                self._runs = [merged]
            return list(self._runs)

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
        """Remove and return everything, in write order."""
        with self._lock:
            parts = [(r.sids, r.ts, r.vals) for r in self._runs] + self._pending
            self._runs, self._pending = [], []
            self.samples = 0
            self.min_ts = None
        if not parts:
            return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64)
        return (
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]),
        )

    def restore(self, sids: np.ndarray, ts: np.ndarray, vals: np.ndarray) -> None:
        """Put back samples taken by ``take`` whose flush failed (they go before newer writes)."""
        with self._lock:
            self._pending.insert(0, (sids, ts, vals))
            self._runs_to_pending()
            self.samples += len(ts)
            if len(ts):
                lo = int(ts.min())
                self.min_ts = lo if self.min_ts is None else min(self.min_ts, lo)

    def _runs_to_pending(self) -> None:
        self._pending[1:1] = [(r.sids, r.ts, r.vals) for r in self._runs]
        self._runs = []


def _make_run(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> _Run:
    sids = np.concatenate([p[0] for p in parts])
    ts = np.concatenate([p[1] for p in parts])
    vals = np.concatenate([p[2] for p in parts])
    order = np.argsort(sids, kind="stable")
    return _Run(sids[order], ts[order], vals[order])
