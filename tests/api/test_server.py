"""The process edge of ``perfintel serve``: the data-directory lock and the listening socket."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from perfintel.api.server import ServeError, bind_socket, data_dir_lock


def test_the_data_directory_is_locked_while_held(tmp_path: Path) -> None:
    with (
        data_dir_lock(tmp_path),
        pytest.raises(ServeError, match=r"in use by another perfintel \(pid \d+\)"),
        data_dir_lock(tmp_path),
    ):
        pass  # pragma: no cover
    with data_dir_lock(tmp_path):  # released: taken again
        pass


def test_the_listening_socket_is_tcp_so_answers_are_not_delayed() -> None:
    # asyncio sets TCP_NODELAY only on sockets whose proto is TCP; a socket made
    # with proto 0 made every small answer wait ~40 ms for a delayed ACK.
    sock = bind_socket("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
        port = sock.getsockname()[1]
        with pytest.raises(ServeError, match=f"cannot listen on 127.0.0.1:{port}"):
            bind_socket("127.0.0.1", port)
    finally:
        sock.close()


def test_an_unknown_host_is_one_line() -> None:
    with pytest.raises(ServeError, match=r"cannot listen on no-such-host\.invalid:1"):
        bind_socket("no-such-host.invalid", 1)
