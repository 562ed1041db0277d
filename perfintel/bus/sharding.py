"""Series to stream shards: a stable hash of the label set, the same in every process.

``hash()`` of a str is salted per process (PYTHONHASHSEED), so two ingest
processes would disagree; BLAKE2b of the canonical label bytes does not.
Bytes 0xFE and 0xFF never occur in UTF-8, so they separate names and values
without ambiguity.
"""

from __future__ import annotations

import hashlib

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


def split_by_shard(batch: SampleBatch, shards: int) -> dict[int, SampleBatch]:
    """The samples of ``batch`` per shard, each part listing only its own series."""
    if not len(batch):
        return {}
    of_series = np.fromiter(
        (shard_of(s, shards) for s in batch.series), np.int64, len(batch.series)
    )
    if shards == 1 or bool((of_series == of_series[0]).all()):
        return {int(of_series[0]): batch}
    per_sample = of_series[batch.series_idx]
    out: dict[int, SampleBatch] = {}
    for shard in np.unique(per_sample).tolist():
        keep = per_sample == shard
        mine = np.flatnonzero(of_series == shard)
        remap = np.full(len(batch.series), -1, np.int32)
        remap[mine] = np.arange(len(mine), dtype=np.int32)
        out[int(shard)] = SampleBatch(
            [batch.series[i] for i in mine.tolist()],
            remap[batch.series_idx[keep]],
            batch.timestamps[keep],
            batch.values[keep],
        )
    return out
