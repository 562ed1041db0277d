"""An api process's live stream fed from the bus (real Redis): the tail delivers what ingest
published, skips (and counts) when it falls behind or entries were trimmed first, and an
api-only process's WebSocket clients see samples an ingest process received."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import orjson
from fastapi.testclient import TestClient

from perfintel.api.app import create_app
from perfintel.batch import SampleBatch
from perfintel.bus.codec import encode_batch
from perfintel.bus.redis_streams import RedisBus
from perfintel.bus.tail import BusTail
from perfintel.config import load_settings
from perfintel.model import label_set
from tests.bus.conftest import REDIS_URL
from tests.bus.test_roles import _payload
from tests.conftest import ANY_PAST_S


def _batch(k: int, n: int = 4) -> SampleBatch:
    series = [label_set({"__name__": "lat", "i": str(i)}) for i in range(n)]
    return SampleBatch(
        series,
        np.arange(n, dtype=np.int32),
        np.full(n, 1_700_000_000_000 + k, np.int64),
        np.full(n, float(k)),
    )


class Clock:
    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


def test_tail_delivers_skips_when_behind_and_counts_what_it_missed(redis_prefix: str) -> None:
    async def run() -> None:
        bus = RedisBus(REDIS_URL, redis_prefix, 2)
        got: list[SampleBatch] = []
        clock = Clock()
        tail = BusTail(bus, got.append, max_lag_s=60, count=8, block_ms=50, clock=clock)
        await bus.publish(0, "before", encode_batch(_batch(0)))  # history: not replayed
        await tail.start()
        for k in range(1, 6):
            await bus.publish(k % 2, f"b{k}", encode_batch(_batch(k)))
        while sum(len(b) for b in got) < 5 * 4:
            await tail.step()
        assert sorted({int(t) for b in got for t in b.timestamps}) == [
            1_700_000_000_000 + k for k in range(1, 6)
        ]
        assert tail.dropped == 0 and tail.samples == 20
        # the tail falls behind: 20 entries wait, all older than max_lag by its clock
        for k in range(20):
            await bus.publish(0, f"c{k}", encode_batch(_batch(100 + k)))
        clock.t += 120
        before = len(got)
        await tail.step()  # reads 8, sees they are stale, skips to the end of the shard
        assert len(got) == before and tail.skips == 1
        assert tail.dropped == 20  # the 8 it read and the 12 after them
        # entries trimmed before the tail read them are counted once it has caught up
        for k in range(6):
            await bus.publish(1, f"d{k}", encode_batch(_batch(200 + k)))
        await bus.redis.xtrim(bus.key(1), maxlen=0, approximate=False)
        clock.t += tail.RECONCILE_S
        await tail.step()
        assert tail.dropped == 26 and len(got) == before
        await bus.close()

    asyncio.run(run())


def _settings(tmp_path: Path, role: str, prefix: str) -> object:
    return load_settings(
        overrides={
            "data_dir": tmp_path / role,
            "role": role,
            "bus": {"redis_url": REDIS_URL, "stream_prefix": prefix, "shards": 2},
            "alerting": {"database_url": f"sqlite:///{tmp_path / 'shared.db'}"},
            "storage": {"raw_retention": ANY_PAST_S},  # samples of 2023
        },
        env={},
    )


def test_api_process_streams_samples_an_ingest_process_received(
    tmp_path: Path, redis_prefix: str
) -> None:
    api_app = create_app(_settings(tmp_path, "api", redis_prefix), collectors=False)  # type: ignore[arg-type]
    ingest_app = create_app(_settings(tmp_path, "ingest", redis_prefix), collectors=False)  # type: ignore[arg-type]
    headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}
    with TestClient(api_app) as api, TestClient(ingest_app) as ingest:
        assert api.get("/readyz").json()["redis"] == "ok"  # the api role needs the bus now
        hub = api_app.state.live
        # nobody watches samples yet: the tail only counts them (the overview's figures)
        r = ingest.post("/api/v1/write", content=_payload(0), headers=headers)
        assert r.status_code == 204
        deadline = time.monotonic() + 30  # a bound for a failure, not a speed claim
        while hub.published_samples < 8:
            assert time.monotonic() < deadline, hub.published_samples
            time.sleep(0.05)
        assert api_app.state.role.tail.batches == 2 and hub.last_batch_at is not None
        # counted entry by entry from their headers (a decoded round is one published batch)
        assert hub.published_batches == 2
        with api.websocket_connect("/api/v1/performance/stream") as ws:
            ws.send_text(
                orjson.dumps(
                    {"subscribe": {"topics": ["samples"], "selectors": ['req{host="h3"}']}}
                ).decode()
            )
            assert ws.receive_json()["type"] == "ready"
            assert ws.receive_json()["type"] == "subscribed"
            for k in range(1, 4):
                r = ingest.post("/api/v1/write", content=_payload(k), headers=headers)
                assert r.status_code == 204
            while hub.published_samples < 32:
                assert time.monotonic() < deadline, hub.published_samples
                time.sleep(0.05)
            seen: list[float] = []
            while len(seen) < 3:
                msg = ws.receive_json()
                assert msg["type"] == "samples"
                for s in msg["series"]:
                    assert s["labels"] == {"__name__": "req", "host": "h3"}
                    seen.extend(s["values"])
            assert sorted(seen) == [1.0, 2.0, 3.0]  # decoded once a client watches
        # the realtime answer's ingest figures: what the ingest process received
        deadline = time.monotonic() + 30
        while True:
            doc = api.get("/api/v1/performance/dashboard/realtime").json()
            if doc["data"]["ingest"]["samples_total"] == 32:
                break
            assert time.monotonic() < deadline, doc["data"]["ingest"]
            time.sleep(0.1)
        metrics = api.get("/metrics").text
        assert "perfintel_live_tail_samples_total 32" in metrics
        assert "perfintel_live_tail_dropped_entries_total 0" in metrics
        # the ingest process has no hub subscribers; the api process counted the ingest
        assert hub.published_batches >= 3


def test_one_api_process_scores_peer_outliers_from_the_bus(
    tmp_path: Path, redis_prefix: str
) -> None:
    overrides = {
        "bus": {"redis_url": REDIS_URL, "stream_prefix": redis_prefix, "shards": 2},
        "alerting": {"database_url": f"sqlite:///{tmp_path / 'shared.db'}"},
        "storage": {"raw_retention": ANY_PAST_S},
        "anomaly": {"outlier_groups": [{"selector": "req", "step": 1.0, "window": 10.0}]},
    }
    apps = [
        create_app(
            load_settings(
                overrides={
                    **overrides,
                    "data_dir": tmp_path / f"api{i}",
                    "role": "api",
                    "port": 19470 + i,  # the lease holder id: host, port, pid, role
                },
                env={},
            ),
            collectors=False,
        )
        for i in range(2)
    ]
    ingest_app = create_app(_settings(tmp_path, "ingest", redis_prefix), collectors=False)  # type: ignore[arg-type]
    headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}
    with TestClient(apps[0]) as a, TestClient(apps[1]) as b, TestClient(ingest_app) as ingest:
        for k in range(6):
            r = ingest.post("/api/v1/write", content=_payload(k), headers=headers)
            assert r.status_code == 204
        peers = [app.state.role.peers for app in apps]
        deadline = time.monotonic() + 30  # a bound for a failure, not a speed claim
        while not any(p.scored for p in peers):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        for app in apps:  # both saw every sample; one of them scored
            while app.state.live.published_samples < 48:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        holder = 0 if peers[0].scored else 1
        assert peers[1 - holder].scored == 0 and peers[1 - holder].lease is None
        q = [a, b][holder].get(
            "/api/v1/query", params={"query": "count(outlier_score)", "time": "1700000010"}
        )
        assert q.status_code == 200 and q.json()["data"]["result"][0]["value"][1] == "8"
        assert "perfintel_live_outliers_lease_held 1" in [a, b][holder].get("/metrics").text


def test_batch_summary_counts_without_decoding() -> None:
    from perfintel.bus.codec import batch_summary

    for n in (1, 7):
        b = _batch(5, n)
        b.timestamps[n // 2] += 1000
        assert batch_summary(encode_batch(b)) == (n, 1_700_000_001_005)
    empty = SampleBatch([], np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0))
    assert batch_summary(encode_batch(empty)) == (0, None)


def test_api_process_streams_the_workers_scores_and_anomaly_events(
    tmp_path: Path, redis_prefix: str
) -> None:
    def settings(role: str) -> object:
        return load_settings(
            overrides={
                "data_dir": tmp_path / role,
                "role": role,
                "port": {"api": 19481, "worker": 19482, "ingest": 19483}[role],
                "bus": {
                    "redis_url": REDIS_URL,
                    "stream_prefix": redis_prefix,
                    "shards": 2,
                    "checkpoint_interval": "1s",
                },
                "alerting": {"database_url": f"sqlite:///{tmp_path / 'shared.db'}"},
                "storage": {"raw_retention": ANY_PAST_S},
            },
            env={},
        )

    apps = {r: create_app(settings(r), collectors=False) for r in ("api", "worker", "ingest")}  # type: ignore[arg-type]
    headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}
    with (
        TestClient(apps["api"]) as api,
        TestClient(apps["worker"]),
        TestClient(apps["ingest"]) as ingest,
    ):
        fanout = apps["worker"].state.role.fanout
        worker = apps["worker"].state.role.worker
        tail = apps["api"].state.role.outputs_tail
        # nobody watches: the worker scores but does not encode and stream its outputs
        assert ingest.post("/api/v1/write", content=_payload(0), headers=headers).status_code == 204
        deadline = time.monotonic() + 30  # a bound for a failure, not a speed claim
        while worker.samples_scored < 8:
            assert time.monotonic() < deadline, worker.samples_scored
            time.sleep(0.05)
        assert fanout.published == 0
        with api.websocket_connect("/api/v1/performance/stream") as ws:
            ws.send_text(
                orjson.dumps(
                    {
                        "subscribe": {
                            "topics": ["samples"],
                            "selectors": ['anomaly_score{for="req"}'],
                        }
                    }
                ).decode()
            )
            assert ws.receive_json()["type"] == "ready"
            assert ws.receive_json()["type"] == "subscribed"
            # a client now: the api process says so, the workers stream their outputs
            k = 1
            while not (fanout.published and tail.batches >= fanout.published):
                assert time.monotonic() < deadline + 30, (fanout.published, tail.batches)
                r = ingest.post("/api/v1/write", content=_payload(k), headers=headers)
                assert r.status_code == 204
                k += 1
                time.sleep(0.2)
            scored: set[str] = set()
            while not scored:  # the worker's scores, streamed here (already delivered)
                msg = ws.receive_json()
                assert msg["type"] == "samples"
                for s in msg["series"]:
                    assert s["labels"]["__name__"] == "anomaly_score"
                    scored.add(s["labels"]["host"])
        assert scored <= {f"h{i}" for i in range(8)} and fanout.failed == 0
