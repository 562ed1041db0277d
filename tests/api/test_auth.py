"""Every route is authenticated unless declared public (issue 10, item 1).

The central test walks every route the app has — API routes, the docs,
mounted applications and WebSockets — and checks that each refuses a request
without a token, with a wrong one and with one lacking the route's scope, so
a route added later cannot be left open by accident. On the code before the
fix the whole Prometheus API, ``/metrics``, ``/docs`` and ``/openapi.json``
answered without a token.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, WebSocket
from fastapi.staticfiles import StaticFiles
from fastapi.testclient import TestClient
from starlette.routing import Mount
from starlette.testclient import WebSocketDenialResponse

from perfintel.api.app import create_app
from perfintel.api.auth import declare_public, flat_routes, require, required_scope
from perfintel.config import load_settings

READ = "reader-token-0123456789"
WRITE = "writer-token-0123456789"
READ_WRITE = "read-write-token-012345"
ADMIN = "admin-token-01234567890"
TOKENS = [
    {"token": READ, "scopes": ["read"], "name": "grafana"},
    {"token": WRITE, "scopes": ["write"], "name": "agent"},
    {"token": READ_WRITE, "scopes": ["read", "write"]},
    {"token": ADMIN, "scopes": ["admin"]},
]
#: The strongest token that still lacks each scope.
TOO_WEAK = {"read": WRITE, "write": READ, "admin": READ_WRITE}
ENOUGH = {"read": READ, "write": WRITE, "admin": ADMIN}
#: Routes of today's app that must need more than read (a declaration lost would show here).
NEEDS = {
    ("POST", "/api/v1/write"): "write",
    ("POST", "/api/v1/import/prometheus"): "write",
    ("POST", "/api/v1/import"): "write",
    ("POST", "/api/v1/ingest"): "write",
    ("POST", "/write"): "write",
    ("POST", "/api/v2/write"): "write",
    ("POST", "/influx/write"): "write",
    ("POST", "/influx/api/v2/write"): "write",
    ("POST", "/api/v1/admin/flush"): "admin",
}
# Every public route, reviewed: a new one must be added here on purpose.
PUBLIC = {
    "/healthz",
    "/readyz",
    "/ping",
    "/assets-public",
    "/api/v1/incidents/x/ack",  # the signed acknowledge link: its HMAC is its credential
    # the dashboard's page shell and static assets (no data: every figure comes from the APIs)
    "/",
    "/explore",
    "/series",
    "/capacity",
    "/alerts",
    "/incidents/x",  # an incident's page shell (the link in notifications): no data
    "/favicon.ico",
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(password: str, user: str = "grafana") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _add_routes_another_module_would(app: FastAPI, static: Path) -> None:
    """A WebSocket, a mounted router and mounted static files, none declared public,
    and one static mount declared public: the walk must cover all of them."""
    ws = APIRouter()

    @ws.websocket("/api/v1/stream")
    async def stream(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"ok": True})
        await websocket.close()

    app.include_router(ws)
    admin = APIRouter(dependencies=[])

    @admin.post("/reload", dependencies=[])
    async def reload() -> dict[str, str]:
        return {"status": "reloaded"}

    app.router.routes.append(Mount("/api/v1/plugin", routes=admin.routes))
    app.mount("/assets-private", StaticFiles(directory=static), name="private")
    app.mount("/assets-public", StaticFiles(directory=static), name="public")
    declare_public(app, "/assets-public")


@pytest.fixture
def app_client(tmp_path: Path) -> Iterator[tuple[FastAPI, TestClient]]:
    settings = load_settings(
        overrides={"data_dir": tmp_path / "d", "auth": {"tokens": TOKENS}}, env={}
    )
    app = create_app(settings, collectors=False)
    static = tmp_path / "static"
    static.mkdir()
    (static / "x").write_text("static text")
    _add_routes_another_module_would(app, static)
    with TestClient(app) as client:
        yield app, client


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def _requests(app: FastAPI) -> list[tuple[str, str, str, Any]]:
    """(kind, method, concrete path, route) for every route: every method, mounts inside."""
    out: list[tuple[str, str, str, Any]] = []

    def walk(routes: list[Any], prefix: str) -> None:
        for route in flat_routes(routes):
            original = getattr(route, "original_route", route)
            path = prefix + route.path
            if isinstance(original, Mount):
                inner = getattr(original, "routes", None)
                if inner:
                    walk(list(inner), path)
                else:
                    out.append(("http", "GET", path + "/x", route))
            elif route.methods:
                out.extend(("http", m, _concrete(path), route) for m in sorted(route.methods))
            else:
                out.append(("websocket", "", _concrete(path), route))

    walk(list(app.routes), "")
    return out


def _status(client: TestClient, kind: str, method: str, path: str, headers: dict[str, str]) -> int:
    if kind == "websocket":
        try:
            with client.websocket_connect(path, headers=headers) as ws:
                ws.receive_json()
        except WebSocketDenialResponse as exc:
            return exc.status_code
        return 101
    return client.request(method, path, headers=headers).status_code


def test_every_route_refuses_a_missing_wrong_or_too_weak_token(
    app_client: tuple[FastAPI, TestClient],
) -> None:
    app, client = app_client
    requests = _requests(app)
    walked = {(m, p) for _, m, p, _ in requests}
    # the walk covers at least every documented operation, and the extra kinds
    for path, ops in client.get("/openapi.json", headers=bearer(READ)).json()["paths"].items():
        for op in ops:
            assert (op.upper(), _concrete(path)) in walked, f"{op} {path} not walked"
    assert {k for k, *_ in requests} == {"http", "websocket"}
    assert any(p.startswith("/api/v1/plugin/") for _, _, p, _ in requests)
    for (method, path), scope in NEEDS.items():
        [route] = [r for _, m, p, r in requests if (m, p) == (method, path)]
        assert required_scope(route) == scope, (method, path)

    checked = 0
    for kind, method, path, route in requests:
        what = f"{kind} {method} {path}"
        if path in PUBLIC or path.startswith(("/assets-public/", "/static/")):
            assert _status(client, kind, method, path, {}) not in (401, 403), what
            continue
        for headers in ({}, bearer("wrong-token-0123456789"), basic("wrong-token-0123456789")):
            assert _status(client, kind, method, path, headers) == 401, (what, headers)
        needed = required_scope(route)
        if path.startswith("/api/v1/plugin/"):
            needed = "read"  # a mounted router's routes: the default
        assert _status(client, kind, method, path, bearer(TOO_WEAK[needed])) == 403, what
        # with a strong enough token the route itself answers (whatever it makes of the request)
        assert _status(client, kind, method, path, bearer(ENOUGH[needed])) not in (401, 403), what
        checked += 1
    assert checked >= 40


def test_metrics_docs_and_openapi_need_a_token(app_client: tuple[FastAPI, TestClient]) -> None:
    _, client = app_client
    for path in ("/metrics", "/docs", "/openapi.json", "/api/v1/query?query=1"):
        r = client.get(path)
        assert r.status_code == 401, path
        assert r.json()["errorType"] == "unauthorized"
        assert client.get(path, headers=bearer(READ)).status_code == 200, path
    # a browser is offered its log-in box (the token as the password)
    r = client.get("/docs", headers={"Accept": "text/html,application/xhtml+xml"})
    assert r.status_code == 401
    assert 'Basic realm="perfintel"' in r.headers.get_list("www-authenticate")
    assert client.get("/docs", headers=basic(READ)).status_code == 200


def test_metrics_public_only_when_the_setting_says_so(tmp_path: Path) -> None:
    settings = load_settings(
        overrides={
            "data_dir": tmp_path / "d",
            "auth": {"tokens": TOKENS, "public_metrics": True},
        },
        env={},
    )
    with TestClient(create_app(settings, collectors=False)) as client:
        assert client.get("/metrics").status_code == 200
        assert client.get("/api/v1/query", params={"query": "1"}).status_code == 401


def test_credential_forms(app_client: tuple[FastAPI, TestClient]) -> None:
    _, client = app_client
    q = {"query": "1"}
    assert client.get("/api/v1/query", params=q, headers=bearer(READ)).status_code == 200
    assert client.get("/api/v1/query", params=q, headers=basic(READ)).status_code == 200
    assert client.get("/api/v1/query", params=q, headers=basic("", user=READ)).status_code == 200
    token = {"Authorization": f"Token {READ}"}
    assert client.get("/api/v1/query", params=q, headers=token).status_code == 200
    garbage = {"Authorization": "Basic !!!not-base64"}
    assert client.get("/api/v1/query", params=q, headers=garbage).status_code == 401
    # a query-string token is for WebSockets only (browsers cannot set their headers)
    r = client.get("/api/v1/query", params={**q, "access_token": READ})
    assert r.status_code == 401
    with client.websocket_connect(f"/api/v1/stream?access_token={READ}") as ws:
        assert ws.receive_json() == {"ok": True}
    # remote write with basic auth, as Prometheus's remote_write basic_auth sends it
    r = client.post("/api/v1/import/prometheus", content=b"x 1\n", headers=basic(WRITE))
    assert r.status_code == 200


def test_unknown_paths_need_a_token_too(app_client: tuple[FastAPI, TestClient]) -> None:
    _, client = app_client
    assert client.get("/no/such/route").status_code == 401
    assert client.get("/no/such/route", headers=bearer(READ)).status_code == 404
    # a wrong method on a real route: refused without a token, 405 with one
    assert client.delete("/api/v1/query").status_code == 401
    assert client.delete("/api/v1/query", headers=bearer(READ)).status_code == 405


def test_scope_checked_inside_a_handler_too(app_client: tuple[FastAPI, TestClient]) -> None:
    """The predict API needs write only when it writes the forecast back."""
    _, client = app_client
    body = {"selector": "nothing_here", "horizon": "1h", "write_back": True}
    r = client.post("/api/v1/performance/predict/metrics", json=body, headers=bearer(READ))
    assert r.status_code == 403
    assert "write" in r.json()["error"]
    r = client.post("/api/v1/performance/predict/metrics", json=body, headers=bearer(READ_WRITE))
    assert r.status_code == 404  # allowed; there is just no such series


def test_require_declares_the_scope_it_checks() -> None:
    app = FastAPI()
    router = APIRouter(dependencies=[])

    @router.post("/x", dependencies=[], include_in_schema=False)
    async def x() -> None:
        return None

    app.include_router(router, dependencies=[])
    [route] = [r for r in flat_routes(app.routes) if r.path == "/x"]
    assert required_scope(route) == "read"
    app2 = FastAPI()
    app2.include_router(router, dependencies=[__import__("fastapi").Depends(require("admin"))])
    [route2] = [r for r in flat_routes(app2.routes) if r.path == "/x"]
    assert required_scope(route2) == "admin"  # router-level declarations count
