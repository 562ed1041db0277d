"""The one place where perfintel's exceptions become HTTP responses.

Bodies use the Prometheus API envelope, so Grafana and Prometheus clients
understand them: ``{"status": "error", "errorType": ..., "error": ...}``.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from perfintel import errors as e
from perfintel.api.responses import JSONResponse

log = logging.getLogger(__name__)

# Most specific first: the first matching class decides.
STATUS: list[tuple[type[e.PerfintelError], int, str]] = [
    (e.PayloadTooLargeError, 413, "bad_data"),
    (e.UnsupportedMediaError, 415, "bad_data"),
    (e.BadInputError, 400, "bad_data"),
    (e.QueryTimeoutError, 503, "timeout"),
    (e.QueryError, 422, "execution"),
    (e.NotFoundError, 404, "not_found"),
    (e.AuthError, 401, "unauthorized"),
    (e.ForbiddenError, 403, "forbidden"),
    (e.OverloadedError, 429, "unavailable"),
    (e.StorageError, 503, "unavailable"),
    (e.ConfigError, 500, "internal"),
    (e.PerfintelError, 500, "internal"),
]


def status_for(exc: e.PerfintelError) -> tuple[int, str]:
    for cls, code, kind in STATUS:
        if isinstance(exc, cls):
            return code, kind
    return 500, "internal"


def error_response(
    code: int, kind: str, message: str, *, retry_after: int | None = None
) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if code == 401 else None
    if code == 429:
        headers = {"Retry-After": "1"}
    if retry_after is not None:
        headers = {"Retry-After": str(retry_after)}
    return JSONResponse(
        {"status": "error", "errorType": kind, "error": message}, status_code=code, headers=headers
    )


DISK_FULL_RETRY_AFTER_S = 10
_LOG_EVERY_S = 30.0
_last_logged: dict[str, tuple[float, int]] = {}  # error class -> (when logged, suppressed since)


def _warn_limited(exc: e.PerfintelError) -> None:
    """Log a server-side error, the same class at most once per ``_LOG_EVERY_S``
    (a full disk fails every write: one line per request would flood the log)."""
    name = type(exc).__name__
    now = time.monotonic()
    when, suppressed = _last_logged.get(name, (-_LOG_EVERY_S, 0))
    if now - when < _LOG_EVERY_S:
        _last_logged[name] = (when, suppressed + 1)
        return
    _last_logged[name] = (now, 0)
    more = f" ({suppressed} more like it in the last {now - when:.0f} s)" if suppressed else ""
    log.warning("%s: %s%s", name, exc, more)


def install(app: FastAPI) -> None:
    @app.exception_handler(e.PerfintelError)
    async def _perfintel(_: Request, exc: e.PerfintelError) -> JSONResponse:
        code, kind = status_for(exc)
        if code >= 500:
            _warn_limited(exc)
        retry = DISK_FULL_RETRY_AFTER_S if isinstance(exc, e.DiskFullError) else None
        response = error_response(code, kind, str(exc), retry_after=retry)
        if isinstance(exc, e.BackpressureError):
            response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            body_problem = await _body_problem(request, err)
            if body_problem:
                parts.append(body_problem)
                continue
            loc = ".".join(str(p) for p in err["loc"] if p not in ("body", "query"))
            parts.append(f"invalid parameter {loc!r}: {err['msg']}" if loc else err["msg"])
        return error_response(400, "bad_data", "; ".join(parts))

    @app.exception_handler(Exception)
    async def _bug(_: Request, exc: Exception) -> JSONResponse:
        # A bug, not bad input: still answer in the envelope clients parse.
        log.error("unhandled error", exc_info=exc)
        return error_response(500, "internal", f"internal error: {exc}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "bad_data"}.get(exc.status_code, "bad_data")
        return error_response(exc.status_code, kind, str(exc.detail))


_NOT_AN_OBJECT = {"model_attributes_type", "dict_type", "model_type"}


async def _body_problem(request: Request, err: Any) -> str | None:
    """Say plainly what is wrong with a JSON body: not JSON (where), or not sent as JSON."""
    loc: tuple[Any, ...] = tuple(err.get("loc") or ())
    if err.get("type") == "json_invalid" and loc[:1] == ("body",):
        body = await request.body()
        pos = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else len(body)
        line = body.count(b"\n", 0, pos) + 1
        column = pos - (body.rfind(b"\n", 0, pos) + 1) + 1
        reason = (err.get("ctx") or {}).get("error") or err.get("msg", "invalid JSON")
        return f"body is not valid JSON: {reason} at line {line} column {column}"
    if tuple(loc) != ("body",):
        return None
    if err.get("type") == "missing":
        return "this request needs a JSON body (Content-Type: application/json)"
    if err.get("type") in _NOT_AN_OBJECT:
        ctype = request.headers.get("content-type")
        if not ctype or "json" not in ctype.lower():
            got = f"Content-Type {ctype!r}" if ctype else "no Content-Type"
            return (
                f"the body must be a JSON object sent with Content-Type: application/json "
                f"(this request has {got})"
            )
        return f"the body must be a JSON object, not {type(err.get('input')).__name__}"
    return None
