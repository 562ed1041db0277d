"""Periodic scheduling shared by the scraper and the host collector.

Ticks are aligned to a fixed phase, as Prometheus aligns scrapes: a task with
interval ``I`` and offset ``o`` runs at the wall-clock times ``t`` where
``(t - o) mod I == 0``. Many tasks with different offsets spread their work
over the interval instead of all firing at once, and a restarted process keeps
the same phase, so its samples stay evenly spaced.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable

from perfintel.background import pause

__all__ = ["next_tick", "run_every", "stable_offset"]

log = logging.getLogger(__name__)


def stable_offset(key: str, interval_s: float, seed: str = "") -> float:
    """A phase in ``[0, interval_s)`` that depends only on ``key`` and ``seed``.

    Prometheus hashes each target (mixed with a per-server seed) the same way,
    so two servers scraping the same targets do not scrape in lockstep.
    """
    digest = hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).digest()
    interval_ms = max(1, round(interval_s * 1000))
    return (int.from_bytes(digest, "big") % interval_ms) / 1000


def next_tick(now: float, interval_s: float, offset_s: float) -> float:
    """The first time ``>= now`` at which ``(t - offset_s) % interval_s == 0``."""
    return now + ((offset_s - now) % interval_s)


async def run_every(
    interval_s: float,
    offset_s: float,
    tick: Callable[[], Awaitable[object]],
    *,
    clock: Callable[[], float] = time.time,
    name: str = "task",
) -> None:
    """Await ``tick()`` on every aligned tick until cancelled.

    A tick that raises is logged and the loop goes on. Ticks missed because the
    previous one overran are skipped, never run in a burst to catch up.
    """
    if interval_s <= 0:
        raise ValueError("interval_s must be positive")
    due = next_tick(clock(), interval_s, offset_s)
    while True:
        delay = due - clock()
        await pause(max(0.0, delay))
        try:
            await tick()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed", name)
        due += interval_s
        now = clock()
        if due < now:  # overran: skip to the next tick still ahead
            due += math.ceil((now - due) / interval_s) * interval_s
