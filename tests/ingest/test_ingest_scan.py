"""The C scanners agree with the Python parsers that define the semantics.

Remote write: ``decode_remote_write`` (scanner) against ``_decode_remote_write_upb``.
Line protocol: ``parse_influx_line_protocol`` against the careful per-line parser
applied to every line in order, which is the reference; samples must come out
equal and in input order (so "last write wins" means the last line).
"""

from __future__ import annotations

import math
import struct

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ingest_strategies import series_strategy

from perfintel.batch import LineError
from perfintel.ingest import _scan, influx, influx_line, remote_write
from perfintel.ingest.influx import PRECISIONS, parse_influx_line_protocol
from perfintel.ingest.remote_write import (
    _decode_remote_write_upb,
    decode_remote_write,
    encode_remote_write,
)

NOW = 1_700_000_000_000


def test_the_extension_is_built():
    # Imported above: a missing build fails here rather than silently testing the fallback.
    assert influx._scan is _scan and remote_write._scan is _scan


def _flat(result):
    b = result.batch
    return [
        (b.series[i], int(t), struct.pack("<d", v))
        for i, t, v in zip(
            b.series_idx.tolist(), b.timestamps.tolist(), b.values.tolist(), strict=True
        )
    ]


def _same(a, b):
    assert _flat(a) == _flat(b)
    assert [str(e) for e in a.errors] == [str(e) for e in b.errors]
    assert a.metadata == b.metadata


# -- remote write ----------------------------------------------------------------------------


@given(series_strategy())
def test_rw_scanner_matches_the_protobuf_path(batch):
    body = encode_remote_write(batch, compress=False)
    assert _scan.rw_scan(body) is not None  # the plain shape
    _same(decode_remote_write(body), _decode_remote_write_upb(body))


def _ld(field: int, payload: bytes) -> bytes:
    return remote_write._varint(field << 3 | 2) + remote_write._varint(len(payload)) + payload


def _label(k: bytes, v: bytes) -> bytes:
    return _ld(1, _ld(1, k) + _ld(2, v))


def _sample(v: float, t: int) -> bytes:
    return _ld(2, b"\x09" + struct.pack("<d", v) + b"\x10" + remote_write._varint(t))


def test_rw_irregular_shapes_fall_back_and_agree():
    name = _label(b"__name__", b"up")
    job = _label(b"job", b"a")
    cases = [
        _ld(1, name + _sample(1.0, 5) + job),  # labels not contiguous
        _ld(1, name + job + _ld(2, b"\x10\x05\x09" + struct.pack("<d", 2.0))),  # fields reordered
        _ld(1, name + job + _ld(2, b"\x18\x01")),  # unknown sample field
        _ld(7, b"xx") + _ld(1, name + _sample(1.0, 5)),  # unknown top-level field
    ]
    for body in cases:
        fast = decode_remote_write(body)
        _same(fast, _decode_remote_write_upb(body))
    assert _scan.rw_scan(cases[0]) is None


def test_rw_invalid_labels_histograms_and_metadata_agree():
    body = (
        _ld(1, _label(b"__name__", b"ok") + _sample(1.0, 1))
        + _ld(1, _label(b"0bad", b"x") + _sample(2.0, 2))
        + _ld(1, _label(b"__name__", b"\xff\xfe") + _sample(3.0, 3))
        + _ld(1, _label(b"__name__", b"h") + _ld(4, b"\x08\x01"))
        + _ld(1, _sample(4.0, 4))  # no labels at all
        + _ld(3, b"\x08\x01" + _ld(2, b"ok") + _ld(4, b"help"))
    )
    fast = decode_remote_write(body)
    _same(fast, _decode_remote_write_upb(body))
    assert len(fast.errors) == 4 and len(fast.batch) == 1 and fast.metadata["ok"].type == "counter"


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_rw_scanner_on_arbitrary_bytes(body):
    scanned = _scan.rw_scan(body)
    try:
        slow = _decode_remote_write_upb(body)
    except Exception as exc:  # the fast path must fail the same way
        try:
            decode_remote_write(body)
        except type(exc):
            return
        raise AssertionError("the scanner accepted what the protobuf path rejects") from None
    _same(decode_remote_write(body), slow)
    if scanned is not None:
        info = np.frombuffer(scanned[0], np.int64).reshape(-1, 4)
        assert int(info[:, 2].sum()) * 8 == len(scanned[1])


