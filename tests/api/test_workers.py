"""The query threads: off the loop, bounded concurrency, errors and cancellation carried over."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from perfintel.api.workers import QueryThreads
from perfintel.errors import OverloadedError


def test_results_errors_and_the_thread() -> None:
    pool = QueryThreads(2)

    async def main() -> None:
        loop_thread = threading.get_ident()
        assert await pool.run(lambda: threading.get_ident() != loop_thread)

        def boom() -> None:
            raise ValueError("bad query")

        with pytest.raises(ValueError, match="bad query"):
            await pool.run(boom)
        assert await pool.run(lambda: 42) == 42  # a failure does not kill the worker

    asyncio.run(main())
    pool.close()


def test_the_loop_keeps_running_while_a_query_works() -> None:
    pool = QueryThreads(1)
    ticks: list[float] = []
    finished: list[float] = []

    def slow_query() -> None:
        time.sleep(0.3)
        finished.append(time.monotonic())

    async def ticker() -> None:
        for _ in range(20):
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    async def main() -> None:
        await asyncio.gather(pool.run(slow_query), ticker())

    asyncio.run(main())
    pool.close()
    assert sum(t < finished[0] for t in ticks) >= 5  # the loop ticked while the query ran


def test_at_most_size_queries_at_once_and_skipped_when_abandoned() -> None:
    pool = QueryThreads(2)
    running = 0
    peak = 0
    ran: list[int] = []
    gate = threading.Event()
    lock = threading.Lock()

    def job(i: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        gate.wait(5)
        with lock:
            running -= 1
        ran.append(i)
        return i

    async def main() -> None:
        tasks = [asyncio.create_task(pool.run(lambda i=i: job(i))) for i in range(5)]  # type: ignore[misc]
        await asyncio.sleep(0.2)
        tasks[4].cancel()  # its client went away while it waited
        gate.set()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        assert done[:4] == [0, 1, 2, 3] and isinstance(done[4], asyncio.CancelledError)

    asyncio.run(main())
    pool.close()
    assert peak == 2
    assert sorted(ran) == [0, 1, 2, 3]


def test_close_stops_the_threads() -> None:
    pool = QueryThreads(3, name="test-pool")

    async def use() -> None:
        await pool.run(lambda: None)

    asyncio.run(use())
    assert sum(t.name.startswith("test-pool-") for t in threading.enumerate()) == 3
    pool.close()
    assert not any(t.name.startswith("test-pool-") for t in threading.enumerate())
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(use())


def test_the_waiting_line_is_bounded() -> None:
    pool = QueryThreads(1, max_waiting=3)
    gate = threading.Event()

    async def main() -> None:
        busy = [asyncio.create_task(pool.run(lambda: gate.wait(5)))]
        await asyncio.sleep(0.2)  # the worker took it
        busy += [asyncio.create_task(pool.run(lambda: gate.wait(5))) for _ in range(3)]
        await asyncio.sleep(0.2)  # three wait
        with pytest.raises(OverloadedError, match="retry later"):
            await pool.run(lambda: None)
        gate.set()
        assert await asyncio.gather(*busy) == [True] * 4
        assert await pool.run(lambda: 7) == 7

    asyncio.run(main())
    pool.close()
