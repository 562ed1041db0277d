"""Bearer-token authentication with read / write / admin scopes.

With no tokens configured every request is allowed; the settings refuse that
unless the server listens on a loopback address. ``admin`` implies the other
scopes. Influx clients send ``Authorization: Token <t>``; both forms work.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal

from fastapi import Request

from perfintel.config import TokenSettings
from perfintel.errors import AuthError, ForbiddenError

Scope = Literal["read", "write", "admin"]


def require(scope: Scope) -> Callable[[Request], Awaitable[None]]:
    async def check(request: Request) -> None:
        tokens = request.app.state.settings.auth.tokens
        if not tokens:
            return
        header = request.headers.get("authorization", "")
        kind, _, presented = header.partition(" ")
        if kind.lower() not in ("bearer", "token") or not presented:
            raise AuthError("missing bearer token (Authorization: Bearer <token>)")
        check_token(tokens, presented, scope)

    return check


def check_token(tokens: Sequence[TokenSettings], presented: str, scope: Scope) -> None:
    """Raise ``AuthError``/``ForbiddenError`` unless ``presented`` is a token with ``scope``
    (also used where no header exists: the WebSocket stream's query parameter or first message)."""
    for t in tokens:
        if hmac.compare_digest(t.token.encode(), presented.strip().encode()):
            if scope in t.scopes or "admin" in t.scopes:
                return
            raise ForbiddenError(f"token lacks the {scope!r} scope")
    raise AuthError("unknown bearer token")
