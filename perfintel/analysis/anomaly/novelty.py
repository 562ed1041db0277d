"""Contextual novelty: how many of the recent value patterns were never seen.

After a warm-up the value range seen so far is frozen and cut into ``bins``
equal bins (values outside the range fall into extra bins on either side, up to
one range away, then clip). At each step the sequences of the last 1..``depth``
bin symbols ending at the current sample index a per-series bitset
(directly when every possible sequence fits in ``2**table_bits`` bits, else
through a hash salted by the seed); the raw score is the weighted share of
those sequences whose bit was not yet set, and then they are set. It is the
spirit of the contextual detectors that do well on NAB (CAD-OSE): unusual
*shapes* are flagged even when every single value is ordinary. Hash collisions
(large settings) can only hide novelty, never invent it.
"""

from __future__ import annotations

import math

import numpy as np

from perfintel.analysis.anomaly.base import Field, State, VectorModel, register
from perfintel.analysis.anomaly.jit import njit

_MULT = 0x9E3779B97F4A7C15
_N, _LO, _HI, _HIST = 0, 1, 2, 3
_I_BINS, _I_DEPTH, _I_DIRECT, _I_NSYM, _I_WARMUP, _I_SHIFT, _I_SALT = range(7)


@njit
def novelty_step(f, bits, r, o, ob, x, iprm, offsets, weights):  # type: ignore[no-untyped-def]
    """Advance row ``r`` (float slots from ``o``, table bytes from ``ob``) by ``x``; the raw novelty."""
    bins = iprm[_I_BINS]
    depth = iprm[_I_DEPTH]
    nsym = iprm[_I_NSYM]
    n = f[r, o + _N]
    first = n == 0
    lo = x if first else f[r, o + _LO]
    hi = x if first else f[r, o + _HI]
    learning = n < iprm[_I_WARMUP]
    if learning:
        lo = min(lo, x)
        hi = max(hi, x)
    rng = hi - lo
    if not rng > 0:
        rng = 1.0 + abs(hi)
    bins_f = np.float64(bins)
    b = math.floor((x - lo) / rng * bins_f)
    b = min(max(b, -bins_f), 2 * bins_f - 1)
    sym = np.int64(b + bins_f)
    acc = 0.0
    code = sym
    mult = np.uint64(_MULT)
    salt = np.uint64(iprm[_I_SALT])
    for j in range(depth):
        if j > 0:
            code = code * (nsym + 1) + np.int64(f[r, o + _HIST + j - 1]) + 1
        if iprm[_I_DIRECT]:
            slot = code + offsets[j]
        else:
            h = (np.uint64(code) + salt) * mult
            h = (h ^ (h >> np.uint64(29))) * mult
            slot = np.int64(h >> np.uint64(iprm[_I_SHIFT]))
        byte = ob + (slot >> 3)
        bit = np.uint8(1 << (slot & 7))
        if (bits[r, byte] & bit) == 0:
            acc += weights[j]
            bits[r, byte] |= bit
    for j in range(depth - 2, 0, -1):
        f[r, o + _HIST + j] = f[r, o + _HIST + j - 1]
    if depth > 1:
        f[r, o + _HIST] = sym
    f[r, o + _N] = n + 1
    f[r, o + _LO] = lo
    f[r, o + _HI] = hi
    return 0.0 if learning else acc


@njit
def _novelty_run(f, bits, rows, x, iprm, offsets, weights, out):  # type: ignore[no-untyped-def]
    for i in range(len(x)):
        raw = novelty_step(f, bits, rows[i], 0, 0, x[i], iprm, offsets, weights)
        out[0, i] = raw
        out[1, i] = raw


class ContextNovelty(VectorModel):
    name = "novelty"
    outputs = ("score", "raw")

    def __init__(
        self, seed: int = 0, bins: int = 5, depth: int = 3, table_bits: int = 13, warmup: int = 250
    ) -> None:
        super().__init__(seed)
        if depth < 1 or bins < 1:
            raise ValueError("novelty needs bins >= 1 and depth >= 1")
        self.bins = bins
        self.depth = depth
        self.table_bits = table_bits
        self.warmup = warmup
        nsym = 3 * bins
        salt = (self.seed * 0x632BE59BD9B4E019 + 0x1234567) % 2**64
        # sequence codes of length l are < (nsym + 1) ** l: address the table
        # directly (no collisions, seed-independent) when they all fit
        self.seq_offsets = np.cumsum([0] + [(nsym + 1) ** j for j in range(1, depth)]).astype(
            np.int64
        )
        needed = int(self.seq_offsets[-1] + (nsym + 1) ** depth)
        self.direct = needed <= 2**table_bits
        self.table_bytes = (needed + 7) // 8 if self.direct else 2**table_bits // 8
        w = np.arange(1, depth + 1, dtype=np.float64)
        self.seq_weights = w / w.sum()
        self.iparams = np.array(
            [bins, depth, int(self.direct), nsym, warmup, 64 - table_bits, 0], dtype=np.int64
        )
        self.iparams[_I_SALT] = np.array([salt], dtype=np.uint64).view(np.int64)[0]

    def fields(self) -> dict[str, Field]:
        return {
            "n": Field(),
            "lo": Field(),
            "hi": Field(),
            "hist": Field(max(self.depth - 1, 0)),
            "bits": Field(self.table_bytes, "b"),
        }

    def _run(
        self, st: State, rows: np.ndarray, ts: np.ndarray, x: np.ndarray, out: np.ndarray
    ) -> None:
        _novelty_run(st.f, st.b, rows, x, self.iparams, self.seq_offsets, self.seq_weights, out)


register(ContextNovelty.name, lambda seed: ContextNovelty(seed))
