"""The channel contract, the message it is handed, and HTTP delivery with error classes.

A channel turns a rendered ``Message`` into one delivery on its wire format and
raises ``DeliveryError`` when it fails: ``retryable`` for network errors, 5xx
and 429 (with ``retry_after`` when the server named one), not for other 4xx.
Channels are found through the entry-point group ``perfintel.channels``: the
name is the integration kind (``webhook`` for ``webhook_configs``), the value a
class whose instances have ``send``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

import httpx

from perfintel.alerting.notification import Notification
from perfintel.errors import ConfigError, PerfintelError

GROUP = "perfintel.channels"


class DeliveryError(PerfintelError):
    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True)
class Message:
    """A notification rendered for people, plus the links that go with it."""

    notification: Notification
    title: str
    text: str
    html: str
    idempotency_key: str
    ack_url: str = ""
    incident_url: str = ""
    external_url: str = ""


@dataclass
class ChannelContext:
    http: httpx.Client
    global_: Mapping[str, Any] = field(default_factory=dict)
    timeout: float = 10.0


class Channel(Protocol):
    def send(self, message: Message, settings: Mapping[str, Any], ctx: ChannelContext) -> None: ...


def load_channels() -> dict[str, Channel]:
    """Every channel registered under ``perfintel.channels``, by integration kind."""
    out: dict[str, Channel] = {}
    for ep in entry_points(group=GROUP):
        try:
            out[ep.name] = ep.load()()
        except Exception as exc:  # a broken plug-in must not take the others down
            raise ConfigError(
                f"channel plug-in {ep.name!r} ({ep.value}) failed to load: {exc}"
            ) from exc
    if "webhook" not in out:
        raise ConfigError(
            f"no channels registered under the entry-point group {GROUP!r}: is perfintel installed "
            "(pip install -e .)?"
        )
    return out


def secret(settings: Mapping[str, Any], key: str, fallback: Any = None) -> str:
    """A setting given inline or as ``<key>_file`` (read when sending)."""
    value = settings.get(key)
    if value:
        return str(value)
    path = settings.get(f"{key}_file")
    if path:
        try:
            return Path(str(path)).read_text().strip()
        except OSError as exc:
            raise DeliveryError(
                f"cannot read {key}_file {path}: {exc.strerror}", retryable=True
            ) from None
    return "" if fallback is None else str(fallback)


def http_auth(settings: Mapping[str, Any]) -> tuple[dict[str, str], httpx.BasicAuth | None]:
    """Headers and auth from an Alertmanager ``http_config`` (authorization, basic_auth)."""
    cfg = settings.get("http_config") or {}
    headers: dict[str, str] = {}
    auth = None
    authz = cfg.get("authorization") or {}
    if authz:
        headers["Authorization"] = f"{authz.get('type', 'Bearer')} {secret(authz, 'credentials')}"
    basic = cfg.get("basic_auth") or {}
    if basic:
        auth = httpx.BasicAuth(str(basic.get("username", "")), secret(basic, "password"))
    return headers, auth


def post(
    ctx: ChannelContext,
    url: str,
    *,
    json: Any = None,
    data: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    auth: httpx.BasicAuth | None = None,
    timeout: float | None = None,
) -> httpx.Response:
    try:
        resp = ctx.http.post(
            url,
            json=json,
            data=data,
            headers=dict(headers or {}),
            auth=auth or httpx.USE_CLIENT_DEFAULT,
            timeout=timeout or ctx.timeout,
        )
    except httpx.HTTPError as exc:
        raise DeliveryError(
            f"POST {_safe(url)}: {type(exc).__name__}: {exc}", retryable=True
        ) from None
    if resp.status_code >= 400:
        retry_after = None
        if resp.headers.get("retry-after", "").isdigit():
            retry_after = float(resp.headers["retry-after"])
        raise DeliveryError(
            f"POST {_safe(url)}: HTTP {resp.status_code}: {resp.text[:200]}",
            retryable=resp.status_code >= 500 or resp.status_code == 429,
            retry_after=retry_after,
        )
    return resp


def _safe(url: str) -> str:
    """The URL without its path (webhook URLs carry secrets in the path)."""
    u = httpx.URL(url)
    return f"{u.scheme}://{u.host}{':' + str(u.port) if u.port else ''}/…"
