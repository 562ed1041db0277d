"""An in-memory channel for tests of the code above the channels (never instead of them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from perfintel.alerting.channels.base import ChannelContext, DeliveryError, Message


class RecordingChannel:
    """Records every message; ``fail_next`` queues errors to raise first (retryable or not)."""

    def __init__(self) -> None:
        self.messages: list[tuple[Message, Mapping[str, Any]]] = []
        self.fail_next: list[DeliveryError] = []

    def send(self, message: Message, settings: Mapping[str, Any], ctx: ChannelContext) -> None:
        if self.fail_next:
            raise self.fail_next.pop(0)
        self.messages.append((message, settings))
