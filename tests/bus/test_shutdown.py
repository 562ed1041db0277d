"""Background loops stop when cancelled even when a client library turns the cancellation
into an error of its own (fault injected on a real Redis bus), and a shutdown ends even when
a task will not."""

from __future__ import annotations

import asyncio
import logging

import pytest

from perfintel.background import stop_tasks
from perfintel.bus.base import BusError, ShardBacklog
from perfintel.bus.publish import BusPublisher
from perfintel.bus.redis_streams import RedisBus
from tests.bus.conftest import REDIS_URL


class CancellationToErrorBus(RedisBus):
    """A real bus whose backlog call, when cancelled mid-call, raises a bus error instead
    (as redis-py can when a cancelled pipeline's disconnect fails)."""

    def __init__(self, prefix: str) -> None:
        super().__init__(REDIS_URL, prefix, 2)
        self.entered = asyncio.Event()
        self.calls = 0
        self.ended = False  # set when the test is over: a loop still running then fails hard

    async def backlog(self, group: str) -> list[ShardBacklog]:
        self.calls += 1
        if self.ended:
            raise RuntimeError("the loop ran on after its cancellation")
        out = await super().backlog(group)
        self.entered.set()
        try:
            await asyncio.sleep(30)  # the round is under way when the cancellation lands
        except asyncio.CancelledError:
            raise BusError("bus backlog: Connection closed by server.") from None
        return out


def test_a_loop_stops_when_its_cancellation_comes_back_as_a_bus_error(redis_prefix: str) -> None:
    async def scenario() -> None:
        bus = CancellationToErrorBus(redis_prefix)
        publisher = BusPublisher(bus, group="g", max_behind=100, observe_interval_s=0.01)
        task = asyncio.create_task(publisher.observe())
        await asyncio.wait_for(bus.entered.wait(), 10)
        task.cancel()
        await asyncio.wait({task}, timeout=10)  # not wait_for: it would wait for the loop too
        bus.ended = True
        try:
            assert task.done(), f"still looping after {bus.calls} rounds"
            assert task.cancelled() and bus.calls == 1
        finally:
            await asyncio.wait({task}, timeout=10)
            await bus.close()

    asyncio.run(scenario())


def test_a_shutdown_ends_when_a_task_ignores_its_cancellation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        release = asyncio.Event()

        async def stubborn() -> None:
            while not release.is_set():
                try:
                    await asyncio.sleep(30)
                except asyncio.CancelledError:
                    continue

        async def polite() -> None:
            await asyncio.sleep(30)

        tasks = [asyncio.create_task(stubborn()), asyncio.create_task(polite())]
        await asyncio.sleep(0)
        stuck = await stop_tasks(tasks, timeout_s=0.2)
        assert stuck == [tasks[0]] and tasks[1].cancelled()
        release.set()
        tasks[0].cancel()
        await asyncio.wait({tasks[0]}, timeout=10)
        assert tasks[0].done()

    with caplog.at_level(logging.ERROR, logger="perfintel.background"):
        asyncio.run(scenario())
    assert "did not stop" in caplog.text
