"""SMS through a Twilio-compatible REST API (the base URL is configurable).

``POST {url}/2010-04-01/Accounts/{account_sid}/Messages.json`` with form fields
``To``, ``From`` and ``Body``, HTTP basic auth (account SID, auth token) and
Twilio's idempotency header, once per number in ``to``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from perfintel.alerting.channels.base import ChannelContext, Message, post, secret

MAX_SMS = 480  # three segments


def sms_body(message: Message) -> str:
    n = message.notification
    head = {"resolved": "RESOLVED", "acknowledged": "ACK"}.get(n.kind, "ALERT")
    level = f" L{n.level}" if n.level else ""
    text = f"[{head}{level}] {message.title}"
    if message.ack_url and n.kind not in ("resolved", "acknowledged"):
        text += f" Ack: {message.ack_url}"
    return text[:MAX_SMS]


class SmsChannel:
    def send(self, message: Message, settings: Mapping[str, Any], ctx: ChannelContext) -> None:
        base = str(settings["url"]).rstrip("/")
        sid = secret(settings, "account_sid")
        auth = httpx.BasicAuth(sid, secret(settings, "auth_token"))
        numbers = settings["to"] if isinstance(settings["to"], list) else [settings["to"]]
        for number in numbers:
            post(
                ctx,
                f"{base}/2010-04-01/Accounts/{sid}/Messages.json",
                data={"To": str(number), "From": str(settings["from"]), "Body": sms_body(message)},
                headers={"I-Twilio-Idempotency-Token": f"{message.idempotency_key}:{number}"},
                auth=auth,
            )
