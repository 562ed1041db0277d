"""The bus batch encoding round-trips every batch, and shards are stable across processes."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfintel.batch import SampleBatch
from perfintel.bus.codec import (
    BatchDecodeError,
    batch_summary,
    decode_batch,
    decode_keyed,
    encode_batch,
)
from perfintel.bus.sharding import series_hash, shard_of, split_by_shard
from perfintel.model import label_set
from perfintel.series_index import series_key, series_keys

texts = st.text(min_size=0, max_size=12)
labelsets = st.dictionaries(st.text(min_size=1, max_size=8), texts, max_size=4).map(label_set)


@st.composite
def batches(draw: st.DrawFn) -> SampleBatch:
    series = draw(st.lists(labelsets, min_size=1, max_size=6, unique=True))
    n = draw(st.integers(0, 40))
    idx = draw(st.lists(st.integers(0, len(series) - 1), min_size=n, max_size=n))
    ts = draw(st.lists(st.integers(-(2**62), 2**62), min_size=n, max_size=n))
    vals = draw(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=n, max_size=n))
    return SampleBatch(
        series,
        np.array(idx, np.int32),
        np.array(ts, np.int64),
        np.array(vals, np.float64),
    )


def _same(a: SampleBatch, b: SampleBatch) -> None:
    assert a.series == b.series
    assert np.array_equal(a.series_idx, b.series_idx)
    assert np.array_equal(a.timestamps, b.timestamps)
    # bit for bit: NaN payloads (staleness markers) survive
    assert a.values.tobytes() == b.values.tobytes()


@settings(max_examples=200, deadline=None)
@given(batches())
def test_encoding_round_trips(batch: SampleBatch) -> None:
    _same(batch, decode_batch(encode_batch(batch)))


@settings(max_examples=200, deadline=None)
@given(batches())
def test_keys_travel_with_the_batch_and_version_1_still_decodes(batch: SampleBatch) -> None:
    """Version 2 carries each series' stable key (what a worker identifies series by);
    an entry written by an older ingest (version 1, no keys) decodes to the same batch
    and the same keys, computed from its labels."""
    want = series_keys(batch.series)
    assert [int(k) for k in want] == [series_hash(s) or 1 for s in batch.series]
    for version in (1, 2):
        data = encode_batch(batch, version=version)
        assert data[4] == version
        got, keys = decode_keyed(data)
        _same(batch, got)
        assert keys.dtype == np.uint64 and np.array_equal(keys, want)
        assert batch_summary(data) == (
            len(batch),
            int(batch.timestamps.max()) if len(batch) else None,
        )


def test_series_keys_are_the_same_in_every_process() -> None:
    series = [label_set({"__name__": "cpu", "host": f"h{i}", "é": "ü"}) for i in range(20)]
    code = (
        "from perfintel.series_index import series_key\n"
        "from perfintel.model import label_set\n"
        "print([series_key(label_set({'__name__': 'cpu', 'host': f'h{i}', 'é': 'ü'}))"
        " for i in range(20)])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "3", "PATH": ""},
    ).stdout
    assert out.strip() == str([series_key(s) for s in series])
    assert len(set(out.split(","))) == 20


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_is_refused_with_a_decode_error(data: bytes) -> None:
    with contextlib.suppress(BatchDecodeError):
        decode_batch(data)


def test_truncated_and_foreign_versions_are_refused() -> None:
    data = encode_batch(SampleBatch.from_arrays({"__name__": "m"}, np.arange(3), np.ones(3)))
    foreign = data[:4] + b"\x03" + data[5:]
    as_v1 = data[:4] + b"\x01" + data[5:]  # a version-2 body read as version 1: trailing keys
    for bad in (data[:-1], data + b"x", b"XXXX" + data[4:], foreign, as_v1):
        with pytest.raises(BatchDecodeError):
            decode_batch(bad)


def test_staleness_marker_keeps_its_payload() -> None:
    stale = np.array([0x7FF0000000000002], np.uint64).view(np.float64)
    b = SampleBatch.from_arrays({"__name__": "m"}, np.array([1]), stale)
    assert decode_batch(encode_batch(b)).values.view(np.uint64)[0] == 0x7FF0000000000002


@settings(max_examples=100, deadline=None)
@given(batches(), st.integers(1, 7))
def test_split_by_shard_partitions_the_samples(batch: SampleBatch, shards: int) -> None:
    parts = split_by_shard(batch, shards)
    assert sum(len(p) for p in parts.values()) == len(batch)
    got = set()
    for shard, part in parts.items():
        for labels, ts, vals in part.iter_series():
            assert shard_of(labels, shards) == shard
            got.update((labels, int(t), v.tobytes()) for t, v in zip(ts, vals, strict=True))
    want = {
        (labels, int(t), v.tobytes())
        for labels, ts, vals in batch.iter_series()
        for t, v in zip(ts, vals, strict=True)
    }
    assert got == want


def test_shards_are_the_same_in_every_process() -> None:
    # str hashes are salted per process; the shard of a series must not be
    series = [label_set({"__name__": "cpu", "host": f"h{i}", "é": "ü"}) for i in range(50)]
    here = [shard_of(s, 16) for s in series]
    code = (
        "from perfintel.bus.sharding import shard_of\n"
        "from perfintel.model import label_set\n"
        "print([shard_of(label_set({'__name__': 'cpu', 'host': f'h{i}', 'é': 'ü'}), 16)"
        " for i in range(50)])"
    )
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        ).stdout
        assert out.strip() == str(here)
    assert len(set(here)) > 8  # spread over the shards, not all in one
