"""Online anomaly detection on ingest, over a real DuckDB store (no mocks)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from perfintel.api.app import create_app, open_store
from perfintel.batch import SampleBatch
from perfintel.config import load_settings
from perfintel.model import label_set, parse_selector
from perfintel.performance.online import STATE_FILE, OnlineAnomalyDetection
from perfintel.storage.duckdb import DuckDBStore
from perfintel.telemetry import Registry
from tests.conftest import ANY_PAST_S

MIN = 60_000
DAY = 86_400_000
T0 = 1_790_000_000_000 - 1_790_000_000_000 % DAY  # a midnight (UTC)
SPIKE = T0 + DAY + 15 * 60 * MIN  # day 2, 15:00


def seasonal(ts: np.ndarray, seed: int = 3) -> np.ndarray:
    """A daily sine around 50 with a little noise, and a +60 spike of 3 minutes at SPIKE."""
    v = 50 + 20 * np.sin(2 * np.pi * (ts % DAY) / DAY)
    v = v + np.random.default_rng(seed).normal(0, 1.0, ts.size)
    return np.where((ts >= SPIKE) & (ts < SPIKE + 3 * MIN), v + 60, v)


def body(metric: str, labels: dict[str, str], ts: np.ndarray, v: np.ndarray) -> dict[str, Any]:
    samples = [[int(t), float(x)] for t, x in zip(ts, v, strict=True)]
    return {"series": [{"metric": metric, "labels": labels, "samples": samples}]}


def ingest(
    c: TestClient, metric: str, labels: dict[str, str], ts: np.ndarray, v: np.ndarray
) -> None:
    """Through the real endpoint, in batches of 240 samples (4 h of 1-minute data)."""
    for i in range(0, ts.size, 240):
        r = c.post("/api/v1/ingest", json=body(metric, labels, ts[i : i + 240], v[i : i + 240]))
        assert r.status_code == 200, r.text


def settle(c: TestClient) -> OnlineAnomalyDetection:
    det = c.app.state.anomaly  # type: ignore[attr-defined]
    assert isinstance(det, OnlineAnomalyDetection)
    assert det.wait_idle(timeout=120)
    return det


def outputs(c: TestClient, selector: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Output series by metric name: (timestamps, values)."""
    store = c.app.state.store  # type: ignore[attr-defined]
    found = store.select(parse_selector(selector), 0, T0 + 10 * DAY)
    return {dict(s.labels)["__name__"]: (s.timestamps, s.values) for s in found}


def app(data_dir: Path, **anomaly: Any) -> TestClient:
    overrides: dict[str, Any] = {"data_dir": data_dir, "storage": {"raw_retention": ANY_PAST_S}}
    if anomaly:
        overrides["anomaly"] = anomaly
    return TestClient(create_app(load_settings(overrides=overrides, env={}), collectors=False))


def metric_value(c: TestClient, name: str) -> float:
    for line in c.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


TS = np.arange(T0, T0 + 2 * DAY, MIN)


def test_outputs_are_stored_with_for_labels_and_the_spike_scores_above_one(
    client: TestClient,
) -> None:
    ingest(client, "cpu_busy", {"host": "a"}, TS, seasonal(TS))
    settle(client)
    out = outputs(client, '{for="cpu_busy"}')
    assert sorted(out) == ["anomaly_score", "yhat", "yhat_lower", "yhat_upper"]
    store = client.app.state.store  # type: ignore[attr-defined]
    labels = {s.labels for s in store.select(parse_selector('{for="cpu_busy"}'), 0, T0 + 3 * DAY)}
    assert label_set({"__name__": "anomaly_score", "host": "a", "for": "cpu_busy"}) in labels
    ts, score = out["anomaly_score"]
    assert np.array_equal(ts, TS)  # one score per ingested sample
    at_spike = score[(ts >= SPIKE) & (ts < SPIKE + 3 * MIN)]
    assert at_spike.min() > 1.0
    day2 = (ts >= T0 + DAY) & (ts < SPIKE - 30 * MIN)
    assert np.median(score[day2]) < 1.0  # the seasonal shape itself is expected
    lo, hi = out["yhat_lower"][1], out["yhat_upper"][1]
    assert np.all(lo <= hi)
    assert metric_value(client, "perfintel_anomaly_series") == 1
    assert metric_value(client, "perfintel_anomaly_updates_total") == TS.size


