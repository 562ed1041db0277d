"""Request-body content encodings: identity, gzip, deflate, snappy (block) and zstd.

``decode_body`` undoes an HTTP ``Content-Encoding`` with a hard cap on the
decoded size, so a small compressed body can never balloon into gigabytes
(a "zip bomb"):

* gzip and deflate are inflated as a stream, ``max_bytes + 1`` bytes at most,
  and rejected as soon as the cap is crossed. ``gzip`` accepts concatenated
  members (as ``gunzip`` does); ``deflate`` accepts the zlib wrapper that
  RFC 9110 prescribes and, as browsers do, raw deflate too.
* snappy is the *block* format used by Prometheus remote-write: its preamble
  declares the decoded length, which is checked before anything is
  allocated. The framed (streaming) format, which remote-write forbids, is
  recognised by its stream identifier and refused with a clear message.
* zstd decodes into a buffer of ``max_bytes + 1`` bytes, so decoding stops
  (and the body is refused) when the output would not fit; a frame header
  that declares a larger content size is refused without decoding.

Every failure is one of perfintel's exceptions: ``PayloadTooLargeError``
(HTTP 413), ``UnsupportedMediaError`` (415) naming the encoding, or
``ParseError`` (400) for a body that is not valid in the encoding it claims.
"""

from __future__ import annotations

import zlib

import cramjam

from perfintel.errors import ParseError, PayloadTooLargeError, UnsupportedMediaError

__all__ = ["SUPPORTED_ENCODINGS", "decode_body"]

SUPPORTED_ENCODINGS = ("identity", "gzip", "deflate", "snappy", "zstd")

_ALIASES = {"x-gzip": "gzip", "": "identity", "none": "identity"}
_SNAPPY_FRAMED_MAGIC = b"\xff\x06\x00\x00sNaPpY"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CHUNK = 256 * 1024


def decode_body(
    body: bytes, content_encoding: str | None, *, max_bytes: int, default: str | None = None
) -> bytes:
    """Decode ``body`` as ``content_encoding`` says, refusing more than ``max_bytes`` of output.

    ``default`` is the encoding assumed when the header is absent or empty
    (remote-write receivers pass ``"snappy"``). A comma-separated list of
    codings is undone last-first, as RFC 9110 specifies.

    >>> import gzip
    >>> decode_body(gzip.compress(b"up 1\\n"), "gzip", max_bytes=100)
    b'up 1\\n'
    """
    header = (content_encoding or "").strip()
    codings = [c.strip().lower() for c in header.split(",")] if header else []
    if not codings:
        codings = [(default or "identity").lower()]
    out = bytes(body)
    for coding in reversed(codings):
        out = _decode_one(out, _ALIASES.get(coding, coding), max_bytes)
    if len(out) > max_bytes:
        raise PayloadTooLargeError(
            f"request body is {len(out)} bytes, over the {max_bytes}-byte limit"
        )
    return out


def _decode_one(body: bytes, coding: str, max_bytes: int) -> bytes:
    if coding == "identity":
        return body
    if coding == "gzip":
        return _inflate(body, zlib.MAX_WBITS | 16, max_bytes, "gzip", multi_member=True)
    if coding == "deflate":
        # RFC 9110's "deflate" is the zlib format; some clients send raw deflate.
        raw = len(body) < 2 or (body[0] & 0x0F) != 8 or ((body[0] << 8) | body[1]) % 31 != 0
        if raw:
            return _inflate(body, -zlib.MAX_WBITS, max_bytes, "deflate", multi_member=False)
        try:
            return _inflate(body, zlib.MAX_WBITS, max_bytes, "deflate", multi_member=False)
        except ParseError:  # a raw stream whose first bytes happen to look like a zlib header
            return _inflate(body, -zlib.MAX_WBITS, max_bytes, "deflate", multi_member=False)
    if coding == "snappy":
        return _snappy(body, max_bytes)
    if coding == "zstd":
        return _zstd(body, max_bytes)
    raise UnsupportedMediaError(
        f"unsupported Content-Encoding {coding!r} (supported: {', '.join(SUPPORTED_ENCODINGS)})"
    )


def _too_large(coding: str, max_bytes: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"{coding}-decoded request body exceeds the {max_bytes}-byte limit")


def _inflate(body: bytes, wbits: int, max_bytes: int, coding: str, *, multi_member: bool) -> bytes:
    parts: list[bytes] = []
    total = 0
    data = body
    try:
        while True:
            d = zlib.decompressobj(wbits)
            pending = data
            while not d.eof:
                want = min(_CHUNK, max_bytes + 1 - total)
                chunk = d.decompress(pending, want)
                total += len(chunk)
                parts.append(chunk)
                if total > max_bytes:
                    raise _too_large(coding, max_bytes)
                pending = d.unconsumed_tail
                if not pending and len(chunk) < want and not d.eof:
                    raise ParseError(f"truncated {coding} body")
            data = d.unused_data
            if not (multi_member and data.strip(b"\x00")):
                break
    except zlib.error as exc:
        raise ParseError(f"invalid {coding} body: {exc}") from exc
    return b"".join(parts)


def _snappy(body: bytes, max_bytes: int) -> bytes:
    if body.startswith(_SNAPPY_FRAMED_MAGIC):
        raise UnsupportedMediaError(
            "snappy framed (stream) format is not accepted; use the block format "
            "(as Prometheus remote-write requires)"
        )
    try:
        declared = cramjam.snappy.decompress_raw_len(body)
    except cramjam.DecompressionError as exc:
        raise ParseError(f"invalid snappy body: {exc}") from exc
    if declared > max_bytes:
        raise PayloadTooLargeError(
            f"snappy body declares {declared} decoded bytes, over the {max_bytes}-byte limit"
        )
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as exc:
        raise ParseError(f"invalid snappy body: {exc}") from exc


def _zstd_declared_size(body: bytes) -> int | None:
    """Frame_Content_Size of the first zstd frame, when its header declares one."""
    if len(body) < 5 or not body.startswith(_ZSTD_MAGIC):
        return None
    fhd = body[4]
    fcs_flag = fhd >> 6
    single_segment = (fhd >> 5) & 1
    dict_id_size = (0, 1, 2, 4)[fhd & 3]
    pos = 5 + (0 if single_segment else 1) + dict_id_size
    size = (1 if single_segment else 0, 2, 4, 8)[fcs_flag]
    if size == 0 or len(body) < pos + size:
        return None
    value = int.from_bytes(body[pos : pos + size], "little")
    return value + 256 if size == 2 else value


def _zstd(body: bytes, max_bytes: int) -> bytes:
    declared = _zstd_declared_size(body)
    if declared is not None and declared > max_bytes:
        raise PayloadTooLargeError(
            f"zstd body declares {declared} decoded bytes, over the {max_bytes}-byte limit"
        )
    cap = max_bytes + 1 if declared is None else declared
    out = bytearray(cap)
    try:
        n = cramjam.zstd.decompress_into(body, out)
    except cramjam.DecompressionError as exc:
        if declared is None and "whole buffer" in str(exc):
            raise _too_large("zstd", max_bytes) from exc
        raise ParseError(f"invalid zstd body: {exc}") from exc
    if n > max_bytes:
        raise _too_large("zstd", max_bytes)
    return bytes(out[:n])
