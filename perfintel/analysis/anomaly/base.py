"""The detector contract: vectorised models over a bank of per-series states.

A *model* (``VectorModel``) is pure: it declares the per-series state it needs
(``fields()``) and advances the states of a set of distinct series by one
sample each (``step``). It never sees files, SQL or HTTP. The same model serves
two front ends:

* ``Detector`` — one series, ``update(ts_ms, value) -> score`` and
  ``score_batch(ts, values)`` / ``run_batch_full(ts, values)`` (exactly the
  results of repeated ``update``), ``get_state() -> bytes`` /
  ``Detector.from_state(bytes)``.
* ``perfintel.analysis.anomaly.online.OnlineRunner`` — N series whose states
  live in numpy arrays, ``update_many(series_ids, ts, values)``.

Both call the same ``step`` code, so their scores are identical. For the
default ensemble, ``Detector``'s batch methods run a compiled scalar kernel
instead (``kernel.py``), which reproduces ``step`` bit for bit on the same
state arrays.

Contract every model keeps (checked by ``tests/analysis/test_anomaly_conformance.py``):

* strictly causal: the output for a sample depends on that sample and earlier
  ones only;
* deterministic for a given ``seed``;
* a NaN sample scores 0 and leaves the state untouched (the front ends filter
  NaN before ``step``); ±Inf and huge values are clipped to ``±VALUE_LIMIT``;
* the state is a fixed set of small arrays, serialised as raw bytes.

State layout (``get_state``): ``MAGIC`` (4 bytes), 1 byte name length, the
model's name (ASCII), the seed (int64), then each field's raw little-endian bytes in
``fields()`` order. No pickling: loading never runs code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from perfintel.errors import BadInputError

if TYPE_CHECKING:
    from perfintel.analysis.anomaly.result import AnomalyResult

MAGIC = b"PIA1"
#: Values are clipped to this magnitude so that no arithmetic overflows.
VALUE_LIMIT = 1e100


@dataclass(frozen=True)
class Field:
    """One per-series state field: shape (excluding the series axis), dtype, initial value."""

    shape: tuple[int, ...]
    dtype: type[np.generic] = np.float64
    init: float = 0.0


@dataclass
class StepOut:
    """What a model returns for a batch of distinct series (one sample each).

    ``score`` is the NAB-style score in [0, 1]; ``raw`` the model's unbounded
    surprise (0 = expected). The band fields are present for models that
    forecast (``yhat`` the expected value, ``lower``/``upper`` the band,
    ``anomaly_score`` = |deviation| / half-band width: 0 expected, 1 at the edge,
    >1 outside).
    """

    score: np.ndarray
    raw: np.ndarray
    yhat: np.ndarray | None = None
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    anomaly_score: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)


State = dict[str, np.ndarray]


class VectorModel(ABC):
    """A streaming detector written over arrays of per-series state."""

    #: Short registry name, stored in serialised state.
    name: str = "model"

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)

    @abstractmethod
    def fields(self) -> dict[str, Field]:
        """Per-series state fields, in serialisation order."""

    @abstractmethod
    def step(self, st: State, rows: np.ndarray, ts: np.ndarray, x: np.ndarray) -> StepOut:
        """Advance series ``rows`` (distinct indices into ``st``) by one finite sample each.

        ``ts`` are int64 milliseconds, ``x`` finite float64 within ±VALUE_LIMIT.
        """

    # -- state bank helpers -------------------------------------------------
    def new_state(self, n: int) -> State:
        return {k: np.full((n, *f.shape), f.init, dtype=f.dtype) for k, f in self.fields().items()}

    def grow_state(self, st: State, n: int) -> State:
        """A copy of ``st`` with capacity ``n`` (new series at their initial state)."""
        out = self.new_state(n)
        for k, a in st.items():
            out[k][: a.shape[0]] = a
        return out

    def state_nbytes(self) -> int:
        """Bytes of state per series (arrays only)."""
        return sum(
            int(np.prod(f.shape, dtype=np.int64)) * np.dtype(f.dtype).itemsize
            for f in self.fields().values()
        )

    def dump(self, st: State, row: int) -> bytes:
        name = self.name.encode("ascii")
        parts = [MAGIC, bytes([len(name)]), name, np.int64(self.seed).astype("<i8").tobytes()]
        for k, f in self.fields().items():
            parts.append(
                np.ascontiguousarray(
                    st[k][row], dtype=np.dtype(f.dtype).newbyteorder("<")
                ).tobytes()
            )
        return b"".join(parts)

    def load(self, data: bytes) -> State:
        """Parse ``dump`` output into a one-series state; ``BadInputError`` if it does not fit."""
        name = self.name.encode("ascii")
        head = MAGIC + bytes([len(name)]) + name + np.int64(self.seed).astype("<i8").tobytes()
        if not data.startswith(head):
            raise BadInputError(f"state is not a {self.name!r} detector state")
        st = self.new_state(1)
        pos = len(head)
        for k, f in self.fields().items():
            dt = np.dtype(f.dtype).newbyteorder("<")
            size = int(np.prod(f.shape, dtype=np.int64)) * dt.itemsize
            chunk = data[pos : pos + size]
            if len(chunk) != size:
                raise BadInputError(f"truncated {self.name!r} state (field {k})")
            st[k][0] = np.frombuffer(chunk, dtype=dt).reshape(f.shape)
            pos += size
        if pos != len(data):
            raise BadInputError(f"trailing bytes in {self.name!r} state")
        return st


def clean_values(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(finite mask, values with ±Inf/huge clipped to ±VALUE_LIMIT). NaN stays NaN."""
    v = np.asarray(values, dtype=np.float64)
    ok = ~np.isnan(v)
    return ok, np.clip(v, -VALUE_LIMIT, VALUE_LIMIT)


