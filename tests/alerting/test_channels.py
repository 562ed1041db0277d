"""Every channel against a real local receiver, checked against its wire format (INTEROP.md)."""

from __future__ import annotations

import email
import logging
import ssl
import subprocess
from collections.abc import Iterator
from email.message import Message as MailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from notify_helpers import T0, HttpReceiver, free_port, receiver

from perfintel.alerting.channels.base import ChannelContext, DeliveryError, Message, load_channels
from perfintel.alerting.channels.pagerduty import dedup_key
from perfintel.alerting.notification import AlertSnapshot, Notification
from perfintel.alerting.notify_config import TemplateOverride
from perfintel.alerting.templates import Renderer

CHANNELS = load_channels()


@pytest.fixture
def hook() -> Iterator[HttpReceiver]:
    yield from receiver()


@pytest.fixture
def ctx() -> Iterator[ChannelContext]:
    with httpx.Client() as client:
        yield ChannelContext(
            client, {"pagerduty_url": "unused", "smtp_require_tls": True}, timeout=10
        )


def notification(kind: str = "firing", level: int = 0) -> Notification:
    predictive = AlertSnapshot(
        fingerprint="aaaa000000000001",
        status="firing",
        labels={
            "alertname": "DiskWillFill",
            "service": "db",
            "instance": "db:9100",
            "severity": "critical",
        },
        annotations={"summary": "/var fills up"},
        starts_at=T0,
        ends_at=None,
        explanation={
            "value": 81.5,
            "threshold": 95,
            "crossing": {"at": T0 + 7 * 3600, "lower": T0 + 6 * 3600, "upper": T0 + 9 * 3600},
            "confidence": 0.9,
            "band": [70, 85],
            "moved_with": ['node_disk_written_bytes_total{instance="db:9100"}'],
        },
    )
    other = AlertSnapshot(
        "aaaa000000000002",
        "firing",
        {"alertname": "HighLatency", "service": "api", "severity": "warning"},
        {},
        T0 + 60,
        None,
        "http://prom/graph",
        {"anomaly_score": 3.2},
    )
    return Notification(
        key="k" * 32,
        kind=kind,  # type: ignore[arg-type]
        receiver="team",
        incident_id="inc42",
        thread_key="route:0:team",
        group_key='{}:{incident="inc42"}',
        status="resolved" if kind == "resolved" else "firing",
        alerts=[predictive, other]
        if kind != "resolved"
        else [
            p.__class__(**{**p.__dict__, "status": "resolved", "ends_at": T0 + 600})
            for p in (predictive, other)
        ],
        group_labels={"alertname": "DiskWillFill"},
        created_at=T0 + 90,
        level=level,
        title="DiskWillFill on db (+1 related alerts)",
        root_fingerprint="aaaa000000000001",
        services=("api", "db"),
        alert_count=2,
    )


def message(n: Notification | None = None, renderer: Renderer | None = None) -> Message:
    n = n or notification()
    r = (renderer or Renderer()).render(
        n,
        ack_url="http://pi/ack?sig=1",
        incident_url="http://pi/incidents/inc42",
        external_url="http://pi",
    )
    return Message(
        n,
        r.title,
        r.text,
        r.html,
        "key-1:webhook[0]",
        "http://pi/ack?sig=1",
        "http://pi/incidents/inc42",
        "http://pi",
    )


def test_builtins_register_through_the_entry_point_group() -> None:
    assert {"webhook", "email", "slack", "msteams", "msteamsv2", "pagerduty", "sms"} <= set(
        CHANNELS
    )


def test_webhook_sends_alertmanager_v4(hook: HttpReceiver, ctx: ChannelContext) -> None:
    CHANNELS["webhook"].send(message(), {"url": hook.url + "/hook", "max_alerts": 1}, ctx)
    req = hook.requests[0]
    body = req.json()
    assert (
        req.headers["idempotency-key"] == "key-1:webhook[0]"
        and req.content_type == "application/json"
    )
    for key in (
        "version",
        "groupKey",
        "truncatedAlerts",
        "status",
        "receiver",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
        "alerts",
    ):
        assert key in body
    assert body["version"] == "4" and body["truncatedAlerts"] == 1 and len(body["alerts"]) == 1
    a = body["alerts"][0]
    assert set(a) == {
        "status",
        "labels",
        "annotations",
        "startsAt",
        "endsAt",
        "generatorURL",
        "fingerprint",
    }
    assert a["endsAt"] == "0001-01-01T00:00:00Z" and a["startsAt"].endswith("Z")
    assert body["commonLabels"] == {}  # over all alerts, the truncated one too (as Alertmanager)


