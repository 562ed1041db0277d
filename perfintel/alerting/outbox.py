"""The outbox worker: delivers pending notification rows, retrying what may succeed later.

Each row names a receiver and one of its integrations; the worker renders the
notification (templates, acknowledge link), hands it to the integration's
channel and records the outcome. Network errors, HTTP 5xx and 429 (and SMTP
4xx) are retried with exponential backoff (1 s doubling to 5 min, or the
server's ``Retry-After``) until ``max_age``; any other failure is final. A row
is marked sent only after the channel returned, so a crash in between sends it
again after the restart — with the same idempotency key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from perfintel.alerting.channels.base import Channel, ChannelContext, DeliveryError, Message
from perfintel.alerting.notification import Notification
from perfintel.alerting.notify_config import Integration
from perfintel.alerting.state.notify_store import NotifyStore, OutboxRow
from perfintel.alerting.templates import Rendered

log = logging.getLogger(__name__)

MAX_BACKOFF = 300.0


@dataclass(frozen=True)
class Links:
    ack_url: str
    incident_url: str
    external_url: str


def backoff(attempts: int, retry_after: float | None = None) -> float:
    delay = min(2.0 ** max(attempts - 1, 0), MAX_BACKOFF)
    return max(delay, min(retry_after or 0.0, 3600.0))


class OutboxWorker:
    def __init__(
        self,
        store: NotifyStore,
        channels: Mapping[str, Channel],
        integration: Callable[[str, str], Integration | None],
        render: Callable[[Notification, Links], Rendered],
        links: Callable[[Notification], Links],
        context: ChannelContext,
        *,
        max_age: float = 86400.0,
        workers: int = 4,
    ) -> None:
        self.store = store
        self.channels = channels
        self.integration = integration
        self.render = render
        self.links = links
        self.context = context
        self.max_age = max_age
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="perfintel-deliver")
        self.sent = 0
        self.failed = 0
        self.retried = 0

    def run_once(self, now: float, limit: int = 64) -> int:
        """Deliver every due row (in parallel); returns how many were attempted."""
        rows = self.store.due(now, limit)
        list(self.pool.map(lambda r: self.deliver(r, now), rows))
        return len(rows)

    def deliver(self, row: OutboxRow, now: float) -> str:
        attempts = row.attempts + 1
        try:
            message = self.message(row)
            integ = self.integration(row.receiver, row.integration)
            if integ is None:
                raise DeliveryError(
                    f"receiver {row.receiver!r} has no integration {row.integration} any more",
                    retryable=False,
                )
            channel = self.channels.get(integ.kind)
            if channel is None:
                raise DeliveryError(f"no channel registered for {integ.kind!r}", retryable=False)
            channel.send(message, integ.settings, self.context)
        except DeliveryError as exc:
            too_old = now - row.created_at >= self.max_age
            if exc.retryable and not too_old:
                self.retried += 1
                self.store.mark(
                    row.id,
                    status="pending",
                    attempts=attempts,
                    next_attempt_at=now + backoff(attempts, exc.retry_after),
                    error=str(exc),
                )
                log.info("notification %s to %s: %s (retrying)", row.key, row.receiver, exc)
                return "retry"
            self.failed += 1
            self.store.mark(
                row.id, status="failed", attempts=attempts, next_attempt_at=now, error=str(exc)
            )
            log.warning("notification %s to %s failed for good: %s", row.key, row.receiver, exc)
            return "failed"
        except Exception as exc:  # a channel bug: keep the row, retry later, say so
            self.retried += 1
            self.store.mark(
                row.id,
                status="pending",
                attempts=attempts,
                next_attempt_at=now + backoff(attempts),
                error=f"{type(exc).__name__}: {exc}",
            )
            log.error("channel error delivering %s", row.key, exc_info=exc)
            return "retry"
        self.sent += 1
        self.store.mark(row.id, status="sent", attempts=attempts, next_attempt_at=now, sent_at=now)
        return "sent"

    def message(self, row: OutboxRow) -> Message:
        n = Notification.from_dict(row.payload)
        links = self.links(n)
        rendered = self.render(n, links)
        return Message(
            notification=n,
            title=rendered.title,
            text=rendered.text,
            html=rendered.html,
            idempotency_key=row.key,
            ack_url=links.ack_url,
            incident_url=links.incident_url,
            external_url=links.external_url,
        )

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