#: ``run_batch_full`` outputs (indices and flags) that are 0, not NaN, for a NaN sample.
_FLAGS = ("which", "fired", "alert", "model")
_MAIN = ("score", "raw", "anomaly_score", "yhat", "yhat_lower", "yhat_upper")


class Detector:
    """One series, one model: the per-series front end of a ``VectorModel``.

    >>> from perfintel.analysis.anomaly import SeasonalBaseline
    >>> det = Detector(SeasonalBaseline())
    >>> s = det.update(0, 1.0)
    >>> 0.0 <= s <= 1.0
    True
    """

    def __init__(self, model: VectorModel) -> None:
        self.model = model
        self._st = model.new_state(1)
        self._rows = np.zeros(1, dtype=np.int64)

    def step_out(self, ts_ms: int, value: float) -> StepOut | None:
        """Advance by one sample; ``None`` for NaN (state untouched)."""
        v = float(value)
        if v != v:
            return None
        x = np.array([min(max(v, -VALUE_LIMIT), VALUE_LIMIT)])
        return self.model.step(self._st, self._rows, np.array([int(ts_ms)], dtype=np.int64), x)

    def update(self, ts_ms: int, value: float) -> float:
        out = self.step_out(ts_ms, value)
        return 0.0 if out is None else float(out.score[0])

    def score_batch(self, ts: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Scores of ``update`` applied to each sample in order (identical values)."""
        return self.run_batch_full(ts, values)["score"]

    def run_batch_full(
        self, ts: np.ndarray, values: np.ndarray, engine: str = "auto"
    ) -> dict[str, np.ndarray]:
        """Advance through ``(ts, values)``; every output per sample, as arrays.

        Keys: ``score``, ``raw``, ``anomaly_score``, ``yhat``, ``yhat_lower``,
        ``yhat_upper`` and the model's ``StepOut.extra`` keys (for the ensemble
        ``which``, ``fired``, ``alert``, ``z``, ``model``, ``sigma``,
        ``lik_<component>``). A NaN sample has ``score``, ``which``, ``fired``,
        ``alert`` and ``model`` 0 and NaN elsewhere. Identical to
        repeated ``step_out`` calls whichever ``engine`` runs it: ``"kernel"``
        (the compiled scalar kernel, ``kernel.py``: the default ensemble on one
        series, ~1000× faster), ``"vector"`` (the model's ``step`` per sample) or
        ``"auto"`` (the kernel when it supports the model and numba is
        installed).
        """
        ts = np.asarray(ts, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        if ts.shape != values.shape or ts.ndim != 1:
            raise BadInputError("ts and values must be 1-D arrays of equal length")
        if engine not in ("auto", "kernel", "vector"):
            raise ValueError(f"unknown engine {engine!r}")
        if engine != "vector":
            from perfintel.analysis.anomaly import kernel

            usable = kernel.supports(self.model) and (
                kernel.loops() is not None if engine == "kernel" else kernel.enabled()
            )
            if usable:
                return kernel.run(self.model, self._st, 0, ts, values)
            if engine == "kernel":
                raise BadInputError(
                    f"the compiled kernel cannot run {type(self.model).__name__} here"
                )
        return self._run_batch_vector(ts, values)

    def _run_batch_vector(self, ts: np.ndarray, values: np.ndarray) -> dict[str, np.ndarray]:
        n = len(values)
        cols: dict[str, np.ndarray] = {"score": np.zeros(n)}
        for k in ("raw", "anomaly_score", "yhat", "yhat_lower", "yhat_upper"):
            cols[k] = np.full(n, np.nan)
        for i in range(n):
            out = self.step_out(int(ts[i]), float(values[i]))
            if out is None:
                continue
            cols["score"][i] = out.score[0]
            cols["raw"][i] = out.raw[0]
            for k, a in (
                ("anomaly_score", out.anomaly_score),
                ("yhat", out.yhat),
                ("yhat_lower", out.lower),
                ("yhat_upper", out.upper),
            ):
                if a is not None:
                    cols[k][i] = a[0]
            for k, a in out.extra.items():
                if k not in cols:
                    cols[k] = np.zeros(n) if k in _FLAGS else np.full(n, np.nan)
                cols[k][i] = a[0]
        if not np.any(values == values):  # no finite sample: learn the names on a scratch state
            probe = self.model.step(
                self.model.new_state(1), self._rows, np.zeros(1, np.int64), np.zeros(1)
            )
            for k in probe.extra:
                cols[k] = np.zeros(n) if k in _FLAGS else np.full(n, np.nan)
        return cols

    def results_batch(self, ts: np.ndarray, values: np.ndarray) -> list[AnomalyResult]:
        """``update_result`` for each sample in order (same results), via ``run_batch_full``."""
        from perfintel.analysis.anomaly.result import explain

        ts = np.asarray(ts, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        cols = self.run_batch_full(ts, values)
        alarm = float(getattr(getattr(self.model, "config", None), "alarm", 0.5))
        out = StepOut(
            score=cols["score"],
            raw=cols["raw"],
            yhat=cols["yhat"],
            lower=cols["yhat_lower"],
            upper=cols["yhat_upper"],
            anomaly_score=cols["anomaly_score"],
            extra={k: v for k, v in cols.items() if k not in _MAIN},
        )
        return [
            explain(int(ts[i]), float(values[i]), None if values[i] != values[i] else out, alarm, i)
            for i in range(len(values))
        ]

    def update_result(self, ts_ms: int, value: float) -> AnomalyResult:
        """Advance by one sample and explain it (expected value, band, which detector fired)."""
        from perfintel.analysis.anomaly.result import explain

        out = self.step_out(ts_ms, value)
        alarm = float(getattr(getattr(self.model, "config", None), "alarm", 0.5))
        return explain(int(ts_ms), float(value), out, alarm)

    def get_state(self) -> bytes:
        return self.model.dump(self._st, 0)

    @classmethod
    def from_state(cls, data: bytes, model: VectorModel | None = None) -> Detector:
        """Restore a detector; ``model`` defaults to the registered default for the state's name."""
        if model is None:
            model = model_from_state(data)
        det = cls(model)
        det._st = model.load(data)
        return det


REGISTRY: dict[str, Callable[[int], VectorModel]] = {}


def register(name: str, factory: Callable[[int], VectorModel]) -> None:
    REGISTRY[name] = factory


def model_from_state(data: bytes) -> VectorModel:
    if not data.startswith(MAGIC) or len(data) < 5:
        raise BadInputError("not a perfintel detector state")
    n = data[4]
    name = data[5 : 5 + n].decode("ascii", "replace")
    if name not in REGISTRY or len(data) < 13 + n:
        raise BadInputError(f"unknown detector {name!r} in state")
    seed = int(np.frombuffer(data[5 + n : 13 + n], dtype="<i8")[0])
    return REGISTRY[name](seed)
