"""Signed acknowledge links: HMAC-SHA256 over the incident id and an expiry time.

A link is ``{external_url}/api/v1/incidents/{id}/ack?expires=<unix>&sig=<hex>``;
it works without a token until it expires, and only for that incident.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote

from perfintel.errors import AuthError


def signature(key: bytes, incident_id: str, expires: int) -> str:
    return hmac.new(key, f"ack|{incident_id}|{expires}".encode(), hashlib.sha256).hexdigest()


def ack_url(external_url: str, key: bytes, incident_id: str, expires: int) -> str:
    sig = signature(key, incident_id, expires)
    return f"{external_url.rstrip('/')}/api/v1/incidents/{quote(incident_id)}/ack?expires={expires}&sig={sig}"


def verify(key: bytes, incident_id: str, expires: int, sig: str, now: float) -> None:
    if now > expires:
        raise AuthError("this acknowledge link has expired")
    # compared as bytes: compare_digest refuses str with non-ASCII characters
    if not hmac.compare_digest(signature(key, incident_id, expires).encode(), sig.encode()):
        raise AuthError("this acknowledge link is not valid")
