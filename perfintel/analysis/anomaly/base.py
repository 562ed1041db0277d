"""The detector contract: models over a bank of per-series states, written once.

A *model* (``VectorModel``) is pure: it declares the per-series state it needs
(``fields()``: named slots of one float64 row and one uint8 row per series)
and advances series through samples with ``run(st, rows, ts, values)``: sample
``i`` belongs to series ``rows[i]``, samples are applied in order (a series may
appear any number of times). The arithmetic lives in scalar functions compiled
by numba (``jit.py``; plain Python without it): one implementation serves

* ``Detector`` — one series along time (``rows`` all the same);
* ``OnlineRunner`` — a batch of many series at once;
* the detect API and the NAB evaluation (one call per series).

So every front end gives the same numbers for the same samples, by
construction.

Contract every model keeps (checked by ``tests/analysis/test_anomaly_conformance.py``):

* strictly causal: the output for a sample depends on that sample and earlier
  ones of its series only;
* deterministic for a given ``seed``;
* a NaN sample scores 0 and leaves the state untouched; ±Inf and huge values
  are clipped to ``±VALUE_LIMIT``;
* the state is a fixed, small set of numbers per series, serialised as raw bytes.

State layout (``State``): ``f``, float64 ``(series, width_f)``; ``h``, float32
``(series, width_h)`` (bulky smooth quantities: seasonal profiles, histograms);
``b``, uint8 ``(series, width_b)`` (symbols, bitsets); each field a fixed slice
of one of them (``Field.kind``). Serialised (``dump``): ``MAGIC`` (4 bytes),
1 byte name length, the model's name (ASCII), the seed (int64), the row of
``f`` (little-endian float64), of ``h`` (little-endian float32), of ``b``. No
pickling: loading never runs code.

The magic names the layout version (``LAYOUTS``). A field added in a later layout
says so (``Field.added``); a state of an earlier layout that lacks only such fields
loads, migrated: its fields moved to their current slots, the added ones at their
``init`` (``migrate``). States of layout 1 (magic ``PIA1``, another layout) are
refused with ``StateVersionError``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from perfintel.errors import BadInputError

#: The magic of each state layout that loads: layout 2 (main until the seasonal
#: baseline kept its series' grid) is migrated to the current one on load.
LAYOUTS = {b"PIA2": 2, b"PIA3": 3}
LAYOUT = 3
MAGIC = b"PIA3"
#: Magic numbers of earlier state formats (refused with ``StateVersionError``).
OLD_MAGICS = (b"PIA1",)
#: Values are clipped to this magnitude so that no arithmetic overflows.
VALUE_LIMIT = 1e100


class StateVersionError(BadInputError):
    """A detector state saved by an earlier version of the detector (another layout)."""


@dataclass(frozen=True)
class Field:
    """One per-series state field: ``size`` slots of ``f`` (float64), ``h`` (float32) or
    ``b`` (uint8)."""

    size: int = 1
    kind: str = "f"
    init: float = 0.0
    #: the state layout (``LAYOUTS``) that added the field: states of earlier layouts
    #: load with it at ``init``
    added: int = 2


_KINDS = {"f": np.float64, "h": np.float32, "b": np.uint8}


@dataclass
class State:
    """The states of a bank of series: ``f`` float64, ``h`` float32 and ``b`` uint8 rows."""

    f: np.ndarray
    h: np.ndarray
    b: np.ndarray

    def __len__(self) -> int:
        return int(self.f.shape[0])


@dataclass
class StepOut:
    """Outputs of one scored sample (or a few), as the result explainer reads them.

    ``score`` is the NAB-style score in [0, 1]; ``raw`` the model's unbounded
    surprise. The band fields are present for models that forecast (``yhat`` the
    expected value, ``lower``/``upper`` the band, ``anomaly_score`` =
    |deviation| / half-band width: 0 expected, 1 at the edge, >1 outside).
    """

    score: np.ndarray
    raw: np.ndarray
    yhat: np.ndarray | None = None
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    anomaly_score: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)


def clean_values(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(finite mask, values with ±Inf/huge clipped to ±VALUE_LIMIT). NaN stays NaN."""
    v = np.asarray(values, dtype=np.float64)
    ok = ~np.isnan(v)
    return ok, np.clip(v, -VALUE_LIMIT, VALUE_LIMIT)


