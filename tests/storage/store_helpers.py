"""Helpers shared by the DuckDB store tests: an injected clock and day-aligned times."""

from __future__ import annotations

from pathlib import Path

from perfintel.storage.duckdb import DuckDBStore, StoreOptions

DAY = 86_400_000
HOUR = 3_600_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % DAY  # a day boundary


class Clock:
    """A settable clock in milliseconds, called like ``time.time``."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000


def open_store(path: Path, clock: Clock, **kw: object) -> DuckDBStore:
    return DuckDBStore(path, StoreOptions(background=False, **kw), clock=clock)  # type: ignore[arg-type]
