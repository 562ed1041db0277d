"""Email over SMTP: STARTTLS (or TLS on port 465), AUTH, a multipart text + HTML body.

Settings follow Alertmanager's ``email_configs`` (``to``, ``from``,
``smarthost``, ``hello``, ``auth_username``, ``auth_password[_file]``,
``auth_identity``, ``require_tls``, ``tls_config``, ``headers``), falling back
to the ``global`` ``smtp_*`` values. The Message-ID is derived from the
idempotency key, so a repeat after a crash threads as the same mail.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from perfintel.alerting.channels.base import ChannelContext, DeliveryError, Message, secret


def message_id(key: str) -> str:
    return "<" + re.sub(r"[^A-Za-z0-9.-]", ".", key) + "@perfintel>"


def build_email(message: Message, settings: Mapping[str, Any], sender: str) -> EmailMessage:
    mail = EmailMessage()
    headers = {str(k): str(v) for k, v in (settings.get("headers") or {}).items()}
    mail["Subject"] = headers.pop("Subject", None) or message.title
    mail["From"] = headers.pop("From", None) or sender
    mail["To"] = headers.pop("To", None) or str(settings["to"])
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = message_id(message.idempotency_key)
    mail["X-Perfintel-Incident"] = message.notification.incident_id
    for k, v in headers.items():
        mail[k] = v
    mail.set_content(message.text)
    mail.add_alternative(message.html, subtype="html")
    return mail


def _tls_context(settings: Mapping[str, Any]) -> ssl.SSLContext:
    tls = settings.get("tls_config") or {}
    ctx = ssl.create_default_context(cafile=tls.get("ca_file") or None)
    if tls.get("insecure_skip_verify"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class EmailChannel:
    def send(self, message: Message, settings: Mapping[str, Any], ctx: ChannelContext) -> None:
        g = ctx.global_
        smarthost = str(settings.get("smarthost") or g.get("smtp_smarthost") or "")
        host, _, port_text = smarthost.rpartition(":")
        if not host or not port_text.isdigit():
            raise DeliveryError(f"email: smarthost {smarthost!r} is not host:port", retryable=False)
        port = int(port_text)
        sender = str(settings.get("from") or g.get("smtp_from") or "")
        require_tls = bool(settings.get("require_tls", g.get("smtp_require_tls", True)))
        username = str(settings.get("auth_username") or g.get("smtp_auth_username") or "")
        password = secret(settings, "auth_password") or secret(g, "smtp_auth_password")
        hello = str(settings.get("hello") or g.get("smtp_hello") or "localhost")
        mail = build_email(message, settings, sender)
        tls = _tls_context(settings)
        server_name = (settings.get("tls_config") or {}).get("server_name") or host
        try:
            if port == 465:
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    host, port, local_hostname=hello, timeout=ctx.timeout, context=tls
                )
            else:
                smtp = smtplib.SMTP(host, port, local_hostname=hello, timeout=ctx.timeout)
            with smtp:
                smtp.ehlo()
                if port != 465:
                    if smtp.has_extn("starttls"):
                        smtp._host = server_name  # type: ignore[attr-defined]  # SNI / hostname check
                        smtp.starttls(context=tls)
                        smtp.ehlo()
                    elif require_tls:
                        raise DeliveryError(
                            "email: the server does not offer STARTTLS (require_tls)",
                            retryable=False,
                        )
                if username:
                    smtp.login(username, password)
                smtp.send_message(mail)
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"email: SMTP {exc.smtp_code} {exc.smtp_error!r}",
                retryable=400 <= exc.smtp_code < 500,
            ) from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(
                f"email: recipients refused: {list(exc.recipients)}", retryable=False
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"email: {type(exc).__name__}: {exc}", retryable=True) from None