def test_slack_block_kit_with_text_fallback(hook: HttpReceiver, ctx: ChannelContext) -> None:
    CHANNELS["slack"].send(
        message(), {"api_url": hook.url + "/services/T/B/x", "channel": "#ops"}, ctx
    )
    body = hook.requests[0].json()
    assert body["text"].startswith("[FIRING:2] DiskWillFill") and body["channel"] == "#ops"
    types = [b["type"] for b in body["blocks"]]
    assert types == ["header", "section", "actions"]
    assert body["blocks"][2]["elements"][1]["url"] == "http://pi/ack?sig=1"
    hook.body = b"invalid_payload"
    with pytest.raises(DeliveryError) as info:
        CHANNELS["slack"].send(message(), {"api_url": hook.url + "/services/T/B/x"}, ctx)
    assert not info.value.retryable


def test_teams_adaptive_card(hook: HttpReceiver, ctx: ChannelContext) -> None:
    CHANNELS["msteamsv2"].send(message(), {"webhook_url": hook.url + "/workflows/1"}, ctx)
    body = hook.requests[0].json()
    assert body["type"] == "message"
    att = body["attachments"][0]
    assert (
        att["contentType"] == "application/vnd.microsoft.card.adaptive"
        and att["contentUrl"] is None
    )
    card = att["content"]
    assert (
        card["type"] == "AdaptiveCard"
        and card["version"] == "1.2"
        and card["$schema"].startswith("http://adaptivecards.io")
    )
    assert (
        card["body"][0]["type"] == "TextBlock"
        and card["actions"][1]["url"] == "http://pi/ack?sig=1"
    )


def test_pagerduty_events_v2_trigger_acknowledge_resolve(
    hook: HttpReceiver, ctx: ChannelContext
) -> None:
    settings = {"routing_key": "0123456789abcdef0123456789abcdef", "url": hook.url + "/v2/enqueue"}
    for kind in ("escalation", "acknowledged", "resolved"):
        CHANNELS["pagerduty"].send(message(notification(kind, level=2)), settings, ctx)
    trigger, ack, resolve = (r.json() for r in hook.requests)
    assert (
        trigger["event_action"] == "trigger"
        and ack["event_action"] == "acknowledge"
        and resolve["event_action"] == "resolve"
    )
    assert trigger["dedup_key"] == ack["dedup_key"] == resolve["dedup_key"] == dedup_key("inc42")
    assert len(trigger["dedup_key"]) <= 255 and trigger["routing_key"] == settings["routing_key"]
    p = trigger["payload"]
    assert p["severity"] in {"critical", "error", "warning", "info"} and p["severity"] == "critical"
    assert p["summary"] and len(p["summary"]) <= 1024 and p["source"]
    assert set(ack) == {"routing_key", "event_action", "dedup_key"}


def test_sms_twilio_compatible(hook: HttpReceiver, ctx: ChannelContext) -> None:
    settings = {
        "url": hook.url,
        "account_sid": "AC123",
        "auth_token": "tok",
        "from": "+15550000",
        "to": ["+15551111", "+15552222"],
    }
    CHANNELS["sms"].send(message(notification("escalation", level=3)), settings, ctx)
    assert hook.paths() == ["/2010-04-01/Accounts/AC123/Messages.json"] * 2
    first = hook.requests[0]
    form = first.form()
    assert (
        form["To"] == "+15551111"
        and form["From"] == "+15550000"
        and form["Body"].startswith("[ALERT L3]")
    )
    assert first.headers["authorization"].startswith("Basic ") and first.headers[
        "i-twilio-idempotency-token"
    ].endswith("+15551111")


