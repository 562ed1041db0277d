import gzip
import zlib

import cramjam
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfintel.errors import ParseError, PayloadTooLargeError, UnsupportedMediaError
from perfintel.ingest.encoding import decode_body

PAYLOAD = b"cpu,host=a usage=1 1700000000000000000\n" * 1000


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        (None, PAYLOAD),
        ("identity", PAYLOAD),
        ("gzip", gzip.compress(PAYLOAD)),
        ("x-gzip", gzip.compress(PAYLOAD)),
        ("GZip", gzip.compress(PAYLOAD)),
        ("deflate", zlib.compress(PAYLOAD)),
        ("deflate", zlib.compress(PAYLOAD)[2:-4]),  # raw deflate, as some clients send
        ("snappy", bytes(cramjam.snappy.compress_raw(PAYLOAD))),
        ("zstd", bytes(cramjam.zstd.compress(PAYLOAD))),
        ("gzip, identity", gzip.compress(PAYLOAD)),
    ],
)
def test_decodes_each_encoding(encoding, body):
    assert decode_body(body, encoding, max_bytes=len(PAYLOAD)) == PAYLOAD


def test_default_applies_when_header_missing():
    body = bytes(cramjam.snappy.compress_raw(PAYLOAD))
    assert decode_body(body, None, max_bytes=10**6, default="snappy") == PAYLOAD
    assert decode_body(body, "", max_bytes=10**6, default="snappy") == PAYLOAD


def test_concatenated_gzip_members():
    body = gzip.compress(b"a\n") + gzip.compress(b"b\n")
    assert decode_body(body, "gzip", max_bytes=100) == b"a\nb\n"


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("identity", lambda b: b),
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("snappy", lambda b: bytes(cramjam.snappy.compress_raw(b))),
        ("zstd", lambda b: bytes(cramjam.zstd.compress(b))),
    ],
)
def test_oversize_payload_is_refused(encoding, compress):
    with pytest.raises(PayloadTooLargeError):
        decode_body(compress(PAYLOAD), encoding, max_bytes=len(PAYLOAD) - 1)


def test_gzip_bomb_stops_at_the_cap():
    bomb = gzip.compress(b"\0" * 50_000_000, compresslevel=9)  # ~50 kB on the wire
    assert len(bomb) < 100_000
    with pytest.raises(PayloadTooLargeError):
        decode_body(bomb, "gzip", max_bytes=1_000_000)


def test_snappy_declared_length_is_checked_before_decoding():
    # A block whose preamble claims 2**31 bytes: refused without allocating them.
    body = bytes([0x80, 0x80, 0x80, 0x80, 0x08]) + b"\x00abc"
    with pytest.raises(PayloadTooLargeError, match="declares"):
        decode_body(body, "snappy", max_bytes=10**6)


def test_zstd_stream_without_declared_size_is_capped():
    c = cramjam.zstd.Compressor()
    c.compress(b"x" * 200_000)
    body = bytes(c.finish())
    with pytest.raises(PayloadTooLargeError):
        decode_body(body, "zstd", max_bytes=1000)
    assert decode_body(body, "zstd", max_bytes=200_000) == b"x" * 200_000


def test_framed_snappy_is_refused():
    framed = bytes(cramjam.snappy.compress(PAYLOAD))
    with pytest.raises(UnsupportedMediaError, match="framed"):
        decode_body(framed, "snappy", max_bytes=10**6)


def test_unknown_encoding_is_named():
    with pytest.raises(UnsupportedMediaError, match="'br'"):
        decode_body(b"x", "br", max_bytes=10)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "snappy", "zstd"])
def test_corrupt_bodies_are_parse_errors(encoding):
    with pytest.raises(ParseError):
        decode_body(b"\x1f\x8b\x08\x00garbage-garbage", encoding, max_bytes=10**6)


def test_truncated_gzip_is_a_parse_error():
    with pytest.raises(ParseError, match="truncated"):
        decode_body(gzip.compress(PAYLOAD)[:50], "gzip", max_bytes=10**6)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(["gzip", "deflate", "snappy", "zstd", "identity"]))
def test_never_crashes_on_arbitrary_bytes(body, encoding):
    try:
        out = decode_body(body, encoding, max_bytes=10_000)
    except (ParseError, PayloadTooLargeError, UnsupportedMediaError):
        return
    assert len(out) <= 10_000
