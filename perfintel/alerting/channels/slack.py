"""Slack incoming webhook: Block Kit blocks with ``text`` as the fallback."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from perfintel.alerting.channels.base import ChannelContext, DeliveryError, Message, post, secret


def slack_payload(message: Message, settings: Mapping[str, Any]) -> dict[str, Any]:
    n = message.notification
    emoji = {"resolved": ":white_check_mark:", "acknowledged": ":eyes:"}.get(
        n.kind, ":rotating_light:"
    )
    header = f"{emoji} {message.title}"[:150]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _mrkdwn(message.text)[:3000]}},
    ]
    buttons = []
    if message.incident_url:
        buttons.append(
            {
                "type": "button",
                "text": {"type": "plain_text", "text": "Open incident"},
                "url": message.incident_url,
            }
        )
    if message.ack_url and n.kind not in ("resolved", "acknowledged"):
        buttons.append(
            {
                "type": "button",
                "text": {"type": "plain_text", "text": "Acknowledge"},
                "url": message.ack_url,
                "style": "primary",
            }
        )
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    body: dict[str, Any] = {"text": f"{message.title}\n{message.text}"[:4000], "blocks": blocks}
    for key in ("channel", "username", "icon_emoji", "icon_url"):
        if settings.get(key):
            body[key] = settings[key]
    return body


def _mrkdwn(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackChannel:
    def send(self, message: Message, settings: Mapping[str, Any], ctx: ChannelContext) -> None:
        url = secret(settings, "api_url", ctx.global_.get("slack_api_url"))
        if not url:
            raise DeliveryError("slack: no api_url", retryable=False)
        resp = post(ctx, url, json=slack_payload(message, settings))
        if resp.text.strip() not in ("ok", ""):
            raise DeliveryError(f"slack answered {resp.text[:100]!r}", retryable=False)
