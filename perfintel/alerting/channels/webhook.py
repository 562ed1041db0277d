"""Generic webhook: Alertmanager's version 4 payload, so every existing receiver works.

perfintel adds fields receivers ignore: ``notification_reason`` (firing,
update, repeat, resolved, escalation, acknowledged), ``idempotencyKey`` (also
the ``Idempotency-Key`` header) and ``incident`` (id, title, state, root cause,
level, acknowledge link).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from perfintel.alerting.channels.base import ChannelContext, Message, http_auth, post, secret
from perfintel.timeparse import parse_duration_seconds


def webhook_payload(message: Message, receiver: str, max_alerts: int = 0) -> dict[str, Any]:
    n = message.notification
    alerts = [a.to_webhook() for a in n.alerts]
    truncated = 0
    if max_alerts and len(alerts) > max_alerts:
        truncated = len(alerts) - max_alerts
        alerts = alerts[:max_alerts]
    return {
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": truncated,
        "status": n.status,
        "receiver": receiver,
        "groupLabels": dict(n.group_labels),
        "commonLabels": n.common_labels,
        "commonAnnotations": n.common_annotations,
        "externalURL": message.external_url,
        "notification_reason": n.kind,
        "alerts": alerts,
        "idempotencyKey": message.idempotency_key,
        "incident": {
            "id": n.incident_id,
            "title": n.title,
            "state": n.incident_state,
            "rootCause": n.root_fingerprint,
            "level": n.level,
            "alertCount": n.alert_count,
            "flapping": n.flapping,
            "url": message.incident_url,
            "ackURL": message.ack_url,
        },
    }


class WebhookChannel:
    def send(self, message: Message, settings: Mapping[str, Any], ctx: ChannelContext) -> None:
        url = secret(settings, "url")
        body = webhook_payload(
            message, message.notification.receiver, int(settings.get("max_alerts") or 0)
        )
        headers, auth = http_auth(settings)
        headers["Idempotency-Key"] = message.idempotency_key
        timeout = parse_duration_seconds(settings["timeout"]) if settings.get("timeout") else None
        post(ctx, url, json=body, headers=headers, auth=auth, timeout=timeout)
