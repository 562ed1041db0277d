"""Microsoft Teams Workflows webhook: a message carrying one Adaptive Card.

Both ``msteams_configs`` and ``msteamsv2_configs`` send the Adaptive Card: the
Office 365 connectors that took the older MessageCard are retired.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from perfintel.alerting.channels.base import ChannelContext, Message, post, secret


def teams_payload(message: Message) -> dict[str, Any]:
    n = message.notification
    color = {"resolved": "Good", "acknowledged": "Accent"}.get(n.kind, "Attention")
    facts = [
        {"title": "Status", "value": n.kind},
        {"title": "Alerts", "value": str(n.alert_count or len(n.alerts))},
    ]
    if n.level:
        facts.append({"title": "Escalation", "value": f"L{n.level}"})
    if n.services:
        facts.append({"title": "Services", "value": ", ".join(n.services[:10])})
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": message.title,
            "weight": "Bolder",
            "size": "Medium",
            "color": color,
            "wrap": True,
        },
        {"type": "FactSet", "facts": facts},
        {"type": "TextBlock", "text": message.text[:4000], "wrap": True},
    ]
    actions = []
    if message.incident_url:
        actions.append(
            {"type": "Action.OpenUrl", "title": "Open incident", "url": message.incident_url}
        )
    if message.ack_url and n.kind not in ("resolved", "acknowledged"):
        actions.append({"type": "Action.OpenUrl", "title": "Acknowledge", "url": message.ack_url})
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.2",
        "body": body,
    }
    if actions:
        card["actions"] = actions
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }


class TeamsChannel:
    def send(self, message: Message, settings: Mapping[str, Any], ctx: ChannelContext) -> None:
        post(ctx, secret(settings, "webhook_url"), json=teams_payload(message))
