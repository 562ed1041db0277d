"""Scale-out end to end, every process a real ``perfintel serve`` on loopback: two ingest
processes, two workers, Redis and a fresh PostgreSQL database; one worker is killed with
SIGKILL halfway, and the survivor computes every score of its series from the checkpoint.

Storage: each ingest process has its own embedded DuckDB store (one writer per file), so
there is no store an API process could share while they run. The workers therefore write
their scores by remote write to ingest process A (``bus.output_url``), and the API process
is started on A's data directory once the ingest processes have stopped. With a shared
remote store the API runs alongside instead: ``test_multiprocess_vm.py``.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from perfintel.batch import SampleBatch
from perfintel.ingest.remote_write import encode_remote_write
from perfintel.model import label_set, parse_selector
from perfintel.performance.online import OnlineAnomalyDetection
from perfintel.storage.duckdb import DuckDBStore
from perfintel.storage.memory import MemoryStore
from tests.bus.multiprocess import WRITE, bus_env, shard_holders, wait_drained, wait_for_holders
from tests.conftest import Server, start_server

N_SERIES, N_STEPS, SHARDS = 40, 150, 4


def _batches(t0_ms: int) -> list[SampleBatch]:
    rng = np.random.default_rng(2026)
    series = [label_set({"__name__": "svc_latency", "pod": f"p{i}"}) for i in range(N_SERIES)]
    out = []
    for k in range(N_STEPS):
        vals = 50 + 5 * np.cos(np.arange(N_SERIES) + k / 7) + rng.normal(0, 1, N_SERIES)
        if k % 41 == 40:
            vals[(3 * k) % N_SERIES] += 40
        out.append(
            SampleBatch(
                series,
                np.arange(N_SERIES, dtype=np.int32),
                np.full(N_SERIES, t0_ms + k * 60_000, np.int64),
                vals,
            )
        )
    return out


@pytest.mark.slow
def test_two_ingest_two_workers_one_killed_then_the_api_answers(
    tmp_path: Path, redis_prefix: str, postgres_url: str
) -> None:
    common = bus_env(redis_prefix, postgres_url, SHARDS)
    servers: list[Server] = []
    try:
        ingest = [
            start_server(tmp_path / f"ingest{i}", env={**common, "PERFINTEL_ROLE": "ingest"})
            for i in range(2)
        ]
        servers += ingest
        worker_env = {
            **common,
            "PERFINTEL_ROLE": "worker",
            "PERFINTEL_BUS__OUTPUT_URL": ingest[0].url + "/api/v1/write",
        }
        workers = [start_server(tmp_path / f"worker{i}", env=worker_env) for i in range(2)]
        servers += workers
        wait_for_holders(postgres_url, SHARDS, 2, 30)  # the second worker gets its share

        t0 = (int(time.time()) - 4 * 3600) * 1000
        batches = _batches(t0)
        with httpx.Client(timeout=30) as http:
            for k, b in enumerate(batches):
                if k == N_STEPS // 2:
                    workers[0].kill9()  # halfway: its shards' state lives on in checkpoints
                r = http.post(
                    ingest[k % 2].url + "/api/v1/write",
                    content=encode_remote_write(b),
                    headers=WRITE,
                )
                assert r.status_code == 204, r.text
        wait_drained(redis_prefix, SHARDS, postgres_url, 60)
        survivor = workers[1].url.rsplit(":", 1)[1]
        assert all(f":{survivor}:" in h for h in shard_holders(postgres_url).values())
        for s in (workers[1], *ingest):
            s.stop()
        # every acknowledged sample is in one of the two ingest stores
        stored = 0
        for s in ingest:
            store = DuckDBStore(s.data_dir / "samples")
            try:
                stored += sum(
                    len(x.timestamps) for x in store.select(parse_selector("svc_latency"), 0, 2**62)
                )
            finally:
                store.close()
        assert stored == N_SERIES * N_STEPS

        api = start_server(ingest[0].data_dir, env={**common, "PERFINTEL_ROLE": "api"})
        servers.append(api)
        at = (t0 + N_STEPS * 60_000) / 1000
        r = httpx.get(api.url + "/api/v1/query", params={"query": "anomaly_score[5h]", "time": at})
        assert r.status_code == 200, r.text
        got = {
            m["metric"]["pod"]: [(float(t), float(v)) for t, v in m["values"]]
            for m in r.json()["data"]["result"]
        }
    finally:
        for s in servers:
            s.stop()

    reference = MemoryStore()
    det = OnlineAnomalyDetection(reference, compact=True)  # a worker's default
    for b in batches:
        det.process(b)
    want = {
        dict(x.labels)["pod"]: [(t / 1000, v) for t, v in zip(x.timestamps, x.values, strict=True)]
        for x in reference.select(parse_selector("anomaly_score"), 0, 2**62)
    }
    assert set(got) == set(want) and len(want) == N_SERIES
    for pod, samples in want.items():
        assert len(got[pod]) == len(samples), pod  # every score computed, none twice
        assert np.allclose(np.array(got[pod]), np.array(samples), rtol=1e-12, atol=1e-12), pod
