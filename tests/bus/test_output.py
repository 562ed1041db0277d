"""The worker's remote-write output against a real local HTTP receiver: retries while the
receiver is away or overloaded, gives up at once on a refusal."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cramjam
import numpy as np
import pytest

from perfintel.batch import SampleBatch
from perfintel.bus.output import RemoteWriteOutput
from perfintel.errors import StorageError
from perfintel.ingest.remote_write import decode_remote_write


class Receiver:
    def __init__(self) -> None:
        self.codes: list[int] = []
        self.bodies: list[bytes] = []


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            code = rec.codes.pop(0) if rec.codes else 204
            if code == 204:
                rec.bodies.append(body)
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield rec, f"http://127.0.0.1:{server.server_address[1]}/api/v1/write"
    server.shutdown()
    server.server_close()


def _batch() -> SampleBatch:
    return SampleBatch.from_arrays(
        {"__name__": "anomaly_score", "for": "x"}, np.array([1000, 2000]), np.array([0.5, 1.5])
    )


def test_retries_5xx_and_429_until_written(receiver: tuple[Receiver, str]) -> None:
    rec, url = receiver
    rec.codes = [503, 429, 502]
    out = RemoteWriteOutput(url, max_backoff_s=0.2)
    try:
        assert out.append(_batch()).accepted == 2
    finally:
        out.close()
    assert out.retries == 3 and len(rec.bodies) == 1
    got = decode_remote_write(bytes(cramjam.snappy.decompress_raw(rec.bodies[0]))).batch
    assert got.values.tolist() == [0.5, 1.5]


def test_a_refusal_is_not_retried(receiver: tuple[Receiver, str]) -> None:
    rec, url = receiver
    rec.codes = [401]
    out = RemoteWriteOutput(url)
    try:
        with pytest.raises(StorageError, match="401"):
            out.append(_batch())
    finally:
        out.close()
    assert out.retries == 0


def test_an_unreachable_receiver_is_retried_until_stopped() -> None:
    out = RemoteWriteOutput("http://127.0.0.1:1/api/v1/write", max_backoff_s=0.05)
    threading.Timer(0.5, out.stop_retrying).start()
    with pytest.raises(StorageError):
        out.append(_batch())
    out.close()
    assert out.retries >= 3
