"""Options of the DuckDB store: block width, retention, rollup tiers, flush policy."""

from __future__ import annotations

from dataclasses import dataclass, field

from perfintel.storage.base import FlushReport

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR


@dataclass(frozen=True)
class Tier:
    """A rollup tier: bucket ``resolution_ms``, kept for ``retention_ms``, stored per ``window_ms``."""

    name: str
    resolution_ms: int
    retention_ms: int
    window_ms: int


@dataclass(frozen=True)
class StoreOptions:
    block_ms: int = 2 * HOUR
    raw_retention_ms: int = 15 * DAY  # also the oldest sample an append takes
    max_future_ms: int = HOUR  # the newest sample an append takes, ahead of the clock
    max_new_series_per_append: int = 100_000  # more in one append: refused whole
    max_new_series_per_minute: int = 1_000_000  # faster: refused (retry later)
    tiers: tuple[Tier, ...] = (
        Tier("5m", 5 * MINUTE, 90 * DAY, DAY),
        Tier("1h", HOUR, 730 * DAY, 8 * DAY),
    )
    head_max_samples: int = 2_000_000
    head_max_age_s: float = 120.0
    seal_grace_ms: int = HOUR  # a window is final this long after it ends
    maintenance_interval_s: float = 5.0
    wal_fsync: bool = True
    background: bool = True
    memory_limit: str = "256MB"
    threads: int = 2


@dataclass
class MaintenanceReport(FlushReport):
    compacted_groups: int = 0
    rollup_windows: int = 0
    deleted_chunks: int = 0
    extra: dict[str, int] = field(default_factory=dict)
