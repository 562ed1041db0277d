"""Contextual novelty: how many of the recent value patterns were never seen.

After a warm-up the value range seen so far is frozen and cut into ``bins``
equal bins (values outside the range fall into extra bins on either side, up to
one range away, then clip). At each step the sequences of the last 1..``depth``
bin symbols ending at the current sample index a per-series bitset of
``2**table_bits`` bits (directly when every possible sequence fits, else
through a hash salted by the seed); the raw score is the weighted
share of those sequences whose bit was not yet set, and then they are set.
It is the spirit of the contextual detectors that do well on NAB (CAD-OSE):
unusual *shapes* are flagged even when every single value is ordinary.
With the default 5 bins and depth 3 the table is addressed directly; hash
collisions (larger settings) can only hide novelty, never invent it.
"""

from __future__ import annotations

import numpy as np

from perfintel.analysis.anomaly.base import Field, State, StepOut, VectorModel, register

_MULT = np.uint64(0x9E3779B97F4A7C15)


class ContextNovelty(VectorModel):
    name = "novelty"

    def __init__(
        self,
        seed: int = 0,
        bins: int = 5,
        depth: int = 3,
        table_bits: int = 13,
        warmup: int = 250,
    ) -> None:
        super().__init__(seed)
        self.bins = bins
        self.depth = depth
        self.table_bits = table_bits
        self.warmup = warmup
        self._nsym = 3 * bins
        self._salt = np.uint64((self.seed * 0x632BE59BD9B4E019 + 0x1234567) % 2**64)
        self._shift = np.uint64(64 - table_bits)
        # sequence codes of length l are < (nsym + 1) ** l: address the table
        # directly (no collisions, seed-independent) when they all fit
        self._offsets = np.cumsum([0] + [(self._nsym + 1) ** j for j in range(1, depth)])
        needed = int(self._offsets[-1] + (self._nsym + 1) ** depth)
        self._direct = needed <= 2**table_bits
        self._table_bytes = (needed + 7) // 8 if self._direct else 2**table_bits // 8
        self._weights = np.arange(1, depth + 1, dtype=np.float64)
        self._weights /= self._weights.sum()

    def fields(self) -> dict[str, Field]:
        return {
            "n": Field(()),
            "lo": Field(()),
            "hi": Field(()),
            "hist": Field((self.depth - 1,), np.int64),
            "bits": Field((self._table_bytes,), np.uint8),
        }

    def step(self, st: State, rows: np.ndarray, ts: np.ndarray, x: np.ndarray) -> StepOut:
        n = st["n"][rows]
        first = n == 0
        lo = np.where(first, x, st["lo"][rows])
        hi = np.where(first, x, st["hi"][rows])
        learning = n < self.warmup
        lo = np.where(learning, np.minimum(lo, x), lo)
        hi = np.where(learning, np.maximum(hi, x), hi)
        rng = hi - lo
        rng = np.where(rng > 0, rng, 1.0 + np.abs(hi))
        b = np.floor((x - lo) / rng * self.bins)
        sym = (np.clip(b, -self.bins, 2 * self.bins - 1) + self.bins).astype(np.int64)
        hist = st["hist"][rows]  # most recent first
        # codes of the sequences of length 1..depth ending now
        codes = np.empty((len(rows), self.depth), dtype=np.int64)
        codes[:, 0] = sym
        for j in range(1, self.depth):
            codes[:, j] = codes[:, j - 1] * (self._nsym + 1) + hist[:, j - 1] + 1
        if self._direct:
            slot = codes + self._offsets[None, :]
        else:
            h = (codes.astype(np.uint64) + self._salt) * _MULT
            h = (h ^ (h >> np.uint64(29))) * _MULT
            slot = (h >> self._shift).astype(np.int64)
        byte = slot >> 3
        bit = (1 << (slot & 7)).astype(np.uint8)
        r2 = rows[:, None]
        bits_now = st["bits"][r2, byte]
        new = (bits_now & bit) == 0
        acc = np.zeros(len(rows))
        for j in range(self.depth):  # fixed order: identical for any batch size
            acc = acc + new[:, j] * self._weights[j]
        raw = np.where(learning, 0.0, acc)
        # set the bits (handle two sequences landing in the same byte)
        for j in range(self.depth):
            st["bits"][rows, byte[:, j]] |= bit[:, j]
        nh = np.empty_like(hist)
        if self.depth > 1:
            nh[:, 0] = sym
            nh[:, 1:] = hist[:, :-1]
        st["hist"][rows] = nh
        st["n"][rows] = n + 1
        st["lo"][rows] = lo
        st["hi"][rows] = hi
        return StepOut(score=raw, raw=raw)


register(ContextNovelty.name, lambda seed: ContextNovelty(seed))
