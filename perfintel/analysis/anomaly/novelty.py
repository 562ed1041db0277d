"""Contextual novelty: how many of the recent value patterns were never seen.

After a warm-up the value range seen so far is frozen and cut into ``bins``
equal bins (values outside the range fall into extra bins on either side, up to
one range away, then clip). At each step the sequences of the last 1..``depth``
bin symbols ending at the current sample index a per-series bitset (directly:
every possible sequence has its own bit, so nothing collides and no seed
matters); the raw score is the weighted share of those sequences whose bit was
not yet set, and then they are set. It is the spirit of the contextual
detectors that do well on NAB (CAD-OSE): unusual *shapes* are flagged even when
every single value is ordinary.

``fold`` (0: off) is a memory setting. The longest sequences are nearly all of the
table's 7,239 bits at the defaults, of which a series sets a few hundred; with a fold,
those whose symbols all lie within the warm-up range keep their own bit (``bins **
depth`` of them: 216) and the others share ``fold`` bits through a hash of their code,
so such a never-seen sequence may pass for seen (less novelty, never more).
``fold=256`` takes a grid's table from 905 to 107 bytes; its effect on NAB is in
``BENCHMARKS.md`` ("compact detector state").

Where the bin edges fall should not decide what is novel: the value is
quantised on ``grids`` grids, each shifted by 1/``grids`` of a bin, each with
its own history and table, and the raw novelty is their mean.
"""

from __future__ import annotations

import numpy as np

from perfintel.analysis.anomaly import steps
from perfintel.analysis.anomaly.base import Field, State, VectorModel, register

#: Most bits of one table (``(3 bins + 1) ** depth`` and shorter sequences).
MAX_TABLE_BITS = 1 << 16


class ContextNovelty(VectorModel):
    name = "novelty"
    outputs = ("score", "raw")
    DEFAULT_BINS = 6
    DEFAULT_GRIDS = 3

    def __init__(
        self,
        seed: int = 0,
        bins: int = DEFAULT_BINS,
        depth: int = 3,
        warmup: int = 250,
        grids: int = DEFAULT_GRIDS,
        fold: int = 0,
    ) -> None:
        super().__init__(seed)
        nsym = 3 * bins
        if not (bins >= 1 and nsym < 255 and depth >= 1 and grids >= 1):
            raise ValueError("novelty needs 1 <= bins <= 84, depth >= 1 and grids >= 1")
        self.bins = bins
        self.depth = depth
        self.warmup = warmup
        self.grids = grids
        if not 0 <= fold <= MAX_TABLE_BITS:
            raise ValueError(f"novelty fold must be between 0 (off) and {MAX_TABLE_BITS}")
        self.fold = fold
        # sequences of length l+1 have codes below (nsym + 1) ** (l + 1); each
        # length has its own stretch of the table
        self.seq_offsets = np.cumsum([0] + [(nsym + 1) ** j for j in range(1, depth)]).astype(
            np.int64
        )
        needed = int(self.seq_offsets[-1] + (bins**depth + fold if fold else (nsym + 1) ** depth))
        if needed > MAX_TABLE_BITS:
            raise ValueError(f"novelty table of {needed} bits: use fewer bins or a smaller depth")
        self.table_bytes = (needed + 7) // 8
        w = np.arange(1, depth + 1, dtype=np.float64)
        self.seq_weights = w / w.sum()
        self.iparams = np.array(
            [bins, depth, grids, warmup, self.table_bytes, fold], dtype=np.int64
        )

    def fields(self) -> dict[str, Field]:
        # in the order of the slots in ``steps`` (V_*)
        return {
            "n": Field(),
            "lo": Field(),
            "hi": Field(),
            "symbols": Field(self.grids * (self.depth - 1), "b"),
            "seen": Field(self.grids * self.table_bytes, "b"),
        }

    def _run(
        self, st: State, rows: np.ndarray, ts: np.ndarray, x: np.ndarray, out: np.ndarray
    ) -> None:
        steps.novelty_run(
            st.f, st.b, rows, x, self.iparams, self.seq_offsets, self.seq_weights, out
        )


register(ContextNovelty.name, lambda seed: ContextNovelty(seed))
