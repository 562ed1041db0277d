"""Reloading the alerting configuration: ``POST /-/reload`` and SIGHUP, in one place.

perfintel is its own Prometheus (rule files) and its own Alertmanager
(``alertmanager.yml``), so its ``/-/reload`` — the endpoint both of those
answer — reloads both, and so does SIGHUP. Each part checks its new files
before switching: a file with an error is refused with its file, line and
reason and that part keeps its running configuration (the other part still
reloads). ``POST /api/v1/admin/rules/reload`` reloads the rule files alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from starlette.concurrency import run_in_threadpool

from perfintel.api.auth import require
from perfintel.api.responses import JSONResponse
from perfintel.errors import BadInputError, ConfigFileError

log = logging.getLogger("perfintel.reload")
router = APIRouter(tags=["admin"])


async def reload_alerting(app: FastAPI) -> tuple[dict[str, Any], list[str]]:
    """Reload the rule files and alertmanager.yml; ``(what was reloaded, errors)``."""
    done: dict[str, Any] = {}
    errors: list[str] = []
    rules = app.state.rules
    if rules is not None:
        result = await rules.reload_async()
        if result.ok:
            done["rules"] = {"groups": result.groups, "rules": result.rules}
        else:
            errors.append("rule files not reloaded: " + "; ".join(result.errors))
    notify = app.state.notify
    if notify is not None:
        try:
            config = await run_in_threadpool(notify.reload)
        except ConfigFileError as exc:
            errors.append(f"alertmanager configuration not reloaded: {exc}")
        else:
            done["alertmanager"] = {"file": config.path, "warnings": config.warnings}
    return done, errors


@router.post(
    "/-/reload",
    dependencies=[Depends(require("admin"))],
    summary="Reload the rule files and alertmanager.yml (as Prometheus's and Alertmanager's /-/reload)",
    responses={
        400: {"description": "A file has an error; that part keeps its running configuration"}
    },
)
async def reload(request: Request) -> JSONResponse:
    done, errors = await reload_alerting(request.app)
    if errors:
        raise BadInputError("; ".join(errors) + " (the running configuration stays)")
    return JSONResponse({"status": "success", "data": done})


def install_sighup(app: FastAPI) -> bool:
    """SIGHUP reloads as ``/-/reload`` does; only on the main thread's loop (a server),
    not where the app is embedded (tests), where the HTTP route remains."""
    loop = asyncio.get_running_loop()
    running: set[asyncio.Task[None]] = set()  # held until done (the loop keeps weak references)

    def on_sighup() -> None:
        async def run() -> None:
            done, errors = await reload_alerting(app)
            for e in errors:
                log.error("SIGHUP: %s", e)
            log.info("SIGHUP: reloaded %s", ", ".join(done) or "nothing")

        task = loop.create_task(run())
        running.add(task)
        task.add_done_callback(running.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, on_sighup)
    except (RuntimeError, ValueError, NotImplementedError):
        return False
    return True


def remove_sighup() -> None:
    with contextlib.suppress(Exception):
        asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
