"""Fan-out of accepted samples and events to live subscribers (the WebSocket stream).

Producers call a ``LivePublisher``: ingest hands every batch the store has
accepted to ``publish_samples``; the online detector and the overview hand
their events to ``publish_event``. Today the producer is local ingest; a
scaled-out deployment feeds the same two methods from a Redis Stream reader
instead, and nothing downstream changes.

``LiveHub`` is the local implementation. It is called from any thread (ingest
runs in worker threads) and delivers to subscriptions that live on one
asyncio event loop (``bind``):

* the matching happens on the publishing thread, once per distinct
  subscription filter (100 clients watching the same selector cost one match
  and one JSON encoding);
* each subscription holds a bounded queue of encoded messages
  (``max_queue``); when a client reads too slowly the oldest messages are
  dropped and counted, and the next message it gets is a
  ``{"type": "dropped", "messages": n}`` notice. A client that has had more
  than ``max_dropped`` messages dropped since its last read is closed
  (``Subscription.lagged_out``). Memory per client is therefore at most
  ``max_queue`` messages of at most ``max_points`` samples each.

Message shapes (JSON)::

    {"type": "samples", "series": [{"labels": {...}, "timestamps": [ms...], "values": [...]}]}
    {"type": "<topic>", "data": {...}}          # anomalies, health, alerts
    {"type": "dropped", "messages": n}

Thread-safety: ``publish_*`` from any thread; ``subscribe``/``unsubscribe``
and everything on ``Subscription`` from the bound loop's thread (``subscribe``
takes a lock because the publishing threads read the subscription list).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import orjson

from perfintel.batch import SampleBatch
from perfintel.model import LabelSet, Selector

#: Topics a client may subscribe to. ``alerts``: the active alerts and incidents changed (an
#: alert fired or resolved, was silenced; an incident opened, was acknowledged, escalated or
#: notified someone); the data are the new counts and top items.
TOPICS = frozenset({"samples", "anomalies", "health", "alerts"})


class LivePublisher(Protocol):
    """Where producers hand what subscribers may want to see."""

    def publish_samples(self, batch: SampleBatch, *, ingested: bool = True) -> None:
        """Samples the store has accepted (called after the append returns); ``ingested``
        False for samples perfintel derived itself (the detector's outputs)."""
        ...

    def publish_event(self, topic: str, data: dict[str, Any]) -> None:
        """An event of ``topic`` (one of ``TOPICS``)."""
        ...


class NullPublisher:
    """Publishes nothing (the default before the service binds a hub)."""

    def publish_samples(self, batch: SampleBatch, *, ingested: bool = True) -> None:
        return None

    def publish_event(self, topic: str, data: dict[str, Any]) -> None:
        return None


@dataclass
class Subscription:
    """One client's filter and its bounded queue of encoded messages."""

    selectors: tuple[Selector, ...]
    topics: frozenset[str]
    max_queue: int
    max_dropped: int
    queue: collections.deque[bytes] = field(default_factory=collections.deque)
    dropped: int = 0  # since the last read
    dropped_total: int = 0
    delivered: int = 0
    lagged_out: bool = False  # more than max_dropped were dropped between two reads
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def key(self) -> tuple[tuple[str, ...], frozenset[str]]:
        return tuple(sorted(str(s) for s in self.selectors)), self.topics

    def matches(self, labels: LabelSet) -> bool:
        return any(s.matches(labels) for s in self.selectors)

    def deliver(self, message: bytes) -> None:
        """Queue one message (on the loop thread), dropping the oldest when full."""
        if len(self.queue) >= self.max_queue:
            self.queue.popleft()
            self.dropped += 1
            self.dropped_total += 1
        self.queue.append(message)
        self._wake.set()

    async def next_messages(self, timeout: float | None = None) -> list[bytes]:
        """Wait for messages and take them all (a dropped-notice first when some were lost)."""
        if not self.queue:
            self._wake.clear()
            if timeout is None:
                await self._wake.wait()
            else:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except TimeoutError:
                    return []
        out: list[bytes] = []
        if self.dropped > self.max_dropped:
            self.lagged_out = True
        if self.dropped:
            out.append(orjson.dumps({"type": "dropped", "messages": self.dropped}))
            self.dropped = 0
        out.extend(self.queue)
        self.queue.clear()
        self.delivered += len(out)
        return out


@dataclass
class HubStats:
    clients: int
    queued_messages: int
    published_batches: int
    published_events: int
    dropped_messages: int
    match_cache_entries: int


class LiveHub:
    """Fans published samples and events out to subscriptions on one event loop.

    ``max_points``: most samples of one batch sent to one filter (the newest of
    each series are kept); ``max_clients``: ``subscribe`` refuses beyond it.
    """

    def __init__(
        self,
        *,
        max_clients: int = 1000,
        max_queue: int = 256,
        max_dropped: int = 2048,
        max_points: int = 10_000,
        max_cache: int = 200_000,
    ) -> None:
        self.max_clients = max_clients
        self.max_queue = max_queue
        self.max_dropped = max_dropped
        self.max_points = max_points
        self.max_cache = max_cache
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._subs: list[Subscription] = []
        # filter key -> {labels: matches?}; all cleared once they hold max_cache verdicts
        self._cached = 0
        self._verdicts: dict[tuple[tuple[str, ...], frozenset[str]], dict[LabelSet, bool]] = {}
        self.published_batches = 0
        self.published_samples = 0
        self.published_events = 0
        self.last_batch_at: float | None = None
        self.last_sample_lag_s: float | None = None

    # -- loop side ----------------------------------------------------------------
    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def subscribe(
        self, selectors: Sequence[Selector], topics: Iterable[str]
    ) -> Subscription | None:
        """A new subscription, or ``None`` when ``max_clients`` are already connected."""
        sub = Subscription(tuple(selectors), frozenset(topics), self.max_queue, self.max_dropped)
        with self._lock:
            if len(self._subs) >= self.max_clients:
                return None
            self._subs = [*self._subs, sub]
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs = [s for s in self._subs if s is not sub]

    def stats(self) -> HubStats:
        subs = self._subs
        return HubStats(
            clients=len(subs),
            queued_messages=sum(len(s.queue) for s in subs),
            published_batches=self.published_batches,
            published_events=self.published_events,
            dropped_messages=sum(s.dropped_total for s in subs),
            match_cache_entries=self._cached,
        )

    # -- publishing side (any thread) ---------------------------------------------
    def wants_samples(self) -> bool:
        """Whether any client subscribes to samples now (else counting them is enough)."""
        return any("samples" in s.topics for s in self._subs)

    def has_clients(self) -> bool:
        return bool(self._subs)

    def count_ingested(self, batches: int, samples: int, newest_ms: int | None) -> None:
        """The overview's ingest figures for samples nobody needs to see (``newest_ms``:
        the newest sample's time, for the ingest lag)."""
        now = time.time()
        with self._lock:  # ingest publishes from several worker threads at once
            self.published_batches += batches
            self.published_samples += samples
        self.last_batch_at = now
        if newest_ms is not None:
            self.last_sample_lag_s = max(0.0, now - newest_ms / 1000)

    def publish_samples(self, batch: SampleBatch, *, ingested: bool = True) -> None:
        if ingested:  # the ingest figures of the overview
            newest = int(batch.timestamps.max()) if len(batch) else None
            self.count_ingested(1, len(batch), newest)
        subs = [s for s in self._subs if "samples" in s.topics]
        if not subs or not len(batch) or self._loop is None:
            return
        groups: dict[tuple[tuple[str, ...], frozenset[str]], list[Subscription]] = {}
        for s in subs:
            groups.setdefault(s.key, []).append(s)
        for key, members in groups.items():
            message = self._samples_message(key, members[0], batch)
            if message is not None:
                self._deliver(members, message)

    def publish_event(self, topic: str, data: dict[str, Any]) -> None:
        self.published_events += 1
        subs = [s for s in self._subs if topic in s.topics]
        if not subs or self._loop is None:
            return
        labels = data.get("labels")
        if isinstance(labels, dict):  # events about one series go to the clients watching it
            ls = tuple(sorted((str(k), str(v)) for k, v in labels.items()))
            subs = [s for s in subs if not s.selectors or s.matches(ls)]
        if subs:
            self._deliver(subs, orjson.dumps({"type": topic, "data": data}, default=_jsonable))

    def _deliver(self, subs: list[Subscription], message: bytes) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def deliver_all() -> None:
            for s in subs:
                s.deliver(message)

        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (shutdown)
            loop.call_soon_threadsafe(deliver_all)

    def _samples_message(
        self, key: tuple[tuple[str, ...], frozenset[str]], sub: Subscription, batch: SampleBatch
    ) -> bytes | None:
        if self._cached > self.max_cache:  # bounded over all filters, stale ones included
            self._verdicts, self._cached = {}, 0
        verdicts = self._verdicts.get(key)
        if verdicts is None:
            verdicts = self._verdicts[key] = {}
        wanted = np.zeros(len(batch.series), dtype=bool)
        for i, ls in enumerate(batch.series):
            v = verdicts.get(ls)
            if v is None:
                v = verdicts[ls] = sub.matches(ls)
                self._cached += 1
            wanted[i] = v
        if not wanted.any():
            return None
        keep = wanted[batch.series_idx]
        idx, ts, vals = batch.series_idx[keep], batch.timestamps[keep], batch.values[keep]
        if len(idx) > self.max_points:  # the newest samples win
            order = np.argsort(ts, kind="stable")[-self.max_points :]
            idx, ts, vals = idx[order], ts[order], vals[order]
        order = np.lexsort((ts, idx))  # grouped by series, in time order within one
        idx, ts, vals = idx[order], ts[order], vals[order]
        cuts = np.flatnonzero(np.diff(idx)) + 1
        starts, ends = np.r_[0, cuts].tolist(), np.r_[cuts, len(idx)].tolist()
        values = [v if math.isfinite(v) else None for v in vals.tolist()]
        stamps = ts.tolist()
        series = [
            {
                "labels": dict(batch.series[int(idx[a])]),
                "timestamps": stamps[a:b],
                "values": values[a:b],
            }
            for a, b in zip(starts, ends, strict=True)
        ]
        return orjson.dumps({"type": "samples", "series": series})


def _jsonable(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot encode {type(value).__name__}")


def publish_detector_outputs(publisher: LivePublisher, batch: SampleBatch) -> None:
    """The online detector's outputs: as samples (charts extend their band), and an
    ``anomalies`` event per series whose ``anomaly_score`` went above 1 in the batch."""
    publisher.publish_samples(batch, ingested=False)
    for labels, ts, values in batch.iter_series():
        d = dict(labels)
        if d.get("__name__") != "anomaly_score":
            continue
        over = np.flatnonzero(values > 1.0)
        if not len(over):
            continue
        i = int(over[np.argmax(values[over])])
        source = {k: v for k, v in d.items() if k not in ("__name__", "for")}
        source["__name__"] = d.get("for", "")
        publisher.publish_event(
            "anomalies", {"labels": source, "time": int(ts[i]), "score": float(values[i])}
        )
