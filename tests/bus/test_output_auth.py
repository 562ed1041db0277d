"""A worker's scores reach an ingest process that requires a token (``bus.output_token``):
real ``perfintel serve --role ingest`` with ``auth.tokens`` and ``--role worker`` processes,
Redis and PostgreSQL. The token never shows in the worker's log."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from perfintel.batch import SampleBatch
from perfintel.bus.output import RemoteWriteOutput
from perfintel.errors import StorageError
from tests.bus.multiprocess import bus_env, wait_for_holders
from tests.conftest import Server, start_server

WRITER = "writer-token-0123456789abcdef"
READER = "reader-token-0123456789abcdef"
N_SERIES, N_STEPS = 4, 40


def _remote_write_samples(server: Server) -> float:
    r = httpx.get(
        server.url + "/metrics", headers={"Authorization": f"Bearer {READER}"}, timeout=10
    )
    r.raise_for_status()
    m = re.search(
        r'^perfintel_ingested_samples_total\{protocol="remote_write"\} (\S+)$', r.text, re.M
    )
    return float(m.group(1)) if m else 0.0


@pytest.mark.slow
def test_worker_writes_scores_to_an_ingest_process_with_auth(
    tmp_path: Path, redis_prefix: str, postgres_url: str
) -> None:
    config = tmp_path / "ingest.yaml"
    config.write_text(
        "auth:\n"
        "  tokens:\n"
        f"    - {{token: {WRITER}, scopes: [write], name: workers}}\n"
        f"    - {{token: {READER}, scopes: [read], name: tests}}\n"
    )
    common = bus_env(redis_prefix, postgres_url, 2)
    servers: list[Server] = []
    try:
        ingest = start_server(
            tmp_path / "ingest",
            env={**common, "PERFINTEL_ROLE": "ingest"},
            args=("-c", str(config)),
        )
        servers.append(ingest)
        write_url = ingest.url + "/api/v1/write"

        # the ingest process does refuse a write without the token
        anon = RemoteWriteOutput(write_url)
        probe = SampleBatch.from_arrays({"__name__": "probe"}, np.array([1000]), np.array([1.0]))
        with pytest.raises(StorageError, match="401"):
            anon.append(probe)
        anon.close()

        worker = start_server(
            tmp_path / "worker",
            env={
                **common,
                "PERFINTEL_ROLE": "worker",
                "PERFINTEL_BUS__OUTPUT_URL": write_url,
                "PERFINTEL_BUS__OUTPUT_TOKEN": WRITER,
                "PERFINTEL_LOG_LEVEL": "debug",
            },
        )
        servers.append(worker)
        wait_for_holders(postgres_url, 2, 1, 30)

        t0 = (int(time.time()) - 3600) * 1000
        body = {
            "series": [
                {
                    "metric": "authtest_latency",
                    "labels": {"pod": f"p{i}"},
                    "samples": [[t0 + k * 60_000, 50.0 + (k * 7 + i) % 5] for k in range(N_STEPS)],
                }
                for i in range(N_SERIES)
            ]
        }
        r = httpx.post(
            ingest.url + "/api/v1/ingest",
            json=body,
            headers={"Authorization": f"Bearer {WRITER}"},
            timeout=30,
        )
        assert r.status_code == 200 and r.json()["accepted"] == N_SERIES * N_STEPS

        # the worker's outputs (anomaly_score, yhat, yhat_lower, yhat_upper a sample) come back
        # by remote write: nothing else writes remote_write to this ingest process
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _remote_write_samples(ingest) < N_SERIES * N_STEPS:
            time.sleep(0.3)
        assert _remote_write_samples(ingest) >= N_SERIES * N_STEPS
    finally:
        for s in servers:
            s.stop()
    logs = "".join(s.log.read_text() for s in servers)
    assert WRITER not in logs
    # the worker's remote write was never refused (its log says "HTTP 401 …" when it is; a bare
    # "401" also matches a timestamp's milliseconds)
    assert "HTTP 401" not in servers[-1].log.read_text()
