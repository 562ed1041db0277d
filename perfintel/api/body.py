"""Reading request bodies under the configured limits, decoding them off the event loop.

``read_body`` is what every ingest endpoint uses: the compressed body is read
(at most ``limits.max_body_bytes``), then decoded by one ``BodyDecoder`` in a
worker thread (at most ``limits.max_decompressed_bytes`` and
``limits.max_body_members`` gzip members or zstd frames). ``stream_body`` is
the streaming form for the import of any size: no bound on the total, the
decoded body comes out a bounded piece at a time, decoded in worker threads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from perfintel.errors import PayloadTooLargeError
from perfintel.ingest.encoding import BodyDecoder, decode_body, is_identity

__all__ = ["STEP_BYTES", "read_body", "read_raw_body", "stream_body"]

#: Compressed bytes gathered before a worker thread decodes them (fewer thread hops).
_GATHER_BYTES = 1 << 20
#: Decoded bytes a worker thread hands back at once (bounds memory per streamed request).
STEP_BYTES = 4 << 20


def _members_limit_name(max_members: int) -> str:
    return f"limits.max_body_members = {max_members}"


async def read_raw_body(request: Request, max_bytes: int) -> bytes:
    """The body as sent; 413 naming ``limits.max_body_bytes`` beyond ``max_bytes``."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLargeError(
            f"request body of {declared} bytes exceeds limits.max_body_bytes ({max_bytes})"
        )
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLargeError(f"request body exceeds limits.max_body_bytes ({max_bytes})")
        chunks.append(chunk)
    if size > _GATHER_BYTES:  # copying tens of megabytes would hold the event loop
        return await run_in_threadpool(b"".join, chunks)
    return b"".join(chunks)


async def read_body(request: Request, *, default_encoding: str | None = None) -> bytes:
    """The request body, decompressed per Content-Encoding; 413 beyond the limits."""
    limits = request.app.state.settings.limits
    raw = await read_raw_body(request, limits.max_body_bytes)
    encoding = request.headers.get("content-encoding")
    if is_identity(encoding, default_encoding):
        if len(raw) > limits.max_decompressed_bytes:
            raise PayloadTooLargeError(
                f"request body exceeds limits.max_decompressed_bytes ({limits.max_decompressed_bytes})"
            )
        return raw
    return await run_in_threadpool(
        decode_body,
        raw,
        encoding,
        max_bytes=limits.max_decompressed_bytes,
        default=default_encoding,
        limit_name=f"limits.max_decompressed_bytes ({limits.max_decompressed_bytes})",
        max_members=limits.max_body_members,
        members_limit_name=_members_limit_name(limits.max_body_members),
    )


async def stream_body(
    request: Request, *, step_bytes: int = STEP_BYTES
) -> AsyncIterator[list[bytes]]:
    """The decoded body as lists of pieces of about ``step_bytes`` (no bound on the total).

    Compressed input is gathered up to ``_GATHER_BYTES`` and decoded in a
    worker thread, which hands back at most ``step_bytes`` (plus one piece) at
    a time: memory stays bounded however far a body inflates.
    """
    encoding = request.headers.get("content-encoding")
    if is_identity(encoding):
        gathered: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            gathered.append(chunk)
            size += len(chunk)
            if size >= _GATHER_BYTES:
                yield gathered
                gathered, size = [], 0
        if size:
            yield gathered
        return
    max_members = request.app.state.settings.limits.max_body_members
    decoder = BodyDecoder(
        encoding,
        max_bytes=None,
        max_members=max_members,
        members_limit_name=_members_limit_name(max_members),
    )
    pending: list[bytes] = []
    size = 0

    async def drain(pieces: Iterator[bytes]) -> AsyncIterator[list[bytes]]:
        while True:
            step = await run_in_threadpool(_take, pieces, step_bytes)
            if not step:
                return
            yield step

    async for chunk in request.stream():
        pending.append(chunk)
        size += len(chunk)
        if size >= _GATHER_BYTES:
            data, pending, size = b"".join(pending), [], 0
            async for step in drain(decoder.feed(data)):
                yield step
    if pending:
        async for step in drain(decoder.feed(b"".join(pending))):
            yield step
    async for step in drain(decoder.finish()):
        yield step


def _take(pieces: Iterator[bytes], limit: int) -> list[bytes]:
    out: list[bytes] = []
    size = 0
    for piece in pieces:
        out.append(piece)
        size += len(piece)
        if size >= limit:
            break
    return out