def test_model_outputs_are_never_analysed(client: TestClient) -> None:
    ts = TS[:300]
    ingest(client, "mem_used", {"host": "a"}, ts, seasonal(ts))
    # outputs of another anomaly detector or forecaster, sent by a client
    ingest(client, "anomaly_score", {"for": "other", "host": "a"}, ts, np.ones(ts.size))
    ingest(client, "yhat", {"host": "b"}, ts, np.ones(ts.size))
    ingest(client, "custom_forecast", {"for": "mem_used"}, ts, np.ones(ts.size))
    settle(client)
    store = client.app.state.store  # type: ignore[attr-defined]
    fors = {
        dict(s.labels).get("for") for s in store.select(parse_selector('{for!=""}'), 0, T0 + DAY)
    }
    assert fors == {"mem_used", "other"}  # only the analysed series and the client's own
    names = {
        dict(s.labels)["__name__"]
        for s in store.select(parse_selector('{for="mem_used"}'), 0, T0 + DAY)
    }
    assert names == {"anomaly_score", "yhat", "yhat_lower", "yhat_upper", "custom_forecast"}
    assert metric_value(client, "perfintel_anomaly_series") == 1


def test_selectors_choose_the_series(tmp_path: Path) -> None:
    ts = TS[:200]
    with app(tmp_path / "data", selectors=['{job="app"}', "disk_io"]) as c:
        ingest(c, "cpu_busy", {"job": "app"}, ts, seasonal(ts))
        ingest(c, "cpu_busy", {"job": "db"}, ts, seasonal(ts))
        ingest(c, "disk_io", {"job": "db"}, ts, seasonal(ts))
        settle(c)
        store = c.app.state.store  # type: ignore[attr-defined]
        scored = {
            (dict(s.labels)["for"], dict(s.labels)["job"])
            for s in store.select(parse_selector("anomaly_score"), 0, T0 + DAY)
        }
    assert scored == {("cpu_busy", "app"), ("disk_io", "db")}


