"""Many series at once: per-series states held in one state bank.

``OnlineRunner`` keeps the state of N series of one ``VectorModel`` (by default
the ``Ensemble``) in a ``State`` bank with a leading series axis, and advances a
whole batch with one call of the model's compiled loop. It runs exactly the
same code as the per-series ``Detector`` — its outputs are identical to running
one ``Detector`` per series over the same samples.

A batch may hold several samples of the same series: they are applied in
batch order. NaN samples score 0 and do not touch the state. Series ids are
dense non-negative integers (map label sets to ids in the caller); capacity
grows on demand.
"""

from __future__ import annotations

import numpy as np

from perfintel.analysis.anomaly.base import LAYOUT, LAYOUTS, State, VectorModel
from perfintel.analysis.anomaly.compact import CompactCodec
from perfintel.analysis.anomaly.ensemble import Ensemble
from perfintel.errors import BadInputError

_USER_OUTPUTS = ("anomaly_score", "yhat", "yhat_lower", "yhat_upper")


class OnlineRunner:
    """``compact``: states held packed (``compact.py``; the model must have
    ``compact_fields``), unpacked for the series of each batch — less memory, outputs
    within the quantisation of the exact runner's."""

    def __init__(
        self, model: VectorModel | None = None, capacity: int = 1024, compact: bool = False
    ) -> None:
        self.model = model or Ensemble()
        self.codec: CompactCodec | None = None
        self._old_codecs: dict[bytes, CompactCodec] = {}
        if compact:
            spec = getattr(self.model, "compact_fields", None)
            if spec is None:
                raise BadInputError(f"model {self.model.name!r} has no compact state")
            self.codec = CompactCodec(self.model, spec())
            # codecs of the earlier state layouts, to migrate rows saved by them
            self._old_codecs = {
                self._format(c): c
                for c in (CompactCodec(self.model, spec(), v) for v in LAYOUTS.values())
                if c.layout != LAYOUT
            }
            self._initial = self.codec.empty(1)[0]
            # zeros cost no memory until written (the pages are mapped lazily): rows are
            # set to the initial state only when first used, so spare capacity is free
            self.packed = np.zeros((max(1, capacity), self.codec.width), np.uint8)
            self._used = 0
            self.state = self.model.new_state(0)
        else:
            self.state = self.model.new_state(max(1, capacity))

    @property
    def capacity(self) -> int:
        return len(self.packed) if self.codec is not None else len(self.state)

    def state_nbytes(self) -> int:
        """Bytes of state per series in memory."""
        return self.codec.width if self.codec is not None else self.model.state_nbytes()

    def _ensure(self, max_id: int) -> None:
        if max_id >= self.capacity:
            cap = self.capacity
            while cap <= max_id:
                cap *= 2
            if self.codec is not None:
                grown = np.zeros((cap, self.codec.width), np.uint8)
                grown[: self._used] = self.packed[: self._used]
                self.packed = grown
            else:
                self.state = self.model.grow_state(self.state, cap)
        if self.codec is not None and max_id >= self._used:
            self.packed[self._used : max_id + 1] = self._initial
            self._used = max_id + 1

    def _unpacked(self, ids: np.ndarray) -> State:
        assert self.codec is not None
        if len(ids):
            self._ensure(int(ids.max()))  # rows never used hold their initial state
        st = self.codec.scratch(len(ids))  # every slot is overwritten
        self.codec.unpack(self.packed[ids], st)
        return st

    def update_many(self, series_ids: np.ndarray, ts: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Scores in [0, 1], one per input sample, in input order."""
        return self.update_many_full(series_ids, ts, values)["score"]

    def update_many_full(
        self, series_ids: np.ndarray, ts: np.ndarray, values: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Every output of the model per sample (the ensemble: ``score``, ``anomaly_score``,
        ``yhat``, ``yhat_lower``, ``yhat_upper``, …); outputs a model lacks are NaN."""
        ids = np.asarray(series_ids, dtype=np.int64)
        if ids.ndim != 1:
            raise BadInputError("series_ids, ts and values must be 1-D arrays of equal length")
        if len(ids) and ids.min() < 0:
            raise BadInputError("series ids must be non-negative")
        if len(ids):
            self._ensure(int(ids.max()))
        if self.codec is not None:
            out = self._run_compact(ids, np.asarray(ts), np.asarray(values))
        else:
            out = self.model.run(self.state, ids, ts, values)
        for k in _USER_OUTPUTS:
            if k not in out:
                out[k] = np.full(len(ids), np.nan)
        return out

    def _run_compact(
        self, ids: np.ndarray, ts: np.ndarray, values: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Packed around every sample: the k-th samples of the series in the batch form
        round k, so a series' state is quantised after each of its samples and the outputs
        do not depend on how samples are grouped into batches (a replay after failover
        groups them differently from the first run)."""
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        starts = np.r_[True, sorted_ids[1:] != sorted_ids[:-1]]
        first = np.maximum.accumulate(np.where(starts, np.arange(len(ids)), 0))
        rank = np.empty(len(ids), np.int64)
        rank[order] = np.arange(len(ids)) - first
        out: dict[str, np.ndarray] = {}
        for k in range(int(rank.max()) + 1 if len(ids) else 0):
            pos = np.flatnonzero(rank == k)  # batch order kept; one sample per series
            sub = ids[pos]
            st = self._unpacked(sub)
            res = self.model.run(st, np.arange(len(sub)), ts[pos], values[pos])
            self.packed[sub] = self.codec.pack(st)  # type: ignore[union-attr]
            for name, a in res.items():
                if name not in out:
                    out[name] = np.empty(len(ids), dtype=a.dtype)
                out[name][pos] = a
        if not len(ids):
            out = self.model.run(self._unpacked(ids), ids, ts, values)
        return out

    def get_state(self, series_id: int) -> bytes:
        """One series' state, in ``Detector.get_state`` format."""
        if not 0 <= series_id < self.capacity:
            raise BadInputError(f"unknown series id {series_id}")
        if self.codec is not None:
            return self.model.dump(self._unpacked(np.array([series_id])), 0)
        return self.model.dump(self.state, series_id)

    def packed_format(self) -> bytes:
        """What packed rows of this runner are (the model's serialisation head and the
        packed width); empty for an exact runner. ``get_packed``/``set_packed`` rows are
        only exchanged between runners of the same format."""
        if self.codec is None:
            return b""
        return self._format(self.codec)

    def _format(self, codec: CompactCodec) -> bytes:
        return b"packed:" + self.model._head(codec.layout) + str(codec.width).encode()

    def get_packed(self, series_ids: np.ndarray) -> np.ndarray:
        """A compact runner's rows as they are held (the checkpoint of a compact worker:
        half the bytes of ``get_states``, no unpacking)."""
        if self.codec is None:
            raise BadInputError("an exact runner holds no packed states")
        ids = np.asarray(series_ids, dtype=np.int64)
        if len(ids):
            self._ensure(int(ids.max()))
        return self.packed[ids]

    def set_packed(self, series_ids: np.ndarray, data: np.ndarray, fmt: bytes) -> None:
        """Rows of ``get_packed`` (of the format ``fmt``; rows of an earlier state layout
        are migrated)."""
        if self.codec is None:
            raise BadInputError("packed states of another detector configuration")
        old = self._old_codecs.get(fmt)
        if old is None and fmt != self.packed_format():
            raise BadInputError("packed states of another detector configuration")
        data = np.asarray(data, dtype=np.uint8)
        ids = np.asarray(series_ids, dtype=np.int64)
        width = self.codec.width if old is None else old.width
        if data.ndim != 2 or data.shape != (len(ids), width):
            raise BadInputError("packed states do not fit this configuration")
        if old is not None:
            data = old.migrate(data, self.codec)
        if len(ids):
            self._ensure(int(ids.max()))
        self.packed[ids] = data

    def get_states(self, series_ids: np.ndarray) -> np.ndarray:
        """Many series' states at once: one row of ``get_state`` bytes per id (uint8)."""
        ids = np.asarray(series_ids, dtype=np.int64)
        if len(ids) and (ids.min() < 0 or ids.max() >= self.capacity):
            raise BadInputError("unknown series id")
        if self.codec is not None:
            return self.model.dump_rows(self._unpacked(ids), np.arange(len(ids)))
        return self.model.dump_rows(self.state, ids)

    def set_states(self, series_ids: np.ndarray, data: np.ndarray) -> None:
        """Inverse of ``get_states``."""
        ids = np.asarray(series_ids, dtype=np.int64)
        if len(ids):
            self._ensure(int(ids.max()))
        if self.codec is not None:
            st = self.model.new_state(len(ids))
            self.model.load_rows(data, st, np.arange(len(ids)))
            self.packed[ids] = self.codec.pack(st)
            return
        self.model.load_rows(data, self.state, ids)

    def set_state(self, series_id: int, data: bytes) -> None:
        one = self.model.load(data)
        self._ensure(series_id)
        if self.codec is not None:
            self.packed[series_id] = self.codec.pack(one)[0]
            return
        self.model.copy_row(one, 0, self.state, series_id)

    def reset(self, series_id: int) -> None:
        if self.codec is not None:
            self._ensure(series_id)
            self.packed[series_id] = self._initial
            return
        self.model.reset_row(self.state, series_id)
