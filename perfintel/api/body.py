"""Reading request bodies under the configured size limits."""

from __future__ import annotations

from fastapi import Request

from perfintel.errors import PayloadTooLargeError
from perfintel.ingest.encoding import decode_body


async def read_body(request: Request, *, default_encoding: str | None = None) -> bytes:
    """The request body, decompressed per Content-Encoding; 413 beyond the limits."""
    limits = request.app.state.settings.limits
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise PayloadTooLargeError(
            f"request body of {declared} bytes exceeds limits.max_body_bytes ({limits.max_body_bytes})"
        )
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.max_body_bytes:
            raise PayloadTooLargeError(
                f"request body exceeds limits.max_body_bytes ({limits.max_body_bytes})"
            )
        chunks.append(chunk)
    return decode_body(
        b"".join(chunks),
        request.headers.get("content-encoding"),
        max_bytes=limits.max_decompressed_bytes,
        default=default_encoding,
    )
