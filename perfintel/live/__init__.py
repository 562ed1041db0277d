"""Live updates: what ingest and the analysers publish, fanned out to subscribers."""

from perfintel.live.hub import TOPICS, LiveHub, LivePublisher, NullPublisher, Subscription

__all__ = ["TOPICS", "LiveHub", "LivePublisher", "NullPublisher", "Subscription"]