class VectorModel(ABC):
    """A streaming detector over a bank of per-series states.

    Subclasses give ``fields()``, ``outputs`` (names of the per-sample outputs,
    ``flags`` among them being 0 rather than NaN for a NaN sample) and
    ``_run``, the compiled loop that advances ``rows`` through finite samples.
    """

    #: Short registry name, stored in serialised state.
    name: str = "model"
    #: Names of the outputs of ``run``, in the order ``_run`` writes them.
    outputs: tuple[str, ...] = ("score",)
    #: Outputs that are 0 (not NaN) for a NaN sample.
    flags: tuple[str, ...] = ("score",)

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)

    @abstractmethod
    def fields(self) -> dict[str, Field]:
        """Per-series state fields, in layout order."""

    @abstractmethod
    def _run(
        self, st: State, rows: np.ndarray, ts: np.ndarray, x: np.ndarray, out: np.ndarray
    ) -> None:
        """Advance ``rows[i]`` by ``(ts[i], x[i])`` in order; write output ``k`` to ``out[k, i]``.

        ``ts`` are int64 milliseconds, ``x`` finite float64 within ±VALUE_LIMIT.
        """

    # -- layout -------------------------------------------------------------------
    def layout_fields(self, layout: int = LAYOUT) -> dict[str, Field]:
        """The fields of state layout ``layout`` (those added by then), in layout order."""
        return {k: fd for k, fd in self.fields().items() if fd.added <= layout}

    def offsets(self, layout: int = LAYOUT) -> dict[str, int]:
        """Start of each field within its row (``f``, ``h`` or ``b``)."""
        pos = dict.fromkeys(_KINDS, 0)
        out = {}
        for k, fd in self.layout_fields(layout).items():
            out[k] = pos[fd.kind]
            pos[fd.kind] += fd.size
        return out

    def widths(self, layout: int = LAYOUT) -> dict[str, int]:
        out = dict.fromkeys(_KINDS, 0)
        for fd in self.layout_fields(layout).values():
            out[fd.kind] += fd.size
        return out

    def layout_state(self, n: int, layout: int) -> State:
        """An uninitialised state of ``n`` rows in an earlier ``layout`` (to migrate)."""
        w = self.widths(layout)
        return State(*(np.empty((n, w[k]), dtype=dt) for k, dt in _KINDS.items()))

    def migrate(self, old: State, layout: int) -> State:
        """States of an earlier ``layout`` in the current one: every field of theirs
        moved to its slot, the fields added since at their ``init``."""
        if layout == LAYOUT:
            return old
        out = self.new_state(len(old))
        was, now = self.offsets(layout), self.offsets()
        for k, fd in self.layout_fields(layout).items():
            src: np.ndarray = getattr(old, fd.kind)
            dst: np.ndarray = getattr(out, fd.kind)
            dst[:, now[k] : now[k] + fd.size] = src[:, was[k] : was[k] + fd.size]
        return out

    def new_state(self, n: int) -> State:
        w = self.widths()
        parts = {k: np.zeros((n, w[k]), dtype=dt) for k, dt in _KINDS.items()}
        off = self.offsets()
        for k, fd in self.fields().items():
            if fd.init != 0.0:
                parts[fd.kind][:, off[k] : off[k] + fd.size] = fd.init
        return State(**parts)

    def grow_state(self, st: State, n: int) -> State:
        """A copy of ``st`` with capacity ``n`` (new series at their initial state)."""
        out = self.new_state(n)
        for k in _KINDS:
            getattr(out, k)[: len(st)] = getattr(st, k)
        return out

    def copy_row(self, src: State, src_row: int, dst: State, dst_row: int) -> None:
        for k in _KINDS:
            getattr(dst, k)[dst_row] = getattr(src, k)[src_row]

    def reset_row(self, st: State, row: int) -> None:
        self.copy_row(self.new_state(1), 0, st, row)

    def state_nbytes(self, layout: int = LAYOUT) -> int:
        """Bytes of state per series."""
        w = self.widths(layout)
        return sum(w[k] * np.dtype(dt).itemsize for k, dt in _KINDS.items())

    def field(self, st: State, name: str, row: int = 0) -> np.ndarray:
        """A view of one field of one series (for tests and explanations)."""
        fd = self.fields()[name]
        o = self.offsets()[name]
        a: np.ndarray = getattr(st, fd.kind)
        return a[row, o : o + fd.size]

    # -- running ------------------------------------------------------------------
    def run(
        self, st: State, rows: np.ndarray, ts: np.ndarray, values: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Advance series ``rows[i]`` by sample ``(ts[i], values[i])``, in order.

        Returns every output (``outputs``), one entry per sample. NaN samples are
        skipped (state untouched; ``flags`` outputs 0, others NaN).
        """
        rows = np.asarray(rows, dtype=np.int64)
        ts = np.asarray(ts, dtype=np.int64)
        ok, x = clean_values(values)
        if rows.ndim != 1 or rows.shape != ts.shape or ts.shape != x.shape:
            raise BadInputError("rows, ts and values must be 1-D arrays of equal length")
        n = len(x)
        if n and (rows.min() < 0 or rows.max() >= len(st)):
            raise BadInputError("series row outside the state bank")
        pos = np.flatnonzero(ok)
        dense = len(pos) == n
        m = len(pos)
        out = np.empty((len(self.outputs), m))
        if m:
            if dense:
                self._run(st, rows, ts, x, out)
            else:
                self._run(
                    st,
                    np.ascontiguousarray(rows[pos]),
                    np.ascontiguousarray(ts[pos]),
                    np.ascontiguousarray(x[pos]),
                    out,
                )
        res = {}
        for k, name in enumerate(self.outputs):
            if dense:
                res[name] = out[k]
            else:
                full = np.zeros(n) if name in self.flags else np.full(n, np.nan)
                full[pos] = out[k]
                res[name] = full
        return res

    # -- serialisation --------------------------------------------------------------
    def _head(self, layout: int = LAYOUT) -> bytes:
        magic = next(m for m, v in LAYOUTS.items() if v == layout)
        name = self.name.encode("ascii")
        return magic + bytes([len(name)]) + name + np.int64(self.seed).astype("<i8").tobytes()

    def dump(self, st: State, row: int) -> bytes:
        return b"".join(
            [
                self._head(),
                np.ascontiguousarray(st.f[row], dtype="<f8").tobytes(),
                np.ascontiguousarray(st.h[row], dtype="<f4").tobytes(),
                np.ascontiguousarray(st.b[row]).tobytes(),
            ]
        )

    def dump_rows(self, st: State, rows: np.ndarray) -> np.ndarray:
        """``dump`` of many rows at once: a uint8 matrix, one row of ``dump`` bytes per series."""
        rows = np.asarray(rows, dtype=np.int64)
        head = np.frombuffer(self._head(), dtype=np.uint8)
        parts = [
            np.broadcast_to(head, (len(rows), len(head))),
            np.ascontiguousarray(st.f[rows], dtype="<f8").view(np.uint8),
            np.ascontiguousarray(st.h[rows], dtype="<f4").view(np.uint8),
            np.ascontiguousarray(st.b[rows]),
        ]
        return np.concatenate(parts, axis=1)

    def load_rows(self, data: np.ndarray, dst: State, rows: np.ndarray) -> None:
        """Write ``dump_rows`` output (one state per row of ``data``, all of one layout;
        an earlier one is migrated) into ``dst[rows]``."""
        data = np.ascontiguousarray(data, dtype=np.uint8)
        if data.ndim != 2:
            raise BadInputError("states must be a matrix, one row per series")
        layout = LAYOUT
        if len(data) and data.shape[1] >= 4:
            layout = _layout_of(data[0, :4].tobytes())
        head = self._head(layout)
        if data.shape[1] != len(head) + self.state_nbytes(layout):
            raise BadInputError(f"{self.name!r} states do not fit this configuration")
        if len(data) and not (data[:, : len(head)] == np.frombuffer(head, np.uint8)).all():
            raise BadInputError(f"states are not {self.name!r} detector states")
        st = self.layout_state(len(data), layout)
        w = self.widths(layout)
        pos = len(head)
        for k, dt in (("f", "<f8"), ("h", "<f4"), ("b", "u1")):
            size = w[k] * np.dtype(dt).itemsize
            getattr(st, k)[:] = np.ascontiguousarray(data[:, pos : pos + size]).view(dt)
            pos += size
        st = self.migrate(st, layout)
        for k in _KINDS:
            getattr(dst, k)[rows] = getattr(st, k)

    def load(self, data: bytes) -> State:
        """Parse ``dump`` output (of the current layout or an earlier one, migrated) into a
        one-series state; ``BadInputError`` if it does not fit."""
        layout = _layout_of(data[:4])
        head = self._head(layout)
        if not data.startswith(head):
            raise BadInputError(f"state is not a {self.name!r} detector state")
        w = self.widths(layout)
        if len(data) != len(head) + self.state_nbytes(layout):
            raise BadInputError(
                f"{self.name!r} state of {len(data)} bytes does not fit this configuration"
            )
        st = self.layout_state(1, layout)
        pos = len(head)
        for k, dt in (("f", "<f8"), ("h", "<f4"), ("b", "u1")):
            getattr(st, k)[0] = np.frombuffer(data, dtype=dt, count=w[k], offset=pos)
            pos += w[k] * np.dtype(dt).itemsize
        return self.migrate(st, layout)


def _layout_of(magic: bytes) -> int:
    """The layout a state's magic names (``StateVersionError`` for a refused earlier
    format, ``BadInputError`` for bytes that are not a detector state)."""
    if magic in OLD_MAGICS:
        raise StateVersionError(
            "detector state saved by an earlier detector version (another state layout)"
        )
    if magic not in LAYOUTS:
        raise BadInputError("not a perfintel detector state")
    return LAYOUTS[magic]


REGISTRY: dict[str, Callable[[int], VectorModel]] = {}


def register(name: str, factory: Callable[[int], VectorModel]) -> None:
    REGISTRY[name] = factory


def model_from_state(data: bytes) -> VectorModel:
    _layout_of(data[:4])
    if len(data) < 5:
        raise BadInputError("not a perfintel detector state")
    n = data[4]
    name = data[5 : 5 + n].decode("ascii", "replace")
    if name not in REGISTRY or len(data) < 13 + n:
        raise BadInputError(f"unknown detector {name!r} in state")
    seed = int(np.frombuffer(data[5 + n : 13 + n], dtype="<i8")[0])
    return REGISTRY[name](seed)
