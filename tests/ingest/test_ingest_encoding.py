import gzip
import itertools
import zlib

import cramjam
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfintel.errors import ParseError, PayloadTooLargeError, UnsupportedMediaError
from perfintel.ingest.encoding import PIECE_BYTES, BodyDecoder, decode_body

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


# -- streaming, bounds on members and output (issue 10, item 3) ----------------------------


EMPTY_GZIP = gzip.compress(b"")


def test_many_gzip_members_are_refused_naming_the_limit():
    body = EMPTY_GZIP * 1001
    with pytest.raises(PayloadTooLargeError, match="more than 1000 members"):
        decode_body(body, "gzip", max_bytes=10**6, max_members=1000)
    assert (
        decode_body(EMPTY_GZIP * 1000 + gzip.compress(b"x"), "gzip", max_bytes=10, max_members=1001)
        == b"x"
    )


def test_four_megabytes_of_empty_members_stop_at_the_bound():
    # The body that took 68.6 s on the event loop: refused after max_members decompressors.
    body = EMPTY_GZIP * (4_000_000 // len(EMPTY_GZIP))
    with pytest.raises(PayloadTooLargeError, match=r"limits\.max_body_members"):
        decode_body(
            body,
            "gzip",
            max_bytes=10**8,
            max_members=1000,
            members_limit_name="limits.max_body_members",
        )


def test_gzip_padding_between_and_after_members_is_accepted():
    body = gzip.compress(b"a") + b"\0" * 10 + gzip.compress(b"b") + b"\0" * 3
    assert decode_body(body, "gzip", max_bytes=10) == b"ab"


def _zstd_frames(*parts: bytes) -> bytes:
    return b"".join(bytes(cramjam.zstd.compress(p)) for p in parts)


def test_zstd_concatenated_frames_and_their_bound():
    assert decode_body(_zstd_frames(b"a\n", b"b\n"), "zstd", max_bytes=10) == b"a\nb\n"
    with pytest.raises(PayloadTooLargeError, match="more than 2 frames"):
        decode_body(_zstd_frames(b"a", b"b", b"c"), "zstd", max_bytes=10, max_members=2)


def test_zstd_frame_asking_for_a_huge_window_is_refused():
    # Frame header: magic, descriptor 0 (no content size), window 2**30; one raw block "x".
    frame = b"\x28\xb5\x2f\xfd" + b"\x00" + bytes([(30 - 10) << 3]) + b"\x09\x00\x00x"
    with pytest.raises(ParseError, match="window"):
        decode_body(frame, "zstd", max_bytes=10**6)


def test_truncated_zstd_is_a_parse_error():
    body = bytes(cramjam.zstd.compress(PAYLOAD))
    with pytest.raises(ParseError, match="truncated"):
        decode_body(body[: len(body) // 2], "zstd", max_bytes=10**6)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "zstd", "identity"])
def test_a_bomb_streams_in_bounded_pieces_without_a_total_bound(encoding):
    compress = {
        "gzip": gzip.compress,
        "deflate": zlib.compress,
        "zstd": lambda b: bytes(cramjam.zstd.compress(b)),
        "identity": lambda b: b,
    }[encoding]
    body = compress(b"\0" * 20_000_000)
    d = BodyDecoder(encoding, max_bytes=None)
    total = 0
    for chunk in (body[i : i + 4096] for i in range(0, len(body), 4096)):
        for piece in d.feed(chunk):
            assert len(piece) <= PIECE_BYTES
            total += len(piece)
    for piece in d.finish():
        assert len(piece) <= PIECE_BYTES
        total += len(piece)
    assert total == 20_000_000


COMPRESSORS = {
    "identity": lambda b: b,
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "raw-deflate": lambda b: zlib.compress(b)[2:-4],
    "snappy": lambda b: bytes(cramjam.snappy.compress_raw(b)),
    "zstd": lambda b: bytes(cramjam.zstd.compress(b)),
}


@settings(max_examples=60, deadline=None)
@given(
    st.binary(max_size=5000),
    st.sampled_from(sorted(COMPRESSORS)),
    st.lists(st.integers(min_value=0, max_value=6000), max_size=8),
)
def test_feeding_in_any_pieces_decodes_the_same(payload, name, cuts):
    body = COMPRESSORS[name](payload)
    encoding = "deflate" if name == "raw-deflate" else name
    bounds = sorted({0, len(body), *(c for c in cuts if c < len(body))})
    d = BodyDecoder(encoding, max_bytes=len(payload))
    out = [p for a, b in itertools.pairwise(bounds) for p in d.feed(body[a:b])]
    out += list(d.finish())
    assert b"".join(out) == payload == decode_body(body, encoding, max_bytes=len(payload))
