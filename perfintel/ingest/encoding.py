"""Request-body content encodings: identity, gzip, deflate, snappy (block) and zstd.

``BodyDecoder`` undoes an HTTP ``Content-Encoding`` as a stream: compressed
bytes go in as they arrive, decoded pieces of at most ``PIECE_BYTES`` come out,
and two bounds hold whatever the input:

* the **decoded size**: ``max_bytes`` in all (``None``: no total bound, for
  the streaming import), so a small compressed body can never balloon into
  gigabytes (a "zip bomb"); a single ``feed`` never holds more than a piece
  of output either, because the pieces are yielded lazily;
* the **number of members** (gzip) or frames (zstd): ``max_members``. A body of
  thousands of empty gzip members costs a decompressor each; without the bound
  a few megabytes of them kept a core busy for a minute.

The cost is linear in the input: compressed input is handed to zlib in slices
of ``_IN_SLICE`` bytes, so the copy zlib makes of the unused input at the end
of each member is at most one slice.

* gzip accepts concatenated members (as ``gunzip`` does) and NUL padding
  between and after them; ``deflate`` accepts the zlib wrapper that RFC 9110
  prescribes and, as browsers do, raw deflate too.
* snappy is the *block* format used by Prometheus remote-write, which cannot
  be decoded in pieces: its preamble declares the decoded length, checked
  (against ``max_bytes``) before anything is buffered beyond it; the block is
  decoded at the end. The framed format, which remote-write forbids, is
  recognised by its stream identifier and refused with a clear message.
* zstd streams through the system's ``libzstd.so.1`` (which the chunk codec
  uses too; Debian's package manager depends on it), with the decoder's
  window limited to ``2**_ZSTD_WINDOW_LOG_MAX`` bytes so a frame cannot make
  it allocate more.

Every failure is one of perfintel's exceptions: ``PayloadTooLargeError``
(HTTP 413) naming the limit, ``UnsupportedMediaError`` (415) naming the
encoding, or ``ParseError`` (400) for a body that is not valid in the
encoding it claims. ``decode_body`` is the whole-body form of the same decoder.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import zlib
from collections.abc import Iterable, Iterator
from typing import Protocol

import cramjam

from perfintel.errors import ParseError, PayloadTooLargeError, UnsupportedMediaError

__all__ = [
    "DEFAULT_MAX_MEMBERS",
    "PIECE_BYTES",
    "SUPPORTED_ENCODINGS",
    "BodyDecoder",
    "decode_body",
    "is_identity",
    "iter_decoded",
]

SUPPORTED_ENCODINGS = ("identity", "gzip", "deflate", "snappy", "zstd")
PIECE_BYTES = 256 * 1024  # the largest decoded piece a decoder hands out at once
DEFAULT_MAX_MEMBERS = 1000

_ALIASES = {"x-gzip": "gzip", "": "identity", "none": "identity"}
_SNAPPY_FRAMED_MAGIC = b"\xff\x06\x00\x00sNaPpY"
_IN_SLICE = 8 * 1024  # compressed bytes handed to zlib at a time (bounds unused_data copies)
_RAW_FALLBACK_BYTES = 64 * 1024  # input kept to retry a "zlib" deflate body as raw deflate
_ZSTD_WINDOW_LOG_MAX = 23  # 8 MiB: what `zstd -19` uses; `--long` bodies are refused


def _codings(content_encoding: str | None, default: str | None) -> list[str]:
    header = (content_encoding or "").strip()
    codings = [c.strip().lower() for c in header.split(",")] if header else []
    if not codings:
        codings = [(default or "identity").lower()]
    return [_ALIASES.get(c, c) for c in codings]


def is_identity(content_encoding: str | None, default: str | None = None) -> bool:
    """Whether the body needs no decoding at all (no work worth a worker thread)."""
    return all(c == "identity" for c in _codings(content_encoding, default))


class _Stage(Protocol):
    def feed(self, data: bytes) -> Iterator[bytes]: ...
    def finish(self) -> Iterator[bytes]: ...


class BodyDecoder:
    """Decode a body in ``Content-Encoding`` as it arrives, within the bounds.

    ``feed`` and ``finish`` return lazy iterators of decoded pieces (each at
    most ``PIECE_BYTES``): consume them before the next call. A comma-separated
    list of codings is undone last-first, as RFC 9110 specifies. ``default`` is
    the encoding assumed when the header is absent or empty (remote-write
    receivers pass ``"snappy"``). ``limit_name`` is how 413 messages name the
    ``max_bytes`` limit (a setting's name, for the service).

    >>> import gzip
    >>> d = BodyDecoder("gzip", max_bytes=100)
    >>> b"".join([*d.feed(gzip.compress(b"up 1\\n")), *d.finish()])
    b'up 1\\n'
    """

    def __init__(
        self,
        content_encoding: str | None,
        *,
        max_bytes: int | None,
        max_members: int = DEFAULT_MAX_MEMBERS,
        default: str | None = None,
        limit_name: str | None = None,
        members_limit_name: str | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.limit_name = limit_name or f"the {max_bytes}-byte limit"
        self.decoded_bytes = 0
        members_name = members_limit_name or f"the limit of {max_members}"
        # The first coding listed was applied first, so it is undone last.
        self._stages: list[_Stage] = [
            _stage(c, max_bytes, self.limit_name, max_members, members_name)
            for c in reversed(_codings(content_encoding, default))
        ]

    def feed(self, data: bytes) -> Iterator[bytes]:
        return self._count(self._through(0, iter((bytes(data),)), finishing=False))

    def finish(self) -> Iterator[bytes]:
        return self._count(self._through(0, iter(()), finishing=True))

    def _through(self, i: int, pieces: Iterator[bytes], *, finishing: bool) -> Iterator[bytes]:
        if i == len(self._stages):
            yield from pieces
            return
        stage = self._stages[i]

        def fed() -> Iterator[bytes]:
            for piece in pieces:
                yield from stage.feed(piece)
            if finishing:
                yield from stage.finish()

        yield from self._through(i + 1, fed(), finishing=finishing)

    def _count(self, pieces: Iterator[bytes]) -> Iterator[bytes]:
        for piece in pieces:
            if not piece:
                continue
            self.decoded_bytes += len(piece)
            if self.max_bytes is not None and self.decoded_bytes > self.max_bytes:
                raise PayloadTooLargeError(f"decoded request body exceeds {self.limit_name}")
            yield piece


def decode_body(
    body: bytes,
    content_encoding: str | None,
    *,
    max_bytes: int,
    max_members: int = DEFAULT_MAX_MEMBERS,
    default: str | None = None,
    limit_name: str | None = None,
    members_limit_name: str | None = None,
) -> bytes:
    """The whole body decoded by a ``BodyDecoder``; over ``max_bytes`` is a 413.

    >>> import gzip
    >>> decode_body(gzip.compress(b"up 1\\n"), "gzip", max_bytes=100)
    b'up 1\\n'
    """
    d = BodyDecoder(
        content_encoding,
        max_bytes=max_bytes,
        max_members=max_members,
        default=default,
        limit_name=limit_name,
        members_limit_name=members_limit_name,
    )
    out = [*d.feed(body), *d.finish()]
    if len(out) == 1:
        return out[0]
    return b"".join(out)


def _stage(
    coding: str, max_bytes: int | None, limit_name: str, max_members: int, members_name: str
) -> _Stage:
    if coding == "identity":
        return _Identity()
    if coding == "gzip":
        return _Inflate("gzip", zlib.MAX_WBITS | 16, max_members, members_name)
    if coding == "deflate":
        return _Deflate()
    if coding == "snappy":
        return _Snappy(max_bytes, limit_name)
    if coding == "zstd":
        if _libzstd is None:
            raise UnsupportedMediaError("zstd bodies need the system's libzstd.so.1")
        return _ZstdStream(_libzstd, max_members, members_name)
    raise UnsupportedMediaError(
        f"unsupported Content-Encoding {coding!r} (supported: {', '.join(SUPPORTED_ENCODINGS)})"
    )


def _slices(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


class _Identity:
    def feed(self, data: bytes) -> Iterator[bytes]:
        yield from _slices(data, PIECE_BYTES) if len(data) > PIECE_BYTES else (data,)

    def finish(self) -> Iterator[bytes]:
        return iter(())


class _Inflate:
    """gzip members (or one deflate stream), inflated a slice of input at a time."""

    def __init__(self, coding: str, wbits: int, max_members: int, members_name: str = "") -> None:
        self.coding = coding
        self.wbits = wbits
        self.multi = coding == "gzip"
        self.max_members = max_members
        self.members_name = members_name
        self.members = 0
        self.done = False  # a single-stream coding reached its end: the rest is ignored
        self._d: zlib._Decompress | None = None

    def feed(self, data: bytes) -> Iterator[bytes]:
        for part in _slices(data, _IN_SLICE):
            yield from self._feed(part)

    def _feed(self, data: bytes) -> Iterator[bytes]:
        try:
            while data and not self.done:
                if self._d is None:
                    if self.multi:
                        data = data.lstrip(b"\x00")  # padding between or after members
                        if not data:
                            return
                    self.members += 1
                    if self.multi and self.members > self.max_members:
                        raise PayloadTooLargeError(
                            f"gzip body has more than {self.max_members} members "
                            f"({self.members_name})"
                        )
                    self._d = zlib.decompressobj(self.wbits)
                d = self._d
                out = d.decompress(data, PIECE_BYTES)
                if out:
                    yield out
                while d.unconsumed_tail:
                    out = d.decompress(d.unconsumed_tail, PIECE_BYTES)
                    if out:
                        yield out
                if d.eof:
                    data = d.unused_data
                    self._d = None
                    self.done = not self.multi
                else:
                    data = b""
        except zlib.error as exc:
            raise ParseError(f"invalid {self.coding} body: {exc}") from exc

    def finish(self) -> Iterator[bytes]:
        if self._d is not None or self.members == 0:
            raise ParseError(f"truncated {self.coding} body")
        return iter(())


class _Deflate:
    """RFC 9110 deflate (zlib-wrapped), or raw deflate as some clients send.

    The first two bytes decide; a body that looked like zlib but fails before
    producing output is retried as raw deflate (its first bytes can look like
    a zlib header by chance)."""

    def __init__(self) -> None:
        self._head = b""
        self._inner: _Inflate | None = None
        self._kept: list[bytes] | None = []  # input so far, while no output came out
        self._kept_bytes = 0

    def _start(self, raw: bool) -> _Inflate:
        return _Inflate("deflate", -zlib.MAX_WBITS if raw else zlib.MAX_WBITS, 1)

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self._inner is None:
            self._head += data
            if len(self._head) < 2:
                return
            b = self._head
            raw = (b[0] & 0x0F) != 8 or ((b[0] << 8) | b[1]) % 31 != 0
            self._inner = self._start(raw)
            if raw:
                self._kept = None
            data, self._head = b, b""
        yield from self._guarded(data)

    def _guarded(self, data: bytes) -> Iterator[bytes]:
        inner = self._inner or self._start(True)
        if self._kept is None:
            yield from inner.feed(data)
            return
        self._kept.append(data)
        self._kept_bytes += len(data)
        try:
            for out in inner.feed(data):
                self._kept = None  # output produced: it is zlib for good
                yield out
        except ParseError:
            if self._kept is None:
                raise
            yield from self._as_raw()
            return
        if self._kept is not None and self._kept_bytes > _RAW_FALLBACK_BYTES:
            self._kept = None

    def _as_raw(self) -> Iterator[bytes]:
        """Start over as raw deflate with the input kept so far."""
        kept, self._kept = self._kept or [], None
        self._inner = self._start(True)
        for part in kept:
            yield from self._inner.feed(part)

    def finish(self) -> Iterator[bytes]:
        if self._inner is None:
            self._inner = self._start(True)
            yield from self._inner.feed(self._head)
        try:
            yield from self._inner.finish()
        except ParseError:
            if self._kept is None:
                raise
            yield from self._as_raw()
            yield from self._inner.finish()


class _Snappy:
    """The block format: buffered (it has no pieces), its declared length checked first."""

    def __init__(self, max_bytes: int | None, limit_name: str) -> None:
        self.max_bytes = max_bytes
        self.limit_name = limit_name
        self._buf = bytearray()
        self._checked = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        self._buf += data
        if not self._checked and len(self._buf) >= 10:
            self._check()
        # Longer than the longest block that decodes within the limit (snappy's worst case)?
        cap = self.max_bytes
        if self._checked and cap is not None and len(self._buf) > 32 + cap + cap // 6:
            raise PayloadTooLargeError(f"snappy body exceeds {self.limit_name}")
        return iter(())

    def _check(self) -> None:
        body = bytes(self._buf[:16])
        if body.startswith(_SNAPPY_FRAMED_MAGIC[: len(body)]) and len(body) >= 4:
            raise UnsupportedMediaError(
                "snappy framed (stream) format is not accepted; use the block format "
                "(as Prometheus remote-write requires)"
            )
        declared, ok = _uvarint(body)
        if not ok:
            raise ParseError("invalid snappy body: bad length preamble")
        if self.max_bytes is not None and declared > self.max_bytes:
            raise PayloadTooLargeError(
                f"snappy body declares {declared} decoded bytes, over {self.limit_name}"
            )
        self._checked = True

    def finish(self) -> Iterator[bytes]:
        if not self._checked:
            self._check()
        try:
            out = bytes(cramjam.snappy.decompress_raw(bytes(self._buf)))
        except cramjam.DecompressionError as exc:
            raise ParseError(f"invalid snappy body: {exc}") from exc
        self._buf = bytearray()
        yield from _slices(out, PIECE_BYTES)


def _uvarint(b: bytes) -> tuple[int, bool]:
    value = shift = 0
    for i, byte in enumerate(b[:10]):
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i < 5  # snappy's preamble is a uint32
        shift += 7
    return value, False


# -- zstd ---------------------------------------------------------------------


class _InBuffer(ctypes.Structure):
    _fields_ = [("src", ctypes.c_void_p), ("size", ctypes.c_size_t), ("pos", ctypes.c_size_t)]


class _OutBuffer(ctypes.Structure):
    _fields_ = [("dst", ctypes.c_void_p), ("size", ctypes.c_size_t), ("pos", ctypes.c_size_t)]


def _load_libzstd() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("zstd") or "libzstd.so.1"
    try:
        lib = ctypes.CDLL(name)
        lib.ZSTD_createDCtx.restype = ctypes.c_void_p
        lib.ZSTD_freeDCtx.argtypes = [ctypes.c_void_p]
        lib.ZSTD_DCtx_setParameter.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        lib.ZSTD_DCtx_setParameter.restype = ctypes.c_size_t
        lib.ZSTD_decompressStream.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(_OutBuffer),
            ctypes.POINTER(_InBuffer),
        ]
        lib.ZSTD_decompressStream.restype = ctypes.c_size_t
        lib.ZSTD_isError.argtypes = [ctypes.c_size_t]
        lib.ZSTD_isError.restype = ctypes.c_uint
        lib.ZSTD_getErrorName.argtypes = [ctypes.c_size_t]
        lib.ZSTD_getErrorName.restype = ctypes.c_char_p
    except (OSError, AttributeError):
        return None
    return lib


_libzstd = _load_libzstd()
_ZSTD_D_WINDOW_LOG_MAX = 100  # ZSTD_d_windowLogMax


class _ZstdStream:
    """zstd frames decoded as they arrive, a piece of output at a time."""

    def __init__(self, lib: ctypes.CDLL, max_frames: int, frames_name: str) -> None:
        self.lib = lib
        self.max_frames = max_frames
        self.frames_name = frames_name
        self.frames = 0
        self.in_frame = False
        self._ctx = ctypes.c_void_p(lib.ZSTD_createDCtx())
        if not self._ctx:
            raise MemoryError("cannot create a zstd decoder")
        lib.ZSTD_DCtx_setParameter(self._ctx, _ZSTD_D_WINDOW_LOG_MAX, _ZSTD_WINDOW_LOG_MAX)
        self._out = ctypes.create_string_buffer(PIECE_BYTES)

    def __del__(self) -> None:
        ctx = getattr(self, "_ctx", None)
        if ctx:
            self.lib.ZSTD_freeDCtx(ctx)
            self._ctx = ctypes.c_void_p()

    def feed(self, data: bytes) -> Iterator[bytes]:
        src = ctypes.c_char_p(data)  # borrows the bytes object's buffer: no copy
        inb = _InBuffer(ctypes.cast(src, ctypes.c_void_p), len(data), 0)
        out = _OutBuffer(ctypes.cast(self._out, ctypes.c_void_p), PIECE_BYTES, 0)
        while True:
            if not self.in_frame and inb.pos < inb.size:
                self.frames += 1
                if self.frames > self.max_frames:
                    raise PayloadTooLargeError(
                        f"zstd body has more than {self.max_frames} frames ({self.frames_name})"
                    )
                self.in_frame = True
            out.pos = 0
            before = inb.pos
            r = self.lib.ZSTD_decompressStream(self._ctx, ctypes.byref(out), ctypes.byref(inb))
            if self.lib.ZSTD_isError(r):
                reason = self.lib.ZSTD_getErrorName(r).decode()
                if "memory" in reason.lower() or "window" in reason.lower():
                    limit = 1 << _ZSTD_WINDOW_LOG_MAX >> 20
                    reason += f" (frames needing a window over {limit} MiB are refused)"
                raise ParseError(f"invalid zstd body: {reason}")
            if out.pos:
                yield ctypes.string_at(self._out, out.pos)
            if r == 0:
                self.in_frame = False
            if out.pos < out.size and inb.pos == inb.size:
                return
            if out.pos == 0 and inb.pos == before:
                return

    def finish(self) -> Iterator[bytes]:
        if self.in_frame or self.frames == 0:
            raise ParseError("truncated zstd body")
        return iter(())


def iter_decoded(decoder: BodyDecoder, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Every decoded piece of a body given as compressed ``chunks``."""
    for chunk in chunks:
        yield from decoder.feed(chunk)
    yield from decoder.finish()
