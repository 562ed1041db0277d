"""The web dashboard and the offline API docs, served by perfintel itself.

Everything here is static (no data): the single page at ``/`` and its client-side
routes, the assets under ``/static/`` (uPlot and Swagger UI vendored under
``static/vendor/``), and ``/docs``. The page fetches every figure from the
authenticated APIs with a bearer token, so the page and its assets are public
(the app declares ``PUBLIC_PATHS`` to the app-wide auth). ``/docs`` and
``/openapi.json`` describe the whole API and stay behind the token: a browser
opening ``/docs`` is offered its log-in box (the token as the password) and
the page's request for the document carries the same credentials.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"

#: The dashboard's pages (client-side routes; the server answers each with the same shell).
PAGES = ("/", "/explore", "/series", "/capacity", "/alerts", "/incidents/{incident_id}")
#: Public routes (no data in any): the page shell, the icon and the static assets' mount.
PUBLIC_PATHS = frozenset({*PAGES, "/favicon.ico", "/static"})


def install(app: FastAPI) -> None:
    """Serve the dashboard, its assets and ``/docs`` (Swagger UI from the package, offline)."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    index = STATIC_DIR / "index.html"

    # /incidents/{incident_id} is the incident link of notifications: the same shell, whose
    # router opens the alerts page on that incident (the id is read by the page, not here)
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
