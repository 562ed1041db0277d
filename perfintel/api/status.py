"""Configuration and runtime diagnostics: ``/api/v1/status/config``, ``/api/v1/status/diagnostics``.

The effective settings are shown with secrets redacted: any field whose name
says it holds a secret (token, password, secret, key, credentials) and the
password part of every URL (``postgresql://user:***@host/db``).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from fastapi import APIRouter, Depends, Request

from perfintel.api.auth import require
from perfintel.config import Settings
from perfintel.redact import redact

router = APIRouter(tags=["status"])


def effective_config(settings: Settings) -> dict[str, Any]:
    out: dict[str, Any] = redact(settings.model_dump(mode="json"))
    return out


@router.get(
    "/api/v1/status/config",
    dependencies=[Depends(require("admin"))],
    summary="Effective settings, secrets redacted",
    description="Every setting as the service runs with it (defaults, the config file and "
    "PERFINTEL_* variables merged); tokens, passwords, webhook URLs and URL passwords read ***.",
)
async def status_config(request: Request) -> dict[str, Any]:
    return {"status": "success", "data": effective_config(request.app.state.settings)}


@router.get(
    "/api/v1/status/diagnostics",
    dependencies=[Depends(require("read"))],
    summary="Runtime diagnostics: threads, queues, caches, background tasks",
    description="Live threads, asyncio tasks, queue depths (write head, online detector, stream "
    "clients), cache sizes and the overview's last refresh times and problems.",
)
async def status_diagnostics(request: Request) -> dict[str, Any]:
    state = request.app.state
    threads = [
        {"name": t.name, "daemon": t.daemon, "alive": t.is_alive()} for t in threading.enumerate()
    ]
    hub = state.live.stats()
    queues: dict[str, Any] = {
        "stream_clients": hub.clients,
        "stream_queued_messages": hub.queued_messages,
        "stream_dropped_messages": hub.dropped_messages,
    }
    anomaly = state.anomaly
    if anomaly is not None:
        depth, capacity = anomaly.queue_depth()
        queues["detector_queue"] = depth
        queues["detector_queue_capacity"] = capacity
    queues["write_head_samples"] = int(state.metrics.write_queue_depth.get())
    overview = state.overview
    return {
        "status": "success",
        "data": {
            "threads": threads,
            "asyncio_tasks": len(asyncio.all_tasks()),
            "queues": queues,
            "caches": {
                "stream_match_verdicts": hub.match_cache_entries,
                "metric_metadata": len(state.metadata),
                "overview_answers": overview.cached_answers(),
            },
            "overview": {
                "refreshed": overview.snapshot.refreshed,
                "seconds": overview.snapshot.timings,
                "problems": overview.snapshot.problems,
            },
            "published": {
                "batches": hub.published_batches,
                "events": hub.published_events,
            },
        },
    }
