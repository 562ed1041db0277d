import contextlib

import cramjam
import numpy as np
import pytest
from google.protobuf import descriptor_pb2
from hypothesis import given, settings
from hypothesis import strategies as st
from ingest_strategies import as_dict, series_strategy

from perfintel.batch import MetricMetadata, SampleBatch
from perfintel.errors import ParseError
from perfintel.ingest.encoding import decode_body
from perfintel.ingest.remote_write import (
    decode_remote_write,
    decode_remote_write_v2,
    encode_remote_write,
    encode_remote_write_v2,
)
from perfintel.model import STALE_NAN, is_stale, label_set


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(num: int, payload: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _label(name: str, value: str) -> bytes:
    return _field(1, _field(1, name.encode()) + _field(2, value.encode()))


def _timeseries(labels: list[tuple[str, str]], samples: list[bytes]) -> bytes:
    body = b"".join(_label(k, v) for k, v in labels) + b"".join(_field(2, s) for s in samples)
    return _field(1, body)


def _sample(value: float, ts: int) -> bytes:
    return b"\x09" + np.float64(value).tobytes() + b"\x10" + _varint(ts)


@settings(max_examples=120, deadline=None)
@given(series_strategy())
def test_round_trip_is_bit_exact(batch):
    body = decode_body(encode_remote_write(batch), "snappy", max_bytes=10**7)
    result = decode_remote_write(body)
    assert not result.errors
    assert as_dict(result.batch) == as_dict(batch)


@settings(max_examples=80, deadline=None)
@given(series_strategy())
def test_v2_round_trip_is_bit_exact(batch):
    raw = bytes(cramjam.snappy.decompress_raw(encode_remote_write_v2(batch)))
    result = decode_remote_write_v2(raw)
    assert not result.errors
    assert as_dict(result.batch) == as_dict(batch)


def test_staleness_marker_and_zero_values_survive():
    ts = np.array([0, 1, 2, 3, -5, 2**62], np.int64)
    vals = np.array([0.0, -0.0, STALE_NAN, float("nan"), float("inf"), -1.5])
    batch = SampleBatch.from_arrays({"__name__": "m", "a": "b"}, ts, vals)
    out = decode_remote_write(encode_remote_write(batch, compress=False)).batch
    order = np.argsort(out.timestamps)
    assert out.timestamps[order].tolist() == sorted(ts.tolist())
    got = dict(zip(out.timestamps.tolist(), out.values.view(np.uint64).tolist(), strict=True))
    want = dict(zip(ts.tolist(), vals.view(np.uint64).tolist(), strict=True))
    assert got == want
    assert is_stale(out.values).sum() == 1


def test_hand_built_request_with_unusual_sample_layouts():
    odd_sample = b"\x10" + _varint(7) + b"\x09" + np.float64(2.5).tobytes()  # fields reversed
    body = _timeseries(
        [("__name__", "up"), ("job", "x")],
        [_sample(1.0, 1000), b"", odd_sample, b"\x09" + np.float64(3.0).tobytes()],
    )
    result = decode_remote_write(body)
    assert not result.errors
    got = sorted(zip(result.batch.timestamps.tolist(), result.batch.values.tolist(), strict=True))
    assert got == [(0, 0.0), (0, 3.0), (7, 2.5), (1000, 1.0)]
    assert result.batch.series == [(("__name__", "up"), ("job", "x"))]


def test_invalid_series_are_reported_and_others_kept():
    body = (
        _timeseries([("__name__", "ok")], [_sample(1.0, 1)])
        + _timeseries([("__name__", "0bad")], [_sample(2.0, 2)])
        + _timeseries([("__name__", "dup"), ("a", "1"), ("a", "2")], [_sample(3.0, 3)])
        + _timeseries([("job", "nameless")], [_sample(4.0, 4)])
        + _timeseries([("__name__", "ok2")], [_sample(5.0, 5)])
    )
    result = decode_remote_write(body)
    assert sorted(result.batch.values.tolist()) == [1.0, 5.0]
    reasons = [str(e) for e in result.errors]
    assert len(reasons) == 3
    assert reasons[0].startswith("timeseries[1]: invalid metric name '0bad'")
    assert "repeats label 'a'" in reasons[1]
    assert reasons[2].startswith("timeseries[3]: series has no metric name")
    assert all(e.line == 0 for e in result.errors)


def test_empty_label_values_are_dropped_like_prometheus():
    body = _timeseries([("__name__", "m"), ("empty", ""), ("z", "1")], [_sample(1.0, 1)])
    assert decode_remote_write(body).batch.series == [(("__name__", "m"), ("z", "1"))]


def test_native_histograms_are_reported_as_unsupported():
    ts = _label("__name__", "h") + _field(4, b"\x08\x01")
    result = decode_remote_write(_field(1, ts))
    assert len(result.batch) == 0
    assert "native histogram" in result.errors[0].reason


def test_metadata_is_read():
    batch = SampleBatch.from_arrays({"__name__": "http_total"}, np.array([1]), np.array([1.0]))
    md = {"http": MetricMetadata(type="counter", help="Requests.", unit="")}
    result = decode_remote_write(encode_remote_write(batch, md, compress=False))
    assert result.metadata == md


def test_v2_symbols_and_metadata():
    def msg(*parts: bytes) -> bytes:
        return b"".join(parts)

    symbols = ["", "__name__", "up", "job", "x", "Is it up?"]
    sym = b"".join(_field(4, s.encode()) for s in symbols)
    refs = _varint(1 << 3 | 2) + _varint(4) + bytes([1, 2, 3, 4])  # packed labels_refs
    metadata = _field(5, msg(b"\x08\x02", b"\x18" + _varint(5)))  # GAUGE, help_ref=5
    ts = _field(5, refs + _field(2, _sample(1.0, 10)) + metadata)
    result = decode_remote_write_v2(sym + ts)
    assert not result.errors
    assert result.batch.series == [(("__name__", "up"), ("job", "x"))]
    assert result.metadata == {"up": MetricMetadata(type="gauge", help="Is it up?")}


def test_v2_bad_refs_are_errors():
    sym = b"".join(_field(4, s.encode()) for s in ["", "__name__", "up"])
    bad = _field(5, _varint(1 << 3 | 2) + _varint(2) + bytes([1, 9]) + _field(2, _sample(1, 1)))
    result = decode_remote_write_v2(sym + bad)
    assert len(result.batch) == 0
    assert "outside the symbols table" in result.errors[0].reason


def test_v2_first_symbol_must_be_empty():
    with pytest.raises(ParseError, match="symbols"):
        decode_remote_write_v2(_field(4, b"x"))


def test_garbage_body_is_a_parse_error():
    with pytest.raises(ParseError):
        decode_remote_write(b"\xff\xff\xff\xff")


def test_decoder_matches_protobuf_schema_field_numbers():
    # The message classes are built from a FileDescriptorProto at import time.
    from perfintel.ingest import remote_write

    assert isinstance(remote_write._WriteRequest.DESCRIPTOR.file.serialized_pb, bytes)
    fdp = descriptor_pb2.FileDescriptorProto.FromString(
        remote_write._WriteRequest.DESCRIPTOR.file.serialized_pb
    )
    fields = {(m.name, f.name): f.number for m in fdp.message_type for f in m.field}
    assert fields[("WriteRequest", "timeseries")] == 1
    assert fields[("TimeSeries", "labels")] == 1
    assert fields[("TimeSeries", "samples")] == 2
    assert fields[("Sample", "value")] == 1
    assert fields[("Sample", "timestamp")] == 2


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_v1_never_crashes_on_arbitrary_bytes(body):
    try:
        result = decode_remote_write(body)
    except ParseError:
        return
    assert len(result.batch.values) == len(result.batch.timestamps)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_v2_never_crashes_on_arbitrary_bytes(body):
    try:
        decode_remote_write_v2(body)
    except ParseError:
        return


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_never_crashes_on_mutated_requests(data):
    batch = SampleBatch.from_arrays(
        {"__name__": "m", "a": "b"}, np.arange(5) * 1000 + 1_700_000_000_000, np.arange(5.0)
    )
    raw = bytearray(encode_remote_write(batch, compress=False))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    with contextlib.suppress(ParseError):
        decode_remote_write(bytes(raw))


def test_encoder_writes_what_protobuf_writes() -> None:
    """The array-built sample records are byte for byte protobuf's own serialisation of
    the 1.0 schema: zero values and timestamps left out, negative and huge timestamps as
    10-byte varints, -0.0, NaN, infinities and subnormals kept."""
    from perfintel.ingest.remote_write import _MSG

    rng = np.random.default_rng(0)
    edges = [0, -1, 1, 127, 128, 16383, 16384, 2**35, -(2**40), 1_700_000_000_000, 2**62]
    specials = [0.0, -0.0, 1.5, np.nan, np.inf, -np.inf, 1e308, 5e-324]
    for _ in range(200):
        series = []
        for i in range(int(rng.integers(1, 4))):
            n = int(rng.integers(1, 40))
            ts = rng.choice(edges, n) + rng.integers(-2, 3, n)
            vals = rng.choice(specials, n)
            labels = {"__name__": f"m{i}", "a": "x" if i % 2 else ""}
            series.append(SampleBatch.from_arrays(label_set(labels), ts, vals))
        batch = SampleBatch.concat(series)
        mix = rng.permutation(len(batch))  # series' samples interleaved, as a request has them
        batch = SampleBatch(
            batch.series, batch.series_idx[mix], batch.timestamps[mix], batch.values[mix]
        )
        want = _MSG["WriteRequest"]()
        for labels, ts, vals in batch.iter_series():
            order = np.argsort(ts, kind="stable")
            t = want.timeseries.add()
            for k, v in sorted(labels):
                if v:
                    t.labels.add(name=k, value=v)
            for tv, vv in zip(ts[order].tolist(), vals[order].tolist(), strict=True):
                t.samples.add(value=vv, timestamp=tv)
        assert encode_remote_write(batch, compress=False) == want.SerializeToString()
