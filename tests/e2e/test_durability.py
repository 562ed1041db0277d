"""An acknowledged sample survives kill -9 of the server the instant after the ack."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import numpy as np

from perfintel.batch import SampleBatch
from perfintel.ingest.remote_write import encode_remote_write
from perfintel.model import label_set
from tests.conftest import start_server

T0 = (int(time.time()) - 3 * 86_400) * 1000  # three days ago: inside the raw retention


def _body(i: int) -> bytes:
    ts = T0 + 1000 * np.arange(i * 100, i * 100 + 100)
    return encode_remote_write(
        SampleBatch.from_arrays(
            label_set({"__name__": "durable", "writer": str(i % 4)}), ts, np.full(100, float(i))
        )
    )


def test_acknowledged_samples_survive_kill_9(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "data")
    acked: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(k: int) -> None:
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            i = k
            while not stop.is_set():
                try:
                    r = c.post(
                        "/api/v1/write",
                        content=_body(i),
                        headers={
                            "Content-Type": "application/x-protobuf",
                            "Content-Encoding": "snappy",
                        },
                    )
                except httpx.HTTPError:
                    return  # the server died mid-request: that write was never acknowledged
                if r.status_code == 204:
                    with lock:
                        acked.append(i)
                i += 4

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    while True:
        with lock:
            if len(acked) >= 60:
                break
        stop.wait(0.01)
    srv.kill9()  # while the writers are still writing
    stop.set()
    for t in threads:
        t.join()
    with lock:
        acknowledged = sorted(acked)

    srv2 = start_server(tmp_path / "data", port=srv.port)
    try:
        r = httpx.get(
            srv2.url + "/api/v1/export",
            params={"match[]": "durable", "start": str(T0 / 1000), "end": str(T0 / 1000 + 10**6)},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        from collections import Counter

        import orjson

        stored: Counter[int] = Counter()
        for line in r.content.splitlines():
            row = orjson.loads(line)
            stored.update(int((t - T0) // 100_000) for t in row["timestamps"])
        missing = [i for i in acknowledged if stored[i] != 100]
        assert not missing, f"{len(missing)} acknowledged writes lost after kill -9: {missing[:10]}"
        assert len(acknowledged) >= 60
    finally:
        srv2.stop()
