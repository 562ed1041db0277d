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

import numpy as np

from perfintel.errors import BadInputError

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
