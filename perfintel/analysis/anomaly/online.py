"""Many series at once: per-series states held in numpy arrays.

``OnlineRunner`` keeps the state of N series of one ``VectorModel`` (by default
the ``Ensemble``) as arrays with a leading series axis, and advances a whole
batch with one vectorised ``step`` per "round". It runs exactly the same model
code as the per-series ``Detector`` — its scores are identical to running one
``Detector`` per series over the same samples.

A batch may hold several samples of the same series: they are applied in
batch order (round r takes every series' r-th sample of the batch). NaN
samples score 0 and do not touch the state. Series ids are dense non-negative
integers (map label sets to ids in the caller); capacity grows on demand.
"""

from __future__ import annotations

import numpy as np

from perfintel.analysis.anomaly.base import StepOut, VectorModel, clean_values
from perfintel.analysis.anomaly.ensemble import Ensemble
from perfintel.errors import BadInputError


class OnlineRunner:
    def __init__(self, model: VectorModel | None = None, capacity: int = 1024) -> None:
        self.model = model or Ensemble()
        self.state = self.model.new_state(max(1, capacity))

    @property
    def capacity(self) -> int:
        return int(next(iter(self.state.values())).shape[0])

    def _ensure(self, max_id: int) -> None:
        if max_id >= self.capacity:
            cap = self.capacity
            while cap <= max_id:
                cap *= 2
            self.state = self.model.grow_state(self.state, cap)

    def update_many(self, series_ids: np.ndarray, ts: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Scores in [0, 1], one per input sample, in input order."""
        return self.update_many_full(series_ids, ts, values)["score"]

    def update_many_full(
        self, series_ids: np.ndarray, ts: np.ndarray, values: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Like ``update_many`` plus ``anomaly_score``, ``yhat``, ``yhat_lower``, ``yhat_upper``."""
        ids = np.asarray(series_ids, dtype=np.int64)
        ts = np.asarray(ts, dtype=np.int64)
        ok, x = clean_values(values)
        if ids.ndim != 1 or ids.shape != ts.shape or ids.shape != x.shape:
            raise BadInputError("series_ids, ts and values must be 1-D arrays of equal length")
        n = len(ids)
        out = {
            "score": np.zeros(n),
            "anomaly_score": np.full(n, np.nan),
            "yhat": np.full(n, np.nan),
            "yhat_lower": np.full(n, np.nan),
            "yhat_upper": np.full(n, np.nan),
        }
        if n == 0:
            return out
        if ids.min() < 0:
            raise BadInputError("series ids must be non-negative")
        self._ensure(int(ids.max()))
        pos = np.flatnonzero(ok)
        if len(pos) == 0:
            return out
        sid = ids[pos]
        order = np.argsort(sid, kind="stable")
        s_sorted = sid[order]
        k = np.arange(len(order))
        new_group = np.r_[True, s_sorted[1:] != s_sorted[:-1]]
        rank_sorted = k - np.maximum.accumulate(np.where(new_group, k, 0))
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = rank_sorted
        top = int(rank.max())
        for r in range(top + 1):
            sel = pos if top == 0 else pos[rank == r]
            res = self.model.step(self.state, ids[sel], ts[sel], x[sel])
            _scatter(out, sel, res)
        return out

    def get_state(self, series_id: int) -> bytes:
        """One series' state, in ``Detector.get_state`` format."""
        if not 0 <= series_id < self.capacity:
            raise BadInputError(f"unknown series id {series_id}")
        return self.model.dump(self.state, series_id)

    def set_state(self, series_id: int, data: bytes) -> None:
        one = self.model.load(data)
        self._ensure(series_id)
        for k, a in one.items():
            self.state[k][series_id] = a[0]

    def reset(self, series_id: int) -> None:
        fresh = self.model.new_state(1)
        for k, a in fresh.items():
            self.state[k][series_id] = a[0]


def _scatter(out: dict[str, np.ndarray], sel: np.ndarray, res: StepOut) -> None:
    out["score"][sel] = res.score
    if res.anomaly_score is not None:
        out["anomaly_score"][sel] = res.anomaly_score
    if res.yhat is not None:
        out["yhat"][sel] = res.yhat
    if res.lower is not None and res.upper is not None:
        out["yhat_lower"][sel] = res.lower
        out["yhat_upper"][sel] = res.upper
