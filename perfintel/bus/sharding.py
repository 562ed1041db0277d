"""Series to stream shards: a stable hash of the label set, the same in every process.

``hash()`` of a str is salted per process (PYTHONHASHSEED), so two ingest
processes would disagree; BLAKE2b of the canonical label bytes does not.
Bytes 0xFE and 0xFF never occur in UTF-8, so they separate names and values
without ambiguity.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

from perfintel.batch import SampleBatch
from perfintel.model import LabelSet


def series_hash(labels: LabelSet) -> int:
    """A 64-bit hash of ``labels`` (sorted pairs, as ``label_set`` makes them)."""
    h = hashlib.blake2b(digest_size=8)
    for name, value in labels:
        h.update(name.encode())
        h.update(b"\xff")
        h.update(value.encode())
        h.update(b"\xfe")
    return int.from_bytes(h.digest(), "little")


def shard_of(labels: LabelSet, shards: int) -> int:
    return series_hash(labels) % shards


class ShardCache:
    """Shards of series seen before (hashing is most of the cost of splitting a batch);
    forgets everything past ``max_series`` entries, so its memory stays bounded."""

    def __init__(self, shards: int, max_series: int = 1_000_000) -> None:
        self.shards = shards
        self.max_series = max_series
        self._known: dict[LabelSet, int] = {}

    def __call__(self, labels: LabelSet) -> int:
        shard = self._known.get(labels)
        if shard is None:
            if len(self._known) >= self.max_series:
                self._known.clear()
            shard = self._known[labels] = shard_of(labels, self.shards)
        return shard


def split_by_shard(
    batch: SampleBatch, shards: int, shard: Callable[[LabelSet], int] | None = None
) -> dict[int, SampleBatch]:
    """The samples of ``batch`` per shard, each part listing only its own series
    (``shard``: the shard of a label set, e.g. a ``ShardCache``; default ``shard_of``)."""
    if not len(batch):
        return {}
    of = shard if shard is not None else (lambda s: shard_of(s, shards))
    of_series = np.fromiter((of(s) for s in batch.series), np.int64, len(batch.series))
    if shards == 1 or bool((of_series == of_series[0]).all()):
        return {int(of_series[0]): batch}
    per_sample = of_series[batch.series_idx]
    out: dict[int, SampleBatch] = {}
    for k in np.unique(per_sample).tolist():
        keep = per_sample == k
        mine = np.flatnonzero(of_series == k)
        remap = np.full(len(batch.series), -1, np.int32)
        remap[mine] = np.arange(len(mine), dtype=np.int32)
        out[int(k)] = SampleBatch(
            [batch.series[i] for i in mine.tolist()],
            remap[batch.series_idx[keep]],
            batch.timestamps[keep],
            batch.values[keep],
        )
    return out
