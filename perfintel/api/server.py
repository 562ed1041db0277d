"""Running the service as a process: start-up checks, serving, and a clean stop.

``run_server`` is what ``perfintel serve`` calls. Everything that can fail at
start-up fails *before* anything says "listening", each with one line that
names the cause (``ServeError``):

* the data directory is locked by another perfintel (``<data_dir>/perfintel.lock``
  holds an exclusive ``flock`` and the holder's pid while a server runs);
* the address is taken (the socket is bound here, then handed to uvicorn);
* the store cannot be opened.

On SIGTERM or SIGINT uvicorn stops accepting connections; in-flight requests
get ``shutdown_timeout`` seconds to finish (then they are cancelled); the
lifespan stops the collectors and saves the detector state; then the head is
flushed to the database and the store closed, and one log line says what was
saved and how long stopping took.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import uvicorn

from perfintel.api.app import create_app, open_store
from perfintel.config import Settings
from perfintel.errors import PerfintelError
from perfintel.storage.base import Store

log = logging.getLogger("perfintel")

LOCK_FILE = "perfintel.lock"


class ServeError(PerfintelError):
    """The service cannot start; the message says why in one line."""


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """Hold ``<data_dir>/perfintel.lock`` exclusively (released when the process ends, even by kill -9)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_FILE
    f: IO[str] = open(path, "a+")  # noqa: SIM115 - held for the life of the server
    try:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise ServeError(
                f"data directory {data_dir} is in use by another perfintel (pid {holder}); "
                "stop it or choose another --data-dir"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        yield
    finally:
        f.close()


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket, or a ``ServeError`` naming the address."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, addr = infos[0]
    # The protocol number matters: asyncio sets TCP_NODELAY only on sockets whose ``proto``
    # says TCP, and without it small answers wait ~40 ms for delayed ACKs (Nagle).
    sock = socket.socket(family, kind, proto or socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        hint = " (another perfintel? choose another --port)" if exc.errno == 98 else ""
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror}{hint}") from None
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server, saying when it stops and how much was in flight.

    uvicorn re-raises the stopping signal once it has shut down, which would
    end the process before the store is closed; here the signal only stops
    the server, and ``run_server`` closes the store and returns."""

    stop_started: float | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.stop_started = time.monotonic()
        signals = [signal.Signals(s).name for s in self._captured_signals]
        log.info(
            "stopping%s: %d connection(s) open, %d request(s) in flight (they get %gs to finish)",
            f" on {signals[-1]}" if signals else "",
            len(self.server_state.connections),
            len(self.server_state.tasks),
            self.config.timeout_graceful_shutdown or 0,
        )
        await super().shutdown(sockets)


def run_server(settings: Settings, *, announce: Callable[[str], None]) -> int:
    """Serve until SIGTERM/SIGINT; ``announce`` gets the "listening" line once serving.

    Raises ``ServeError`` (one line) when start-up fails; returns the exit code."""
    data_dir = Path(settings.data_dir)
    # CPU work runs in worker threads; the event loop waits for the GIL whenever it wants
    # it back, up to the switch interval each time (5 ms by default). 1 ms keeps quick
    # requests such as /healthz quick while a body is parsed beside them.
    sys.setswitchinterval(0.001)
    with data_dir_lock(data_dir):
        sock = bind_socket(settings.host, settings.port)
        try:
            store = open_store(settings)
        except PerfintelError as exc:
            sock.close()
            raise ServeError(str(exc)) from None
        config = uvicorn.Config(
            create_app(settings, store=store),
            log_config=None,  # perfintel's logging (set up by the CLI) formats uvicorn's too
            access_log=settings.access_log,
            timeout_graceful_shutdown=max(1, round(settings.shutdown_timeout)),
        )
        server = _Server(config)
        try:
            asyncio.run(_serve(server, sock, announce, settings, data_dir))
        finally:
            sock.close()
            began = server.stop_started
            took = f" in {time.monotonic() - began:.1f}s" if began is not None else ""
            if settings.storage.backend == "victoriametrics":  # acknowledged = stored there
                store.close()
                log.info(
                    "stopped%s: every acknowledged sample is in the remote store (%s)",
                    took,
                    settings.storage.remote.write_url,
                )
            else:
                _close_local_store(store, took, data_dir)
        return 0 if server.started else 3


def _close_local_store(store: Store, took: str, data_dir: Path) -> None:
    """Close the embedded store (its head flushed into the database) and say so."""
    try:
        saved = store.stats().samples_in_head
        store.close()
    except PerfintelError as exc:
        log.error(
            "stopped%s; closing the store failed: %s (the write-ahead log keeps "
            "every acknowledged sample; the next start replays it)",
            took,
            exc,
        )
    else:
        log.info(
            "stopped%s: %d sample(s) flushed from memory into %s; every acknowledged "
            "sample is on disk",
            took,
            saved,
            data_dir / "samples",
        )


async def _serve(
    server: _Server,
    sock: socket.socket,
    announce: Callable[[str], None],
    settings: Settings,
    data_dir: Path,
) -> None:
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.02)
    if server.started:
        # Everything built at start-up (modules, the app, the store's index) lives as long as
        # the process: moved out of the collector's reach, a full collection, which holds the
        # GIL and so the event loop, walks only what came since (82 ms → a few ms at start).
        gc.collect()
        gc.freeze()
        announce(
            f"perfintel listening on http://{settings.host}:{settings.port}  "
            f"(data: {data_dir.resolve()})"
        )
    await task


def configure_logging(settings: Settings) -> None:
    """perfintel's log format for its own and uvicorn's loggers; the access log only when asked."""
    level = settings.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # uvicorn's start-up chatter only in debug; its errors always.
    logging.getLogger("uvicorn.error").setLevel("DEBUG" if level == "DEBUG" else "WARNING")
    # httpx logs every request at INFO: a line per remote-store call, per remote write
    logging.getLogger("httpx").setLevel("DEBUG" if level == "DEBUG" else "WARNING")
    # Alembic logs every revision it applies, docstring and all: the state database says
    # what changed in one line instead (perfintel.alerting.state.database)
    logging.getLogger("alembic").setLevel("DEBUG" if level == "DEBUG" else "WARNING")
    access = logging.getLogger("uvicorn.access")
    access.setLevel("INFO" if settings.access_log else "WARNING")