# -- line protocol ---------------------------------------------------------------------------


def reference(data: bytes, precision: str = "ns", default_ts: int = NOW):
    """Every line through the careful parser, in order."""
    mul, div = PRECISIONS[precision]
    samples, errors = [], []
    for n, line in enumerate(data.split(b"\n"), 1):
        stripped = line.strip(b" \t\r")
        if not stripped or stripped.startswith(b"#"):
            continue
        try:
            got = influx_line.parse_line(line, mul, div, default_ts)
        except influx_line.LineFail as exc:
            errors.append(str(LineError(n, str(exc))))
            continue
        samples.extend((ls, ts, struct.pack("<d", v)) for ls, ts, v in got)
    return samples, errors


def check_lp(data: bytes, precision: str = "ns"):
    got = parse_influx_line_protocol(data, precision=precision, default_timestamp_ms=NOW)
    want_samples, want_errors = reference(data, precision)
    assert _flat(got) == want_samples
    assert [str(e) for e in got.errors] == want_errors
    return got


idents = st.sampled_from(["cpu", "m", "disk_io", "a.b", "9x", "Ünï", "x-y", "tag"])
tag_values = st.sampled_from(["h1", "s-2", "a=b", "", "v,w", "x y", 'q"', "é"])
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda f: f"{f:.6g}"),
    st.integers(-(2**64), 2**64).map(lambda i: f"{i}i"),
    st.integers(-5, 2**64 + 5).map(lambda i: f"{i}u"),
    st.integers(-(10**25), 10**25).map(str),
    st.sampled_from(
        [
            *["t", "T", "true", "True", "TRUE", "f", "false", "FALSE", "tRUE", "NaN", "-Inf"],
            *["+inf", "1.", ".5", "-.5e3", "1e", "1e+", "+1", "1_0", "0x10", "1.5i", "--1", ""],
            *['"s"', "00012", "1E400", "4.9e-325", "123456789012345678901234567890"],
            "9007199254740993",
        ]
    ),
)
timestamps = st.one_of(
    st.just(""),
    st.integers(-(2**63) - 2, 2**63 + 2).map(lambda t: f" {t}"),
    st.sampled_from([" 1700000000000000000", " -1", " x", " 1 2", "  5", " +5", " "]),
)


@st.composite
def lp_lines(draw):
    m = draw(idents)
    tags = draw(st.lists(st.tuples(idents, tag_values), max_size=3))
    fields = draw(st.lists(st.tuples(idents, numbers), min_size=0, max_size=3))
    key = m + "".join(f",{k}={v}" for k, v in tags)
    line = f"{key} {','.join(f'{k}={v}' for k, v in fields)}{draw(timestamps)}"
    return draw(st.sampled_from(["", " ", "#", "\r"])) + line if draw(st.booleans()) else line


@settings(max_examples=300)
@given(st.lists(lp_lines(), max_size=8), st.sampled_from(sorted(PRECISIONS)))
def test_lp_scanner_matches_the_careful_parser(lines, precision):
    check_lp("\n".join(lines).encode(), precision)


@given(st.binary(max_size=300))
def test_lp_scanner_on_arbitrary_bytes(data):
    check_lp(data)


def test_lp_float_conversion_is_correctly_rounded():
    rng = np.random.default_rng(7)
    vals = np.concatenate(
        [
            rng.standard_normal(2000) * 10.0 ** rng.integers(-30, 30, 2000),
            rng.integers(0, 2**62, 500).astype(np.float64),
            np.array([5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 0.1, 0.3]),
        ]
    )
    texts = (
        [repr(float(v)) for v in vals] + [f"{v:.17e}" for v in vals] + [f"{v:.3f}" for v in vals]
    )
    data = "\n".join(f"m v={t} {i}" for i, t in enumerate(texts)).encode()
    got = check_lp(data, "ms")
    want = np.array([float(t) for t in texts])
    assert np.array_equal(got.batch.values.view(np.int64), want.view(np.int64))


def test_lp_last_line_wins_across_both_paths():
    # Line 1 needs the careful path (NaN), line 2 does not: the batch keeps input order.
    r = check_lp(b"m v=NaN 5\nm v=1 5\nm\\ x v=2 5\n", "ms")
    assert [v for v in r.batch.values.tolist() if not math.isnan(v)] == [1.0, 2.0]
    assert math.isnan(r.batch.values[0])
