"""WebSocket ``/api/v1/performance/stream``: live samples and events.

Protocol (JSON text frames):

1. With tokens configured, authenticate as every route does (``perfintel.api.auth``,
   read scope): an ``Authorization`` header, or — what browsers can send on a
   WebSocket — ``?token=<t>`` (or ``?access_token=<t>``) on the URL; without one the
   handshake is refused with 401 before the socket opens.
2. Subscribe (again at any time, replacing the filter)::

       {"subscribe": {"topics": ["samples", "anomalies", "health"],
                      "selectors": ["node_load1{instance=\\"web-1\\"}"]}}

   answered by ``{"type": "subscribed", "topics": [...], "selectors": [...]}``.
   ``samples`` needs at least one selector; events of the other topics about
   one series go to the clients whose selectors match it (all, when none).
   ``alerts`` (when alerting runs) pushes ``{"type": "alerts", "data": {...}}``
   whenever the active alerts or incidents change: the counts and top items
   of ``dashboard/realtime``'s ``alerts`` with a ``version`` that grows.
3. The server pushes the messages of ``perfintel.live.hub``; ``{"ping": 1}``
   gets ``{"type": "pong"}``.

Bounds: at most ``MAX_SELECTORS`` selectors of ``MAX_MESSAGE`` bytes per
message; the hub bounds each client's queue and closes clients that fall
too far behind (code 1013). More than ``dashboard.stream_max_clients``
clients: closed with 1013 at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from perfintel.api.params import valid_selector
from perfintel.live.hub import TOPICS, LiveHub, Subscription
from perfintel.model import Selector, parse_selector

router = APIRouter()

STREAM_PATH = "/api/v1/performance/stream"
MAX_SELECTORS = 50
MAX_MESSAGE = 16_384


class _Refused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _subscription_of(msg: Any) -> tuple[list[Selector], list[str]]:
    spec = msg.get("subscribe") if isinstance(msg, dict) else None
    if not isinstance(spec, dict):
        raise ValueError('expected {"subscribe": {"topics": [...], "selectors": [...]}}')
    topics = spec.get("topics", ["samples"])
    texts = spec.get("selectors", [])
    if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
        raise ValueError("topics must be a list of strings")
    unknown = sorted(set(topics) - TOPICS)
    if unknown:
        raise ValueError(f"unknown topics {unknown} (known: {sorted(TOPICS)})")
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise ValueError("selectors must be a list of strings")
    if len(texts) > MAX_SELECTORS:
        raise ValueError(f"at most {MAX_SELECTORS} selectors")
    if "samples" in topics and not texts:
        raise ValueError("the samples topic needs at least one selector")
    return [parse_selector(valid_selector(t)) for t in texts], sorted(set(topics))


async def _receive_json(ws: WebSocket) -> Any:
    text = await ws.receive_text()
    if len(text) > MAX_MESSAGE:
        raise _Refused(1009, f"message larger than {MAX_MESSAGE} bytes")
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise _Refused(1003, "messages must be JSON") from None


@router.websocket(STREAM_PATH)
async def stream(ws: WebSocket) -> None:
    hub: LiveHub = ws.app.state.live
    await ws.accept()
    sub: Subscription | None = None
    sender: asyncio.Task[None] | None = None
    try:
        await ws.send_text('{"type":"ready"}')
        while True:
            msg = await _receive_json(ws)
            if isinstance(msg, dict) and "ping" in msg:
                await ws.send_text('{"type":"pong"}')
                continue
            try:
                selectors, topics = _subscription_of(msg)
            except ValueError as exc:
                await ws.send_text(_json({"type": "error", "error": str(exc)}))
                continue
            if sub is not None:
                hub.unsubscribe(sub)
            if sender is not None:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender
            sub = hub.subscribe(selectors, topics)
            if sub is None:
                raise _Refused(1013, "too many stream clients; try again later")
            await ws.send_text(
                _json(
                    {
                        "type": "subscribed",
                        "topics": topics,
                        "selectors": [str(s) for s in selectors],
                    }
                )
            )
            sender = asyncio.create_task(_send_loop(ws, sub))
    except _Refused as exc:
        with contextlib.suppress(Exception):
            await ws.close(exc.code, exc.reason)
    except WebSocketDisconnect:
        pass
    finally:
        if sub is not None:
            hub.unsubscribe(sub)
        if sender is not None:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender


def _json(doc: dict[str, Any]) -> str:
    return orjson.dumps(doc).decode()


async def _send_loop(ws: WebSocket, sub: Subscription) -> None:
    try:
        while True:
            messages = await sub.next_messages()
            if sub.lagged_out:
                await ws.close(1013, "client too slow: too many messages dropped")
                return
            for m in messages:
                await ws.send_text(m.decode())
    except (WebSocketDisconnect, RuntimeError):
        return
