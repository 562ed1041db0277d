"""The web dashboard and the offline API docs, served by perfintel itself.

Everything here is static (no data): the single page at ``/`` and its client-side
routes, the assets under ``/static/`` (uPlot and Swagger UI vendored under
``static/vendor/``), and ``/docs``. The page fetches every figure from the
authenticated APIs with a bearer token, so these routes are public:
``PUBLIC_PATHS`` and ``PUBLIC_PREFIXES`` are the allow-list the app-wide auth
reads.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"

#: The dashboard's pages (client-side routes; the server answers each with the same shell).
PAGES = ("/", "/explore", "/series", "/capacity")
#: Public routes: the page shell, the API docs page and the OpenAPI document (no data in any).
PUBLIC_PATHS = frozenset({*PAGES, "/docs", "/openapi.json", "/favicon.ico"})
#: Public path prefixes: the static assets.
PUBLIC_PREFIXES = ("/static/",)


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def install(app: FastAPI) -> None:
    """Serve the dashboard, its assets and ``/docs`` (Swagger UI from the package, offline)."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    index = STATIC_DIR / "index.html"

    async def page() -> FileResponse:
        return FileResponse(index, media_type="text/html", headers={"Cache-Control": "no-cache"})

    for path in PAGES:
        app.add_api_route(path, page, methods=["GET"], include_in_schema=False)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="perfintel API",
            swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg",
        )
