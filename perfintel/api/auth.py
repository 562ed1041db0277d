"""Authentication of every request: tokens with read / write / admin scopes.

Protection is the default. :class:`AuthMiddleware` sits in front of the whole
application (``create_app`` installs it): every HTTP request and WebSocket —
API routes, ``/docs``, ``/openapi.json``, mounted applications, paths that
match no route — needs a valid token, unless its route is public.

**Public routes** are listed in one place, the :class:`AuthPolicy` of the app
(``app.state.auth``): ``/healthz`` and ``/readyz`` always, ``/metrics`` when
the ``auth.public_metrics`` setting is on. A module declares its own public
routes with :func:`declare_public` when it is wired into the app, naming them
as they were declared (a mount's path covers everything under it)::

    declare_public(app, "/ui/assets")   # e.g. static files that carry no data

Nothing else may be public: a test walks every route of the app and checks it
refuses a request without a token, with a wrong one, and with a token that
lacks the route's scope.

**Scopes.** A route declares the scope it needs with
``dependencies=[Depends(require("write"))]`` (on the route or its router); a
route that declares none needs ``read``. ``admin`` implies ``write`` and
``read``. ``require(scope)`` is also callable inside a handler when the scope
depends on the body (``await require("write")(request)``).

**Credentials**, in the ``Authorization`` header: ``Bearer <token>``,
``Token <token>`` (Influx clients), or HTTP basic auth with the token as the
password (any user name; Grafana data sources and Prometheus ``remote_write``
``basic_auth``). A WebSocket opened by a browser cannot set headers, so a
WebSocket may also pass ``?access_token=<token>``. A missing or unknown token
is HTTP 401 (a WebSocket handshake is refused with 401), a token without the
scope 403, both in the Prometheus error envelope.

With no tokens configured every request is allowed; the settings refuse that
unless the server listens on a loopback address.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl

import fastapi.routing
from fastapi import FastAPI, Request
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as AsgiScope

from perfintel.api.errors import error_response
from perfintel.config import Settings
from perfintel.errors import AuthError, ForbiddenError

Scope = Literal["read", "write", "admin"]
_RANK: dict[str, int] = {"read": 0, "write": 1, "admin": 2}
#: Key of the request's ``Principal`` in the ASGI scope (set by the middleware).
PRINCIPAL = "perfintel.principal"
#: Routes that are always public: liveness and readiness carry no data.
ALWAYS_PUBLIC = ("/healthz", "/readyz")
_CACHE_SIZE = 1024
_CACHED_PATH_CHARS = 256


@dataclass(frozen=True)
class Principal:
    """Who made the request: the token's holder (its ``name`` setting) and its scopes."""

    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


@dataclass(frozen=True)
class _Token:
    secret: bytes
    principal: Principal


class AuthPolicy:
    """The tokens, the public allow-list, and which scope each route needs.

    ``public`` holds route paths as declared (``/healthz``; a mount's path).
    ``needed`` finds the route a request goes to as the router will, and
    caches the answer per (type, method, path): at most ``_CACHE_SIZE`` entries
    of paths up to ``_CACHED_PATH_CHARS`` characters (longer ones are resolved
    each time), so the cache stays small whatever paths clients send.
    """

    def __init__(self, settings: Settings) -> None:
        self._tokens = [
            _Token(
                t.token.get_secret_value().encode(),
                Principal(t.name or f"token {i + 1}", frozenset(t.scopes)),
            )
            for i, t in enumerate(settings.auth.tokens)
        ]
        self.public: set[str] = set(ALWAYS_PUBLIC)
        if settings.auth.public_metrics:
            self.public.add("/metrics")
        self._cache: dict[tuple[str, str, str], str | None] = {}

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def declare_public(self, paths: Iterable[str]) -> None:
        self.public.update(paths)
        self._cache.clear()

    def authenticate(self, presented: str | None) -> Principal:
        """The principal of a presented token; ``AuthError`` when missing or unknown."""
        if not presented:
            raise AuthError(
                "missing credentials: send Authorization: Bearer <token> "
                "(or basic auth with the token as the password)"
            )
        given = presented.encode()
        found: Principal | None = None
        for t in self._tokens:  # compare with every token: the time says nothing
            if hmac.compare_digest(t.secret, given):
                found = t.principal
        if found is None:
            raise AuthError("unknown token")
        return found

    def needed(self, routes: Sequence[BaseRoute], scope: AsgiScope) -> str | None:
        """The scope a request needs, or ``None`` when its route is public.

        A path that matches no route needs ``read`` (no probing for routes
        without a token; with one, the router answers 404 or 405)."""
        key = (scope["type"], scope.get("method", ""), scope["path"])
        if key in self._cache:
            return self._cache[key]
        needed = self._needed(flat_routes(routes), dict(scope))
        if len(key[2]) <= _CACHED_PATH_CHARS:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = needed
        return needed

    def _needed(self, routes: Sequence[Any], scope: AsgiScope) -> str | None:
        route, child = _resolve(routes, scope)
        if route is None:
            return "read"
        if getattr(route, "path", None) in self.public:
            return None
        inner = getattr(_original(route), "routes", None)
        if isinstance(_original(route), Mount) and inner:
            # a mounted router: the route inside decides
            return self._needed(flat_routes(inner), {**scope, **child})
        return required_scope(route)