@pytest.mark.parametrize(
    ("status", "retryable"), [(500, True), (503, True), (429, True), (400, False), (404, False)]
)
def test_http_errors_are_classified(
    hook: HttpReceiver, ctx: ChannelContext, status: int, retryable: bool
) -> None:
    hook.statuses = [status]
    with pytest.raises(DeliveryError) as info:
        CHANNELS["webhook"].send(message(), {"url": hook.url + "/hook"}, ctx)
    assert info.value.retryable is retryable
    if status == 429:
        assert info.value.retry_after == 1


def test_network_errors_are_retryable(ctx: ChannelContext) -> None:
    with pytest.raises(DeliveryError) as info:
        CHANNELS["webhook"].send(message(), {"url": f"http://127.0.0.1:{free_port()}/x"}, ctx)
    assert info.value.retryable


def test_template_error_falls_back_to_the_default_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    renderer = Renderer(
        per_receiver={
            "team": TemplateOverride(
                title="{{ n.nope.deeper }}", text="{% for %}", html="<b>{{ n.title }}</b>"
            )
        }
    )
    with caplog.at_level(logging.WARNING):
        r = renderer.render(notification())
    assert r.fell_back and r.title.startswith("[FIRING:2]") and "likely root cause" in r.text
    assert r.html == "<b>DiskWillFill on db (+1 related alerts)</b>"
    assert sum("using the default template" in m for m in caplog.messages) == 2
    sandbox = Renderer(default=TemplateOverride(text="{{ n.__class__.__mro__ }}"))
    assert "likely root cause" in sandbox.render(notification()).text  # the sandbox refused it


def test_default_text_carries_the_explanation() -> None:
    text = message().text
    assert "value: 81.5 (threshold 95)" in text and "expected band: 70 .. 85" in text
    assert (
        "forecast crossing: 2023-11-15T05:13:20.000Z (between 2023-11-15T04:13:20.000Z and 2023-11-15T07:13:20.000Z)"
        in text
    )
    assert "confidence: 0.9" in text and "moved with it: node_disk_written_bytes_total" in text
    assert "anomaly score: 3.2" in text and "Acknowledge: http://pi/ack?sig=1" in text


# -- email over a real SMTP server (aiosmtpd) with STARTTLS and AUTH ---------------------------


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[tuple[int, list[dict[str, Any]], Path]]:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    got: list[dict[str, Any]] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            got.append(
                {
                    "from": envelope.mail_from,
                    "to": envelope.rcpt_tos,
                    "data": envelope.content,
                    "tls": session.ssl is not None,
                    "login": session.authenticated,
                }
            )
            return "250 OK"

    def authenticate(
        server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == b"alerts"
            and auth_data.password == b"s3cret"
        )
        return AuthResult(success=ok)

    port = free_port()
    ctl = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=port,
        tls_context=tls,
        require_starttls=True,
        authenticator=authenticate,
        auth_require_tls=True,
    )
    ctl.start()
    try:
        yield port, got, cert
    finally:
        ctl.stop()


def test_email_starttls_auth_multipart(
    smtp: tuple[int, list[dict[str, Any]], Path], ctx: ChannelContext
) -> None:
    port, got, cert = smtp
    settings = {
        "to": "oncall@example.org",
        "from": "perfintel@example.org",
        "smarthost": f"127.0.0.1:{port}",
        "auth_username": "alerts",
        "auth_password": "s3cret",
        "tls_config": {"ca_file": str(cert)},
        "headers": {"X-Team": "db"},
    }
    CHANNELS["email"].send(message(), settings, ctx)
    assert len(got) == 1 and got[0]["tls"] and got[0]["login"] is True
    mail: MailMessage = email.message_from_bytes(got[0]["data"])
    assert mail["Subject"].startswith("[FIRING:2] DiskWillFill") and mail["X-Team"] == "db"
    assert mail["Message-ID"] == "<key-1.webhook.0.@perfintel>"
    assert mail.get_content_type() == "multipart/alternative"
    parts = {p.get_content_type(): p.get_payload(decode=True).decode() for p in mail.get_payload()}  # type: ignore[union-attr]
    assert "forecast crossing" in parts["text/plain"] and "<table" in parts["text/html"]
    with pytest.raises(DeliveryError) as info:  # self-signed certificate without its CA: refused
        CHANNELS["email"].send(message(), {**settings, "tls_config": {}}, ctx)
    assert "certificate" in str(info.value).lower()
