"""Process roles in one app each: ingest publishes what it stored and pushes back with
503 + Retry-After when the workers fall behind; api serves no ingest; readiness per role."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from perfintel.api.app import create_app
from perfintel.batch import SampleBatch
from perfintel.config import load_settings
from perfintel.ingest.remote_write import encode_remote_write
from perfintel.model import label_set
from tests.bus.conftest import REDIS_URL
from tests.conftest import ANY_PAST_S


def _payload(k: int) -> bytes:
    series = [label_set({"__name__": "req", "host": f"h{i}"}) for i in range(8)]
    return encode_remote_write(
        SampleBatch(
            series,
            np.arange(8, dtype=np.int32),
            np.full(8, 1_700_000_000_000 + k * 1000, np.int64),
            np.full(8, float(k)),
        )
    )


def _settings(tmp_path: Path, role: str, prefix: str, **bus: object) -> object:
    return load_settings(
        overrides={
            "data_dir": tmp_path / role,
            "role": role,
            "bus": {"redis_url": REDIS_URL, "stream_prefix": prefix, "shards": 2, **bus},
            "alerting": {"database_url": f"sqlite:///{tmp_path / 'shared.db'}"},
            "storage": {"raw_retention": ANY_PAST_S},  # samples of 2023
        },
        env={},
    )


def test_ingest_publishes_then_answers_503_with_retry_after(
    tmp_path: Path, redis_prefix: str
) -> None:
    settings = _settings(tmp_path, "ingest", redis_prefix, max_behind=3, retry_after="7s")
    headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}
    with TestClient(create_app(settings, collectors=False)) as client:  # type: ignore[arg-type]
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["redis"] == "ok"
        assert ready.json()["role"] == "ingest"
        # an ingest process scores nothing: it does not spend CPU compiling the kernel
        assert ready.json()["anomaly_kernel"] == "lazy"
        codes = []
        for k in range(20):
            r = client.post("/api/v1/write", content=_payload(k), headers=headers)
            codes.append(r.status_code)
            if r.status_code == 503:
                assert r.headers["Retry-After"] == "7"
                break
            time.sleep(0.15)  # the backlog is refreshed twice a second
        assert codes[0] == 204 and codes[-1] == 503
        accepted = codes.count(204)
        assert 3 <= accepted < 20
        # no queries on an ingest process
        assert client.get("/api/v1/query", params={"query": "req"}).status_code == 404
        publisher = client.app.state.role.publisher  # type: ignore[attr-defined]
        assert publisher.published_batches == 2 * accepted  # 8 series over 2 shards
        bus = client.app.state.role.bus  # type: ignore[attr-defined]
        lengths = [x.length for x in client.portal.call(bus.backlog, "workers")]  # type: ignore[union-attr]
        assert sum(lengths) == 2 * accepted
        metrics = client.get("/metrics").text
        assert f"perfintel_bus_published_batches_total {2 * accepted}" in metrics
        assert "perfintel_bus_behind " in metrics
        # per shard: nothing delivered yet (no worker), the oldest entry's age
        watch = client.app.state.role.watch  # type: ignore[attr-defined]
        client.portal.call(watch.refresh)  # type: ignore[union-attr]
        metrics = client.get("/metrics").text
        for shard, n in enumerate(lengths):
            assert f'perfintel_bus_shard_lag{{shard="{shard}"}} {n}' in metrics
            assert f'perfintel_bus_shard_pending{{shard="{shard}"}} 0' in metrics
        assert watch.oldest_age(0) > 0 and watch.oldest_age(1) > 0
        # no dashboard either: the overview never reads the store here
        assert client.app.state.overview.snapshot.refreshed == {}  # type: ignore[attr-defined]


def test_api_role_serves_queries_but_no_ingest(tmp_path: Path, redis_prefix: str) -> None:
    settings = _settings(tmp_path, "api", redis_prefix)
    with TestClient(create_app(settings, collectors=False)) as client:  # type: ignore[arg-type]
        r = client.get("/readyz")
        assert r.status_code == 200 and r.json()["database"] == "ok"
        assert client.post("/api/v1/write", content=b"").status_code in (404, 405)
        assert client.get("/api/v1/query", params={"query": "1"}).status_code == 200
        overview = client.app.state.overview  # type: ignore[attr-defined]
        deadline = time.monotonic() + 10
        while not overview.snapshot.refreshed.get("signals"):  # the dashboard's overview runs
            assert time.monotonic() < deadline
            time.sleep(0.1)
        # the only notifier process holds the lease, and says so
        deadline = time.monotonic() + 10
        while "perfintel_notifier_lease_held 1" not in client.get("/metrics").text:
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_worker_role_is_not_ready_without_redis(tmp_path: Path, redis_prefix: str) -> None:
    settings = load_settings(
        overrides={
            "data_dir": tmp_path / "w",
            "role": "worker",
            "bus": {"redis_url": "redis://127.0.0.1:1/0", "stream_prefix": redis_prefix},
            "alerting": {"database_url": f"sqlite:///{tmp_path / 'shared.db'}"},
        },
        env={},
    )
    with TestClient(create_app(settings, collectors=False)) as client:
        r = client.get("/readyz")
        assert r.status_code == 503
        assert r.json()["redis"] != "ok" and r.json()["database"] == "ok"


def test_worker_role_says_which_shards_it_holds(tmp_path: Path, redis_prefix: str) -> None:
    settings = _settings(tmp_path, "worker", redis_prefix)
    with TestClient(create_app(settings, collectors=False)) as client:  # type: ignore[arg-type]
        deadline = time.monotonic() + 20
        while 'perfintel_bus_shard_owned{shard="1"} 1' not in (m := client.get("/metrics").text):
            assert time.monotonic() < deadline, m
            time.sleep(0.2)
        assert 'perfintel_bus_shard_owned{shard="0"} 1' in m
        assert 'perfintel_bus_shard_batches_applied_total{shard="0"} 0' in m
        assert "perfintel_bus_shards_owned 2" in m
