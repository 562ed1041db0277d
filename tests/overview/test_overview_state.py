"""The overview's signals, read from constructed series through PromQL, scored by the formula."""

from __future__ import annotations

import time

import numpy as np
import orjson
import pytest

from perfintel.batch import SampleBatch
from perfintel.config_sections import DashboardSettings
from perfintel.live.hub import LiveHub
from perfintel.model import label_set
from perfintel.overview.state import OverviewState, Probes
from perfintel.query.settings import QuerySettings
from perfintel.storage.memory import MemoryStore

NOW_MS = 1_800_000_000_000
STEP_MS = 15_000


def _series(store: MemoryStore, labels: dict[str, str], values: np.ndarray) -> None:
    ts = NOW_MS - STEP_MS * np.arange(len(values) - 1, -1, -1, dtype=np.int64)
    store.append(SampleBatch.from_arrays(label_set(labels), ts, values.astype(np.float64)))


def _shop(store: MemoryStore) -> None:
    n = 41  # ten minutes at 15 s
    t = np.arange(n) * STEP_MS / 1000
    node = {"instance": "db-1:9100", "job": "node", "service": "shop"}
    app = {"instance": "db-1:8080", "job": "shop", "service": "shop"}
    _series(store, {"__name__": "node_memory_MemAvailable_bytes", **node}, np.full(n, 20.0))
    _series(store, {"__name__": "node_memory_MemTotal_bytes", **node}, np.full(n, 100.0))
    fs = {**node, "device": "/dev/sda1", "fstype": "ext4", "mountpoint": "/"}
    _series(store, {"__name__": "node_filesystem_avail_bytes", **fs}, np.full(n, 5.0))
    _series(store, {"__name__": "node_filesystem_size_bytes", **fs}, np.full(n, 100.0))
    for cpu in ("0", "1"):  # idle half of the time: 50 % busy, no penalty
        _series(
            store,
            {"__name__": "node_cpu_seconds_total", "cpu": cpu, "mode": "idle", **node},
            0.5 * t,
        )
    _series(store, {"__name__": "node_load1", **node}, np.full(n, 1.0))
    _series(store, {"__name__": "http_requests_total", "code": "200", **app}, 99.0 * t)
    _series(store, {"__name__": "http_requests_total", "code": "503", **app}, 1.0 * t)
    _series(store, {"__name__": "up", **app}, np.ones(n))


def test_signals_from_constructed_series_score_as_documented() -> None:
    store = MemoryStore()
    _shop(store)
    state = OverviewState(
        store,
        DashboardSettings(),
        QuerySettings(),
        LiveHub(),
        Probes(),
        clock=lambda: NOW_MS / 1000,
    )
    state.refresh(["signals"])
    doc = orjson.loads(state.health())["data"]
    host = {h["name"]: h for h in doc["hosts"]}["db-1"]
    by = {r["signal"]: r for r in host["reasons"]}
    assert by["memory"]["value"] == pytest.approx(0.8)
    assert by["memory"]["penalty"] == pytest.approx(8.0)  # 20 × (0.8 − 0.7) / 0.25
    assert by["disk"]["value"] == pytest.approx(0.95)
    assert by["disk"]["penalty"] == pytest.approx(20.0)
    assert by["cpu"]["value"] == pytest.approx(0.5)
    assert by["cpu"]["penalty"] == 0.0
    # the app on the same machine (db-1:8080) counts for the host too: 1 % errors cost 6
    assert by["errors"]["penalty"] == pytest.approx(6.0)
    assert host["score"] == pytest.approx(100 - 8 - 20 - 6)
    service = {s["name"]: s for s in doc["services"]}["shop"]
    sby = {r["signal"]: r for r in service["reasons"]}
    assert sby["errors"]["value"] == pytest.approx(0.01)
    assert sby["errors"]["penalty"] == pytest.approx(6.0)  # 30 × 1 % / 5 %
    assert sby["availability"]["penalty"] == 0.0
    assert service["score"] == pytest.approx(100 - 8 - 20 - 6)
    assert doc["overall"]["score"] == pytest.approx(66.0)
    # the realtime answer for one service carries its hosts
    one = orjson.loads(state.realtime("shop"))["data"]
    assert [h["name"] for h in one["health"]["hosts"]] == ["db-1"]
    assert orjson.loads(state.realtime("nope"))["data"]["health"]["services"] == []


def test_an_answer_costs_a_lookup_not_a_query() -> None:
    store = MemoryStore()
    _shop(store)
    state = OverviewState(
        store, DashboardSettings(), QuerySettings(), LiveHub(), Probes(), clock=time.time
    )
    state.refresh(["signals"])
    calls = []
    real = store.select
    store.select = lambda *a, **k: calls.append(a) or real(*a, **k)  # type: ignore[method-assign]
    for _ in range(100):
        state.realtime()
        state.realtime("shop")
        state.health()
    assert calls == []
    assert state.realtime() is state.realtime()  # the same pre-rendered bytes
