"""An ingest process's cached shard encoder writes exactly the bytes of
``encode_batch(split_by_shard(...))``: the wire format of bus entries does not change."""

from __future__ import annotations

import sys
import threading

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from perfintel.batch import SampleBatch
from perfintel.bus.codec import decode_batch, encode_batch
from perfintel.bus.encode import ShardEncoder
from perfintel.bus.sharding import split_by_shard
from perfintel.model import label_set

from .test_codec import batches


def _reference(batch: SampleBatch, shards: int) -> dict[int, bytes]:
    return {k: encode_batch(part) for k, part in split_by_shard(batch, shards).items()}


@settings(max_examples=300, deadline=None)
@given(st.lists(batches(), min_size=1, max_size=4), st.integers(1, 7), st.integers(1, 12))
def test_encoder_writes_the_bytes_of_encode_batch_per_part(
    seq: list[SampleBatch], shards: int, max_series: int
) -> None:
    # one encoder over several batches: cached series, and (small max_series) forgetting
    enc = ShardEncoder(shards, max_series=max_series)
    bound = max_series
    for batch in seq:
        assert enc.encode(batch) == _reference(batch, shards)
        bound = max(bound, len(batch.series))  # one batch's series are always held
        assert len(enc) <= bound


def test_encoder_on_a_large_batch_of_known_series() -> None:
    rng = np.random.default_rng(3)
    series = [
        label_set({"__name__": "m", "pod": f"p{i}", "zone": "é" * (i % 3)}) for i in range(3000)
    ]
    enc = ShardEncoder(16)
    for _ in range(3):
        n = 9000
        batch = SampleBatch(
            series,
            rng.integers(0, len(series), n).astype(np.int32),
            rng.integers(0, 2**40, n),
            rng.normal(size=n),
        )
        got = enc.encode(batch)
        assert got == _reference(batch, 16)
        assert sum(len(decode_batch(b)) for b in got.values()) == n
    assert len(enc) == 3000


def test_concurrent_requests_encode_their_own_series() -> None:
    # an ingest process prepares requests on several worker threads at once: series first
    # seen by two threads at the same time must keep their own shard and labels
    shards = 8
    enc = ShardEncoder(shards, max_series=5_000)
    rng = np.random.default_rng(4)

    def make(t: int, k: int) -> SampleBatch:
        series = [
            label_set({"__name__": "m", "t": str(t), "k": str(k), "i": str(i)}) for i in range(60)
        ]
        n = 120
        return SampleBatch(
            series,
            rng.integers(0, len(series), n).astype(np.int32),
            np.arange(n, dtype=np.int64),
            np.arange(n, dtype=np.float64),
        )

    work = [[make(t, k) for k in range(60)] for t in range(6)]
    wrong: list[int] = []
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often: races show up
    try:

        def run(batches: list[SampleBatch]) -> None:
            for b in batches:
                if enc.encode(b) != _reference(b, shards):
                    wrong.append(1)

        threads = [threading.Thread(target=run, args=(w,)) for w in work]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        sys.setswitchinterval(interval)
    assert not wrong
