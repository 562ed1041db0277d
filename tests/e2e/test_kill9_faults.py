"""kill -9 of a real server at random points under concurrent writes, while the
head flushes, the WAL rotates and compaction runs: every acknowledged sample
is there after each restart (part of the fault-injection suite)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import orjson

from perfintel.batch import SampleBatch
from perfintel.ingest.remote_write import encode_remote_write
from perfintel.model import label_set
from tests.conftest import start_server

T0 = (int(time.time()) - 3600) * 1000  # inside the raw retention
PER_WRITE = 50
# Small head and a fast maintenance pass: flushes and rotations happen during the writes.
ENV = {
    "PERFINTEL_STORAGE__HEAD_MAX_SAMPLES": "3000",
    "PERFINTEL_STORAGE__HEAD_MAX_AGE": "0.2",
    "PERFINTEL_STORAGE__MAINTENANCE_INTERVAL": "0.05",
}


def _body(i: int) -> bytes:
    ts = T0 + np.arange(i * PER_WRITE, (i + 1) * PER_WRITE)  # 1 ms apart: all in the past
    labels = label_set({"__name__": "k9", "writer": str(i % 4), "series": str(i % 40)})
    return encode_remote_write(SampleBatch.from_arrays(labels, ts, np.full(PER_WRITE, float(i))))


def _write_until_killed(url: str, first: int, kill_after: int, srv_kill: object) -> list[int]:
    acked: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(k: int) -> None:
        with httpx.Client(base_url=url, timeout=10) as c:
            i = first + k
            while not stop.is_set():
                try:
                    r = c.post(
                        "/api/v1/write",
                        content=_body(i),
                        headers={"Content-Type": "application/x-protobuf"},
                    )
                except httpx.HTTPError:
                    return  # died mid-request: never acknowledged
                if r.status_code == 204:
                    with lock:
                        acked.append(i)
                i += 4

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    while True:
        with lock:
            if len(acked) >= kill_after:
                break
        time.sleep(0.002)
    srv_kill()  # type: ignore[operator]
    stop.set()
    for t in threads:
        t.join()
    return acked


def test_kill_9_at_random_points_loses_no_acknowledged_sample(tmp_path: Path) -> None:
    rng = np.random.default_rng(2026)
    acked: list[int] = []
    srv = start_server(tmp_path / "data", env=ENV)
    try:
        for round_ in range(4):
            kill_after = int(rng.integers(20, 200))
            acked += _write_until_killed(srv.url, 10_000 * round_, kill_after, srv.kill9)
            srv = start_server(tmp_path / "data", port=srv.port, env=ENV)
            r = httpx.get(
                srv.url + "/api/v1/export",
                params={"match[]": "k9", "start": str(T0 / 1000 - 1), "end": str(time.time() + 60)},
                timeout=60,
            )
            assert r.status_code == 200, r.text
            stored: Counter[int] = Counter()
            for line in r.content.splitlines():
                row = orjson.loads(line)
                stored.update(int(v) for v in row["values"])
            missing = [i for i in acked if stored[i] != PER_WRITE]
            assert not missing, (
                f"round {round_}: {len(missing)} acknowledged writes lost: {missing[:10]}"
            )
    finally:
        srv.stop()
    # A torn last record (a write cut by the kill) is expected and kept as "*.torn"; damage is not.
    assert "damaged" not in (tmp_path / f"server-{srv.port}.log").read_text()
