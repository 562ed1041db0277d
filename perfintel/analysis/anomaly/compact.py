"""Compact per-series states: the bulky float32 fields held as small integers.

A worker that scores a million series keeps their states in memory; at float32 the
seasonal profiles (192 values) and the likelihood histograms (2 x 48) are most of
it. ``CompactCodec`` packs a model's state rows into one uint8 row per series:
``f`` (float64) and ``b`` (uint8) as they are, and each listed ``h`` field as
integer codes of a power-of-two step chosen per series and field (the smallest that
holds the field's largest magnitude; stored as its exponent, one byte). Codes are
signed 8-bit for the profiles and unsigned 16-bit for the histograms
(``Ensemble.compact_fields``).

Rounding is dithered: a value between two codes goes up with probability equal to
its distance from the lower one, the "random" number a hash of the series' sample
count and the slot, so runs are deterministic and a small update (a profile bin
learning 0.3 % of an error per sample, a histogram decaying by 1/8000 per sample)
moves its code as often as its size says instead of never. Values already on a
code (every slot the step did not touch) decode and re-encode exactly, because the
step is a power of two.

``OnlineRunner(compact=True)`` unpacks the series of a batch into a scratch state,
runs the unchanged compiled step functions on it and packs them back; its outputs
therefore differ from the exact detector by the quantisation alone. The memory
setting and its NAB effect are in ``BENCHMARKS.md`` ("compact detector state").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from perfintel.analysis.anomaly.base import LAYOUT, State, VectorModel
from perfintel.analysis.anomaly.ensemble import Ensemble
from perfintel.analysis.anomaly.jit import njit
from perfintel.analysis.anomaly.novelty import ContextNovelty
from perfintel.errors import BadInputError

#: The novelty table fold of the compact detector (``ContextNovelty(fold=...)``): 256 bits
#: a grid for the longest sequences that leave the warm-up range, chosen for memory (a
#: grid's table 905 -> 107 bytes, the whole compact state 907 bytes)
COMPACT_FOLD = 256


@dataclass(frozen=True)
class _Part:
    name: str
    start: int  # first slot in ``h``
    size: int
    signed: bool
    itemsize: int  # bytes per code

    @property
    def qmax(self) -> int:
        return (1 << (8 * self.itemsize - 1)) - 1 if self.signed else (1 << (8 * self.itemsize)) - 1

    @property
    def dtype(self) -> str:
        return f"<{'i' if self.signed else 'u'}{self.itemsize}"


class CompactCodec:
    """Packs and unpacks state rows of ``model`` (see the module docstring).

    ``fields`` maps ``h`` field names to ``(bits, signed)``; ``h`` fields not listed
    stay float32. The first ``f`` slot must be a per-sample counter (the dither's seed).
    ``layout``: the state layout of the rows (an earlier one only to read rows saved
    before the current one: ``unpack`` gives states of that layout, see ``migrate``).
    """

    def __init__(
        self, model: VectorModel, fields: dict[str, tuple[int, bool]], layout: int = LAYOUT
    ) -> None:
        self.model = model
        self.layout = layout
        off = model.offsets(layout)
        defs = model.layout_fields(layout)
        w = model.widths(layout)
        self.wf, self.wh, self.wb = w["f"], w["h"], w["b"]
        parts = []
        for name, (bits, signed) in fields.items():
            fd = defs[name]
            if fd.kind != "h" or bits not in (8, 16):
                raise BadInputError(f"compact field {name!r}: an h field at 8 or 16 bits")
            parts.append(_Part(name, off[name], fd.size, signed, bits // 8))
        self.parts = sorted(parts, key=lambda p: p.start)
        covered = {i for p in self.parts for i in range(p.start, p.start + p.size)}
        self.raw_h = np.array([i for i in range(self.wh) if i not in covered], dtype=np.int64)
        self.width = (
            8 * self.wf
            + 4 * len(self.raw_h)
            + sum(1 + p.size * p.itemsize for p in self.parts)
            + self.wb
        )

    def scratch(self, n: int) -> State:
        """An uninitialised state of ``n`` rows (for ``unpack``)."""
        return self.model.layout_state(n, self.layout)

    def migrate(self, packed: np.ndarray, to: CompactCodec) -> np.ndarray:
        """Rows packed by this codec (an earlier layout) packed by ``to`` (the current
        one): the codes decode to values on their power-of-two steps, which re-encode
        exactly, so only the fields' positions change (and the added ones are at init)."""
        st = self.scratch(len(packed))
        self.unpack(packed, st)
        return to.pack(self.model.migrate(st, self.layout))

    def empty(self, n: int) -> np.ndarray:
        """``n`` packed rows at the model's initial state."""
        return self.pack(self.model.new_state(n))

    def pack(self, st: State) -> np.ndarray:
        n = len(st)
        out = np.empty((n, self.width), dtype=np.uint8)
        pos = 8 * self.wf
        out[:, :pos] = np.ascontiguousarray(st.f, dtype="<f8").view(np.uint8)
        raw = np.ascontiguousarray(st.h[:, self.raw_h], dtype="<f4").view(np.uint8)
        out[:, pos : pos + raw.shape[1]] = raw
        pos += raw.shape[1]
        count = st.f[:, 0].astype(np.int64) if self.wf else np.zeros(n, np.int64)
        e = np.empty(n, np.int64)
        for p in self.parts:
            code = np.empty((n, p.size), np.int64)
            quantise(st.h, p.start, p.size, count, p.qmax, p.signed, e, code)
            out[:, pos] = (e + 128).astype(np.uint8)
            pos += 1
            nb = p.size * p.itemsize
            out[:, pos : pos + nb] = code.astype(p.dtype).view(np.uint8)
            pos += nb
        out[:, pos:] = st.b
        return out

    def unpack(self, packed: np.ndarray, st: State) -> None:
        """Fill ``st`` (``len(packed)`` rows) from packed rows."""
        packed = np.ascontiguousarray(packed, dtype=np.uint8)
        if packed.ndim != 2 or packed.shape[1] != self.width:
            raise BadInputError("packed states do not fit this configuration")
        pos = 8 * self.wf
        st.f[:] = packed[:, :pos].copy().view("<f8")
        nraw = 4 * len(self.raw_h)
        st.h[:, self.raw_h] = packed[:, pos : pos + nraw].copy().view("<f4")
        pos += nraw
        for p in self.parts:
            e = packed[:, pos].astype(np.int64) - 128
            pos += 1
            nb = p.size * p.itemsize
            code = packed[:, pos : pos + nb].copy().view(p.dtype).astype(np.float64)
            st.h[:, p.start : p.start + p.size] = np.ldexp(code, e[:, None])
            pos += nb
        st.b[:] = packed[:, pos:]


@njit
def quantise(h, start, size, count, qmax, signed, e_out, code_out):  # type: ignore[no-untyped-def]
    """Codes of ``h[:, start:start + size]`` (see the module docstring): per row the
    exponent of the step (``e_out``) and the dithered codes (``code_out``)."""
    lowest = -qmax if signed else 0
    for r in range(h.shape[0]):
        top = 0.0
        for j in range(size):
            top = max(top, abs(np.float64(h[r, start + j])))
        e = -126
        if top > 0:
            m, ex = math.frexp(top / qmax)
            e = min(max(ex - 1 if m == 0.5 else ex, -126), 126)
        e_out[r] = e
        c = count[r] & 0x7FFFFFFF
        for j in range(size):
            x = math.ldexp(np.float64(h[r, start + j]), -e)
            lo = math.floor(x)
            frac = x - lo
            if frac > 0:  # a 32-bit hash of (sample count, slot) as the uniform number
                k = (c * 2654435761 + (start + j) * 40503) & 0xFFFFFFFF
                k ^= k >> 15
                k = (k * 1540483477) & 0xFFFFFFFF
                k ^= k >> 13
                if frac * 4294967296.0 > k:
                    lo += 1
            code_out[r, j] = min(max(np.int64(lo), lowest), qmax)


def compact_model() -> Ensemble:
    """The detector a compact runner uses: the default ensemble with the novelty table
    folded to ``COMPACT_FOLD`` bits a grid."""
    return Ensemble(novelty=ContextNovelty(fold=COMPACT_FOLD))
