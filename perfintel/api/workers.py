"""Worker threads for queries: nothing whose cost depends on the data runs on the event loop.

:class:`QueryThreads` is a fixed pool of daemon threads fed by one
``queue.SimpleQueue``: ``await pool.run(fn)`` hands ``fn`` over and awaits
its result, which the worker delivers to the loop with
``call_soon_threadsafe``. Every PromQL evaluation and its rendering go
through it (``perfintel.api.prometheus``), however cheap the query ran last
time: its cost depends on data the loop cannot see in advance.

Why not Starlette's ``run_in_threadpool`` (anyio's thread pool): on the
shared 2-core machine under load, the benchmark queries (q1, q2 of
``benchmarks/storage.py``) took about 2 ms longer through it than through this
pool (interleaved requests, medians of 300: 10.5 against 8.8 ms); its
hand-over takes several lock round trips, each a thread wake-up that waits
for a core when the machine is busy. A ``SimpleQueue`` hand-over is one
wake-up each way.

The pool size bounds how many queries evaluate at once (the
``query.max_concurrency`` setting, like Prometheus's
``--query.max-concurrency``); further requests wait their turn in the queue,
at most ``max_waiting`` of them (then HTTP 429: retry later), so a burst
cannot pile up without bound. A request whose client went away before its
turn came is skipped. Threads
start on first use and stop at :meth:`close`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.requests import Request

from perfintel.errors import OverloadedError

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]


class QueryThreads:
    """``size`` worker threads named ``<name>-<i>``; see the module docstring."""

    def __init__(
        self, size: int = 8, name: str = "perfintel-query", *, max_waiting: int | None = None
    ) -> None:
        if size < 1:
            raise ValueError("a pool needs at least one thread")
        self.size = size
        self.max_waiting = 32 * size if max_waiting is None else max_waiting
        self.name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    async def run(self, fn: Callable[[], _T]) -> _T:
        """``fn()`` on a worker thread; its exception is raised here.

        ``OverloadedError`` (HTTP 429) when ``max_waiting`` queries already wait."""
        self._start()
        if self._jobs.qsize() >= self.max_waiting:
            raise OverloadedError(
                f"{self.max_waiting} queries are waiting for one of the {self.size} query "
                "threads (query.max_concurrency); retry later"
            )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        self._jobs.put((loop, future, fn))
        return await future

    def _start(self) -> None:
        if len(self._threads) == self.size:
            return
        with self._lock:
            if self._closed:
                raise RuntimeError("the query threads are closed")
            while len(self._threads) < self.size:
                t = threading.Thread(
                    target=self._work, name=f"{self.name}-{len(self._threads)}", daemon=True
                )
                t.start()
                self._threads.append(t)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            loop, future, fn = job
            if future.cancelled():  # the client went away while it waited
                continue
            try:
                result = fn()
            except Exception as exc:
                _deliver(loop, future, exc, failed=True)
            else:
                _deliver(loop, future, result, failed=False)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the threads after the jobs already queued (each bounded by the query timeout)."""
        with self._lock:
            self._closed = True
            threads, self._threads = self._threads, []
        for _ in threads:
            self._jobs.put(None)
        for t in threads:
            t.join(timeout_s)


def _deliver(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], value: Any, *, failed: bool
) -> None:
    def settle() -> None:
        if future.done():  # cancelled meanwhile
            return
        if failed:
            future.set_exception(value)
        else:
            future.set_result(value)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop closed (shutdown): nobody waits for this answer
        log.debug("dropped a query result: the event loop is closed")


async def run_query(request: Request, fn: Callable[[], _T]) -> _T:
    """``fn()`` on the app's query threads (``app.state.query_threads``), or on a default
    pool when the app has none (a router mounted on its own, as the tests do)."""
    pool = getattr(request.app.state, "query_threads", None)
    return await (pool if isinstance(pool, QueryThreads) else _default_threads()).run(fn)


@functools.cache
def _default_threads() -> QueryThreads:
    return QueryThreads()
