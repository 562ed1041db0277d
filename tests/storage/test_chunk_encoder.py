"""The C chunk encoder writes what codec.py writes (codec.py is the reference)."""

from __future__ import annotations

import itertools
import struct

import cramjam
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from perfintel.storage.duckdb import _chunks, codec

# Header sizes of each blob kind (codec.py's struct layouts), before any zstd frame.
TS_HEADER = {
    codec._TS_REGULAR: struct.calcsize("<Bqqi"),
    codec._TS_DELTAS: struct.calcsize("<BqqiB"),
}
VAL_HEADER = {
    codec._V_CONST: struct.calcsize("<BQi"),
    codec._V_DECIMAL: struct.calcsize("<BBqiB"),
    codec._V_XOR: struct.calcsize("<Bi"),
}


def test_the_extension_is_built():
    assert codec._chunks is _chunks


def split(blob: bytes, headers: dict[int, int]) -> tuple[bytes, bytes]:
    """Header, and the zstd frame's content (frames may differ in bytes, never in content)."""
    n = headers[blob[0]]
    body = blob[n:]
    return blob[:n], bytes(cramjam.zstd.decompress(body)) if body else b""


def check(ts: np.ndarray, vals: np.ndarray, bounds: np.ndarray) -> None:
    got_ts, got_vals = codec.encode_chunks(ts, vals, bounds)
    assert len(got_ts) == len(got_vals) == len(bounds) - 1
    for i, (a, b) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)):
        want_t, want_v = codec.encode_timestamps(ts[a:b]), codec.encode_values(vals[a:b])
        assert split(got_ts[i], TS_HEADER) == split(want_t, TS_HEADER)
        assert split(got_vals[i], VAL_HEADER) == split(want_v, VAL_HEADER)
        assert np.array_equal(codec.decode_timestamps(got_ts[i]), ts[a:b])
        assert np.array_equal(
            codec.decode_values(got_vals[i]).view(np.uint64), vals[a:b].view(np.uint64)
        )
    # The C decoder reads both encoders' blobs back exactly.
    py_ts = [codec.encode_timestamps(ts[a:b]) for a, b in itertools.pairwise(bounds)]
    py_vals = [codec.encode_values(vals[a:b]) for a, b in itertools.pairwise(bounds)]
    for blobs in [(got_ts, got_vals), (py_ts, py_vals)]:
        t_all, v_all, counts = codec.decode_chunks_flat(*blobs)
        assert np.array_equal(counts, np.diff(bounds))
        assert np.array_equal(t_all, ts[bounds[0] : bounds[-1]])
        assert np.array_equal(
            v_all.view(np.uint64),
            vals[bounds[0] : bounds[-1]].view(np.uint64),
        )


value_arrays = st.one_of(
    hnp.arrays(np.float64, st.integers(1, 60), elements=st.floats(allow_nan=True)),
    hnp.arrays(
        np.float64, st.integers(1, 60), elements=st.integers(-(10**6), 10**6).map(lambda i: i / 100)
    ),
    hnp.arrays(
        np.float64, st.integers(1, 60), elements=st.sampled_from([0.0, -0.0, 1.5, 1e15, 2.0**53])
    ),
    st.integers(1, 60).map(lambda n: np.full(n, 3.25)),
)


@given(value_arrays, st.data())
def test_matches_codec_py(vals, data):
    n = len(vals)
    step = data.draw(st.sampled_from([1, 10_000, 15_000]))
    jitter = data.draw(hnp.arrays(np.int64, n, elements=st.integers(-3, 3)))
    ts = (
        1_700_000_000_000 + step * np.arange(n) + (jitter if data.draw(st.booleans()) else 0)
    ).astype(np.int64)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, n - 1), max_size=4)) if n > 1 else []))
    check(ts, vals, np.array([0, *cuts, n], np.int64))


def test_realistic_flush():
    rng = np.random.default_rng(3)
    n = 720
    parts_t, parts_v = [], []
    for kind in range(6):
        t = 1_700_000_000_000 + 10_000 * np.arange(n)
        if kind == 1:
            t = t + rng.integers(0, 40, n)  # scrape jitter
        v = [
            np.cumsum(rng.integers(0, 50, n)).astype(float),  # counter
            np.round(rng.random(n) * 100, 2),  # percentage
            rng.standard_normal(n),  # noise: the XOR path
            np.full(n, 7.0),  # constant
            np.r_[rng.random(n - 1), np.nan],  # non-finite
            np.round(rng.random(n) * 1e12),  # large integers
        ][kind]
        parts_t.append(t.astype(np.int64))
        parts_v.append(v)
    check(np.concatenate(parts_t), np.concatenate(parts_v), np.arange(7, dtype=np.int64) * n)


def test_rejects_inconsistent_input():
    with pytest.raises(ValueError):
        _chunks.encode_chunks(np.zeros(3, np.int64), np.zeros(2), np.array([0, 3], np.int64))
    with pytest.raises(ValueError):
        _chunks.encode_chunks(np.zeros(3, np.int64), np.zeros(3), np.array([0, 2, 2, 3], np.int64))


def test_decoder_rejects_corrupt_blobs():
    ts_blobs, val_blobs = codec.encode_chunks(
        np.arange(50, dtype=np.int64) ** 2, np.random.default_rng(1).random(50), np.array([0, 50])
    )
    for bad_ts, bad_vals in [
        ([b"\x07" + ts_blobs[0][1:]], val_blobs),  # unknown kind
        (ts_blobs, [val_blobs[0][:-3]]),  # truncated frame
        (ts_blobs, [val_blobs[0][:1] + b"\x09" + val_blobs[0][2:]]),  # wrong length
    ]:
        with pytest.raises(ValueError):
            _chunks.decode_chunks(bad_ts, bad_vals)
