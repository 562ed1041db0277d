"""Background loops that stop when they are cancelled, and shutdowns that end.

A background loop logs a failed round and goes on; it must not also go on after its own
cancellation. Some client libraries turn a cancellation that lands during their
clean-up into an error of their own (redis-py's pipelines drop the connection when
cancelled mid-reply, and that can raise a connection error instead), which the loop
then logs as one more failed round: an ingest process was seen never to stop that way.
Python keeps the request on the task (``Task.cancelling()``), so every round asks
before it sleeps (:func:`pause`). A shutdown also waits for its tasks for a bounded time
only (:func:`stop_tasks`), so one stuck task cannot keep a process from exiting.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)

#: how long a shutdown waits for a cancelled background task before it goes on without it
STOP_TIMEOUT_S = 10.0


def cancel_requested() -> bool:
    """Whether the running task was asked to cancel and the request was not honoured yet
    (the ``CancelledError`` was caught, or turned into another error, on the way)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def pause(seconds: float) -> None:
    """``asyncio.sleep`` for a background loop's next round; raises ``CancelledError``
    instead when this task's cancellation was swallowed during the round."""
    if cancel_requested():
        raise asyncio.CancelledError
    await asyncio.sleep(seconds)


async def stop_tasks(
    tasks: Iterable[asyncio.Task[object]],
    *,
    cancel: bool = True,
    timeout_s: float = STOP_TIMEOUT_S,
) -> list[asyncio.Task[object]]:
    """Cancel ``tasks`` (unless ``cancel`` is false: they were told to stop another way)
    and wait for them, at most ``timeout_s``. Returns the tasks still running then, each
    logged as an error; their errors and cancellations are not raised (a shutdown goes on)."""
    pending = [t for t in tasks if not t.done()]
    if cancel:
        for t in pending:
            t.cancel()
    if pending:
        await asyncio.wait(pending, timeout=timeout_s)
    stuck = [t for t in pending if not t.done()]
    for t in stuck:
        log.error("background task %s did not stop within %.0f s; leaving it", t, timeout_s)
    for t in pending:
        if t.done() and not t.cancelled() and t.exception() is not None:
            log.warning("background task %s ended with %r", t.get_name(), t.exception())
    return stuck