def flat_routes(routes: Sequence[BaseRoute]) -> list[Any]:
    """Every route as the router sees it, in order, included routers flattened.

    Recent FastAPI versions include a router lazily (one entry in ``app.routes``
    for all its routes); ``fastapi.routing.iter_route_contexts`` lists them
    with their effective path, methods and dependencies. Older versions list
    the routes themselves."""
    iter_contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    return list(routes) if iter_contexts is None else list(iter_contexts(routes))


def _original(route: Any) -> Any:
    return getattr(route, "original_route", route)


def _resolve(routes: Sequence[Any], scope: AsgiScope) -> tuple[Any, AsgiScope]:
    """The route the router will pick: the first full match, else the first partial one."""
    partial: tuple[Any, AsgiScope] | None = None
    for route in routes:
        match, child = route.matches(dict(scope))
        if match is Match.FULL:
            return route, child
        if match is Match.PARTIAL and partial is None:
            partial = (route, child)
    return partial if partial is not None else (None, {})


def required_scope(route: Any) -> str:
    """The scope a route declares with ``Depends(require(...))`` (on itself or its router);
    ``read`` when none."""
    best = "read"
    for dep in getattr(route, "dependencies", None) or ():
        declared = getattr(dep.dependency, "perfintel_scope", None)
        if declared is not None and _RANK[declared] > _RANK[best]:
            best = declared
    return best


def declare_public(app: FastAPI, *paths: str) -> None:
    """Make routes public (no token needed): only for routes that carry no data."""
    policy: AuthPolicy = app.state.auth
    policy.declare_public(paths)


def require(scope: Scope) -> Callable[[Request], Awaitable[None]]:
    """A dependency declaring (and checking) that a route needs ``scope``."""

    async def check(request: Request) -> None:
        policy: AuthPolicy | None = getattr(request.app.state, "auth", None)
        if policy is None or not policy.enabled:
            return
        principal: Principal | None = request.scope.get(PRINCIPAL)
        if principal is None:
            principal = policy.authenticate(credentials(request.scope))
        if not principal.allows(scope):
            raise ForbiddenError(f"token lacks the {scope!r} scope")

    check.perfintel_scope = scope  # type: ignore[attr-defined]
    return check


def credentials(scope: AsgiScope) -> str | None:
    """The token a request presents (see the module docstring for the forms)."""
    header = ""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            header = value.decode("latin-1")
            break
    kind, _, rest = header.strip().partition(" ")
    kind, rest = kind.lower(), rest.strip()
    if kind in ("bearer", "token") and rest:
        return rest
    if kind == "basic" and rest:
        try:
            user, _, password = base64.b64decode(rest, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return password or user or None
    if scope["type"] == "websocket":
        for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1")):
            if k in ("access_token", "token") and v:
                return v
    return None


class AuthMiddleware:
    """Refuses every request its route's scope does not allow (see the module docstring).

    Plain ASGI, like the metrics middleware: it runs before routing, so it
    covers routes that take no FastAPI dependencies too (``/docs``, mounts)."""

    def __init__(self, app: ASGIApp, policy: AuthPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.policy.enabled:
            await self.app(scope, receive, send)
            return
        try:
            needed = self.policy.needed(scope["app"].router.routes, scope)
            if needed is not None:
                principal = self.policy.authenticate(credentials(scope))
                if not principal.allows(needed):
                    raise ForbiddenError(f"token lacks the {needed!r} scope this route needs")
                scope[PRINCIPAL] = principal
        except (AuthError, ForbiddenError) as exc:
            await _refuse(scope, receive, send, exc)
            return
        await self.app(scope, receive, send)


async def _refuse(scope: AsgiScope, receive: Receive, send: Send, exc: Exception) -> None:
    unauthorised = isinstance(exc, AuthError)
    response = error_response(
        401 if unauthorised else 403, "unauthorized" if unauthorised else "forbidden", str(exc)
    )
    if unauthorised and scope.get("method") == "GET" and _wants_html(scope):
        # a browser (e.g. on /docs) offers its log-in box: the token as the password
        response.raw_headers.append((b"www-authenticate", b'Basic realm="perfintel"'))
    if scope["type"] == "websocket" and "websocket.http.response" not in scope.get(
        "extensions", {}
    ):
        await send({"type": "websocket.close", "code": 1008, "reason": str(exc)[:120]})
        return
    await response(scope, receive, send)


def _wants_html(scope: AsgiScope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"accept":
            return b"text/html" in value
    return False
