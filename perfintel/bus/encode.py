"""Split a batch by shard and encode each part, as an ingest process does per request.

The bytes are exactly ``encode_batch(part)`` for each ``part`` of
``split_by_shard`` (``tests/bus/test_codec.py`` binds the two); only the work
differs. An ingest process sees the same series in every request, so each
series' shard, its key (``series_key``) and its encoded label table entry (pair
count, name and value lengths, UTF-8 bytes) are computed once and cached; per request, what is left
is one cache lookup per series, a join of the cached bytes per part, and array
operations on the samples (one stable sort by shard instead of a mask per part).
"""

from __future__ import annotations

import threading

import numpy as np

from perfintel.batch import SampleBatch
from perfintel.bus.codec import encode_batch, header
from perfintel.bus.sharding import shard_of
from perfintel.model import LabelSet
from perfintel.series_index import series_key


class ShardEncoder:
    """``encode(batch)``: ``{shard: bytes}``, the encoded part of each shard the batch touches.

    Each series seen gets a number: its shard and pair count sit in arrays at that
    number, its label table bytes in lists, so a request's series are looked up with
    ``map`` and array indexing, without a Python step per series. Thread-safe. Remembers at most
    ``max_series`` series (then forgets them all and starts again): bounded memory
    whatever the clients send."""

    def __init__(self, shards: int, max_series: int = 1_000_000) -> None:
        self.shards = shards
        self.max_series = max_series
        self._lock = threading.Lock()
        self._clear()

    def _clear(self) -> None:
        self._ids: dict[LabelSet, int] = {}
        self._shard = np.zeros(1024, np.int64)
        self._pairs = np.zeros(1024, np.uint32)
        self._key = np.zeros(1024, np.uint64)
        self._lengths: list[bytes] = []  # u32 name/value lengths of each series' labels
        self._blobs: list[bytes] = []  # their UTF-8 names and values

    def __len__(self) -> int:
        return len(self._ids)

    def _add(self, labels: LabelSet) -> int:
        i = len(self._lengths)
        if i == len(self._shard):
            self._shard = np.concatenate([self._shard, np.zeros(i, np.int64)])
            self._pairs = np.concatenate([self._pairs, np.zeros(i, np.uint32)])
            self._key = np.concatenate([self._key, np.zeros(i, np.uint64)])
        strings = [part.encode() for pair in labels for part in pair]
        self._lengths.append(np.fromiter(map(len, strings), np.uint32, len(strings)).tobytes())
        self._blobs.append(b"".join(strings))
        self._shard[i] = shard_of(labels, self.shards)
        self._pairs[i] = len(labels)
        self._key[i] = series_key(labels)
        self._ids[labels] = i
        return i

    def _numbers(
        self, series: list[LabelSet]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[bytes], list[bytes]]:
        """The numbers of ``series``, with the tables they index (taken under the lock:
        requests are prepared on several threads at once, and a table that grows or is
        cleared is a new object, so the ones returned stay valid for these numbers)."""
        with self._lock:
            if len(self._ids) + len(series) > self.max_series:
                self._clear()
            ids = list(map(self._ids.get, series))
            if None in ids:
                ids = [self._add(s) if i is None else i for s, i in zip(series, ids, strict=True)]
            tables = self._shard, self._pairs, self._key, self._lengths, self._blobs
            return (np.array(ids, np.int64), *tables)

    def encode(self, batch: SampleBatch) -> dict[int, bytes]:
        if not len(batch):
            return {}
        ids, shard_of_id, pairs_of_id, key_of_id, lengths_of_id, blobs_of_id = self._numbers(
            batch.series
        )
        n_series = len(ids)
        of_series = shard_of_id[ids]
        first = int(of_series[0])
        if self.shards == 1 or bool((of_series == first).all()):
            return {first: encode_batch(batch)}
        idx = np.asarray(batch.series_idx)
        per_sample = of_series[idx]
        # the parts' samples and series, each in batch order: a stable sort by shard
        s_order = np.argsort(per_sample, kind="stable")
        o_order = np.argsort(of_series, kind="stable")
        sorted_shards = of_series[o_order]
        # shards with samples only (a series without samples travels with its shard's part)
        present = np.unique(per_sample)
        s_lo = np.searchsorted(per_sample[s_order], present, "left").tolist()
        s_hi = np.searchsorted(per_sample[s_order], present, "right").tolist()
        o_lo = np.searchsorted(sorted_shards, present, "left").tolist()
        o_hi = np.searchsorted(sorted_shards, present, "right").tolist()
        # a series' index within its part: its rank among the series of its shard
        local = np.empty(n_series, np.int32)
        group_start = np.searchsorted(sorted_shards, sorted_shards, "left")
        local[o_order] = np.arange(n_series) - group_start
        part_idx = local[idx[s_order]]
        part_ts = np.ascontiguousarray(batch.timestamps, np.int64)[s_order]
        part_vals = np.ascontiguousarray(batch.values, np.float64)[s_order]
        ordered_ids = ids[o_order]
        ordered = ordered_ids.tolist()
        counts = pairs_of_id[ordered_ids]
        lengths, blobs = lengths_of_id.__getitem__, blobs_of_id.__getitem__
        out: dict[int, bytes] = {}
        for k, shard in enumerate(present.tolist()):
            a, b, lo, hi = o_lo[k], o_hi[k], s_lo[k], s_hi[k]
            part_counts = counts[a:b]
            mine = ordered[a:b]
            out[shard] = b"".join(
                (
                    header(b - a, int(part_counts.sum(dtype=np.int64)), hi - lo),
                    part_counts.tobytes(),
                    key_of_id[ordered_ids[a:b]].tobytes(),
                    b"".join(map(lengths, mine)),
                    b"".join(map(blobs, mine)),
                    part_idx[lo:hi].tobytes(),
                    part_ts[lo:hi].tobytes(),
                    part_vals[lo:hi].tobytes(),
                )
            )
        return out
