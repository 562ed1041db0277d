"""PagerDuty Events API v2: trigger, acknowledge and resolve with one dedup_key per incident.

The ``dedup_key`` is derived from the incident id, so every message of an
incident (escalation levels included) updates the same PagerDuty alert.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from perfintel.alerting.channels.base import ChannelContext, DeliveryError, Message, post, secret
from perfintel.alerting.incidents import severity_rank
from perfintel.alerting.notification import Notification

_SEVERITIES = {"critical", "error", "warning", "info"}


def dedup_key(incident_id: str) -> str:
    return hashlib.sha256(f"perfintel/incident/{incident_id}".encode()).hexdigest()


def pagerduty_payload(
    message: Message, settings: Mapping[str, Any], routing_key: str
) -> dict[str, Any]:
    n = message.notification
    action = {"resolved": "resolve", "acknowledged": "acknowledge"}.get(n.kind, "trigger")
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": dedup_key(n.incident_id),
    }
    if action != "trigger":
        return body
    common = n.common_labels
    severity = str(settings.get("severity") or _worst(n) or "error").lower()
    if severity not in _SEVERITIES:
        severity = {"page": "critical", "high": "error", "warn": "warning", "low": "info"}.get(
            severity, "error"
        )
    root = n.root
    body["client"] = str(settings.get("client") or "perfintel")
    body["client_url"] = str(
        settings.get("client_url") or message.incident_url or message.external_url
    )
    body["payload"] = {
        "summary": message.title[:1024],
        "source": str(
            settings.get("source") or common.get("instance") or common.get("service") or "perfintel"
        ),
        "severity": severity,
        "timestamp": _iso(n.created_at),
        "component": str(
            settings.get("component") or (root.labels.get("service", "") if root else "")
        ),
        "group": str(settings.get("group") or ",".join(n.services[:5])),
        "class": str(settings.get("class") or (root.labels.get("alertname", "") if root else "")),
        "custom_details": {
            "firing": len(n.firing),
            "resolved": len(n.resolved),
            "level": n.level,
            "details": message.text[:8000],
        },
    }
    links = [{"href": message.incident_url, "text": "Incident"}] if message.incident_url else []
    if message.ack_url:
        links.append({"href": message.ack_url, "text": "Acknowledge in perfintel"})
    if links:
        body["links"] = links
    return body


def _worst(n: Notification) -> str:
    """The highest ``severity`` label among the alerts (the incident is as bad as its worst)."""
    labels = [a.labels for a in n.firing] or [a.labels for a in n.alerts]
    worst = max(labels, key=severity_rank, default={})
    return worst.get("severity", "")


def _iso(ts: float) -> str:
    from perfintel.alerting.notification import rfc3339

    return rfc3339(ts)


class PagerDutyChannel:
    def send(self, message: Message, settings: Mapping[str, Any], ctx: ChannelContext) -> None:
        key = secret(settings, "routing_key") or secret(settings, "service_key")
        if not key:
            raise DeliveryError("pagerduty: no routing_key", retryable=False)
        url = str(settings.get("url") or ctx.global_.get("pagerduty_url"))
        post(ctx, url, json=pagerduty_payload(message, settings, key))