def run(
    data_dir: Path, parts: list[np.ndarray], *, forget: bool = False
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Ingest each part in its own run of the app on ``data_dir`` (a restart between
    parts); ``forget`` deletes the saved state before each restart."""
    values = seasonal(TS)
    for ts in parts:
        if forget:
            (data_dir / "analysis" / STATE_FILE).unlink(missing_ok=True)
        with app(data_dir) as c:
            ingest(c, "cpu_busy", {"host": "a"}, ts, values[np.isin(TS, ts)])
            settle(c)
    assert (data_dir / "analysis" / STATE_FILE).exists()
    with app(data_dir) as c:
        return outputs(c, '{for="cpu_busy"}')


def test_a_restart_resumes_from_the_saved_state(tmp_path: Path) -> None:
    half = TS.size // 2
    straight = run(tmp_path / "a", [TS])
    restarted = run(tmp_path / "b", [TS[:half], TS[half:]])
    for name in ("anomaly_score", "yhat", "yhat_lower", "yhat_upper"):
        assert np.array_equal(restarted[name][0], straight[name][0]), name
        assert np.array_equal(restarted[name][1], straight[name][1]), name  # bit for bit
    # the comparison has teeth: without the saved state the second half differs
    relearnt = run(tmp_path / "c", [TS[:half], TS[half:]], forget=True)
    assert not np.array_equal(relearnt["yhat"][1], straight["yhat"][1])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStore]:
    s = open_store(
        load_settings(
            overrides={"data_dir": tmp_path / "data", "storage": {"raw_retention": ANY_PAST_S}},
            env={},
        )
    )
    yield s
    s.close()


def batch(metric: str, ts: np.ndarray, v: np.ndarray, **labels: str) -> SampleBatch:
    return SampleBatch.from_arrays(label_set({"__name__": metric, **labels}), ts, v)


def test_a_full_queue_drops_batches_and_counts_them(store: DuckDBStore) -> None:
    det = OnlineAnomalyDetection(store, queue_batches=1, registry=Registry())
    ts = TS[:10]
    assert det.submit(batch("a", ts, np.ones(10)))  # the worker is not running yet
    assert not det.submit(batch("b", ts, np.ones(10)))
    assert not det.submit(batch("c", ts, np.ones(10)))
    assert det.metrics.dropped_batches.get() == 2
    det.start()
    assert det.wait_idle(timeout=60)
    det.close()
    scored = {
        dict(s.labels)["for"] for s in store.select(parse_selector("anomaly_score"), 0, T0 + DAY)
    }
    assert scored == {"a"}
    assert det.metrics.updates.get() == 10


def test_the_queue_is_bounded_in_samples_too(store: DuckDBStore) -> None:
    # A bulk import's batches hold hundreds of thousands of samples each: 256 of them
    # queued held 2 GB. The sample bound drops the batch that would cross it.
    det = OnlineAnomalyDetection(store, queue_samples=25, registry=Registry())
    ts = TS[:10]
    assert det.submit(batch("a", ts, np.ones(10)))
    assert det.submit(batch("b", ts, np.ones(10)))
    assert not det.submit(batch("c", ts, np.ones(10)))  # 30 > 25
    assert det.metrics.dropped_batches.get() == 1
    det.start()
    assert det.wait_idle(timeout=60)
    assert det.submit(batch("d", TS[10:20], np.ones(10)))  # room again once processed
    assert det.wait_idle(timeout=60)
    det.close()
    scored = {
        dict(s.labels)["for"] for s in store.select(parse_selector("anomaly_score"), 0, T0 + DAY)
    }
    assert scored == {"a", "b", "d"}


def test_old_and_repeated_samples_are_dropped(store: DuckDBStore) -> None:
    det = OnlineAnomalyDetection(store, registry=Registry())
    det.process(batch("a", TS[10:20], np.ones(10)))
    late = np.r_[TS[5], TS[19], TS[25], TS[25], TS[30]]  # older, equal, new (twice), new
    det.process(batch("a", late, np.arange(5.0)))
    assert det.metrics.updates.get() == 12
    out = {
        dict(s.labels)["__name__"]: s
        for s in store.select(parse_selector('{for="a"}'), 0, T0 + DAY)
    }
    assert np.array_equal(out["yhat"].timestamps, np.r_[TS[10:20], TS[25], TS[30]])


def test_series_beyond_the_cap_are_refused_and_counted(store: DuckDBStore) -> None:
    det = OnlineAnomalyDetection(store, max_series=2, registry=Registry())
    ts = TS[:5]
    b = SampleBatch.concat([batch("m", ts, np.ones(5), i=str(i)) for i in range(4)])
    det.process(b)
    det.process(b)
    assert det.metrics.refused_series.get() == 2  # counted once per series
    assert det.metrics.series.get() == 2
    assert det.metrics.updates.get() == 10


def test_a_damaged_state_file_is_ignored_and_selectors_prune_restored_series(
    store: DuckDBStore, tmp_path: Path
) -> None:
    state_dir = tmp_path / "analysis"
    first = OnlineAnomalyDetection(store, state_dir=state_dir, registry=Registry())
    first.process(batch("a", TS[:5], np.ones(5)))
    first.process(batch("b", TS[:5], np.ones(5)))
    first.save_state()
    only_a = OnlineAnomalyDetection(
        store, selectors=["a"], state_dir=state_dir, registry=Registry()
    )
    assert only_a.load_state() == 1
    assert only_a.runner.get_state(0) == first.runner.get_state(0)
    (state_dir / STATE_FILE).write_bytes(b"not a state file")
    fresh = OnlineAnomalyDetection(store, state_dir=state_dir, registry=Registry())
    assert fresh.load_state() == 0
    fresh.process(batch("a", TS[:5], np.ones(5)))  # learns from scratch
    assert fresh.metrics.updates.get() == 5


def test_a_state_file_of_the_previous_detector_version_is_discarded_with_a_log_line(
    store: DuckDBStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # what the previous version wrote: format 1, one 2,703-byte "PIA1" state per series
    state_dir = tmp_path / "analysis"
    state_dir.mkdir()
    old = b"PIA1\x08ensemble" + bytes(8) + bytes(2703 - 21)
    labels = orjson.dumps([[["__name__", "a"]]])
    np.savez(
        state_dir / STATE_FILE,
        format=np.array([1], dtype=np.int64),
        labels=np.frombuffer(labels, dtype=np.uint8),
        last_ts=np.array([TS[4]], dtype=np.int64),
        states=np.frombuffer(old, dtype=np.uint8).reshape(1, -1),
    )
    det = OnlineAnomalyDetection(store, state_dir=state_dir, registry=Registry())
    with caplog.at_level("WARNING", logger="perfintel.performance.online"):
        assert det.load_state() == 0
    assert "earlier detector version" in caplog.text
    det.process(batch("a", TS[:5], np.ones(5)))  # no crash: learns from scratch
    assert det.metrics.updates.get() == 5
    det.save_state()  # and the next save is in the current format
    again = OnlineAnomalyDetection(store, state_dir=state_dir, registry=Registry())
    assert again.load_state() == 1
    # a file of the current format whose states are of the old layout is refused as well
    with np.load(state_dir / STATE_FILE) as z:
        parts = {k: z[k] for k in z.files}
    parts["states"] = np.frombuffer(old, dtype=np.uint8).reshape(1, -1)
    np.savez(state_dir / STATE_FILE, **parts)
    caplog.clear()
    with caplog.at_level("WARNING", logger="perfintel.performance.online"):
        assert (
            OnlineAnomalyDetection(store, state_dir=state_dir, registry=Registry()).load_state()
            == 0
        )
    assert "earlier detector version" in caplog.text
