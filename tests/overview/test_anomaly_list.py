"""The overview's anomaly list: what the detector with a day of warm-up confirms comes first."""

from __future__ import annotations

import numpy as np

from perfintel.batch import SampleBatch
from perfintel.model import label_set
from perfintel.overview import gather
from perfintel.storage.memory import MemoryStore

NOW_MS = 1_800_000_000_000
MIN = 60_000


def _append(store: MemoryStore, labels: dict[str, str], ts: np.ndarray, v: np.ndarray) -> None:
    store.append(SampleBatch.from_arrays(label_set(labels), ts, v.astype(np.float64)))


def test_a_confirmed_incident_ranks_above_a_new_series_first_move() -> None:
    store = MemoryStore()
    rng = np.random.default_rng(0)
    # two days of a latency around 100 ms, then +50 ms for the last 20 minutes: an incident
    ts = NOW_MS - MIN * np.arange(2 * 1440 - 1, -1, -1, dtype=np.int64)
    latency = 100.0 + rng.normal(0, 2.0, ts.size)
    latency[-20:] += 50.0
    lat = {"__name__": "api_latency_ms", "instance": "api-1:8080", "job": "api"}
    _append(store, lat, ts, latency)
    # a series first seen five minutes ago: 0, 0, 0, then 12 MB (a new host's first minutes)
    new_ts = ts[-5:]
    huge = {"__name__": "node_memory_AnonHugePages_bytes", "instance": "vm", "job": "node"}
    _append(store, huge, new_ts, np.array([0.0, 0.0, 0.0, 12e6, 12.5e6]))
    # the online detector's scores as stored beside them: the new series' is astronomic
    for labels, t, peak in ((lat, ts[-10], 9.0), (huge, new_ts[-2], 1.6e16)):
        score = {"__name__": "anomaly_score", "for": labels["__name__"], **labels}
        del score["__name__"]
        score = {"__name__": "anomaly_score", **score}
        _append(store, score, np.array([t]), np.array([peak]))
    candidates = gather.anomaly_shares(
        store, NOW_MS - 3 * 60 * MIN, NOW_MS + 1, None, gather.EntitySignals()
    )
    assert [dict(c.source)["__name__"] for c in candidates] == [
        "node_memory_AnonHugePages_bytes",
        "api_latency_ms",
    ]
    listed = gather.explain_anomalies(
        store, candidates, NOW_MS - 3 * 60 * MIN, NOW_MS + 1, top=2, max_samples=None
    )
    assert [a["metric"] for a in listed] == ["api_latency_ms", "node_memory_AnonHugePages_bytes"]
    # the shift's event, not the small novelty blip half an hour before it (whose NAB score
    # is higher: the shift came while alarms rested)
    assert listed[0]["severity"] == "critical" and listed[0]["value"] > 140
    unconfirmed = listed[1]
    assert unconfirmed["peak_score"] is None
    assert "1.6e+16" in unconfirmed["explanation"] and "not confirmed" in unconfirmed["explanation"]
    # with room for one, the confirmed incident is the one shown
    one = gather.explain_anomalies(
        store, candidates, NOW_MS - 3 * 60 * MIN, NOW_MS + 1, top=1, max_samples=None
    )
    assert [a["metric"] for a in one] == ["api_latency_ms"]


def test_a_new_series_warm_up_zeros_do_not_dilute_its_hosts_anomaly_share() -> None:
    """A host first scored 90 minutes ago: its first hour is the detector's warm-up, stored
    as 0s. Of the 30 scored minutes since, 6 are over 1: the share is 6/30, not 6/90. A
    series scored since before the window counts every point."""
    store = MemoryStore()
    ts = NOW_MS - MIN * np.arange(89, -1, -1, dtype=np.int64)
    scores = np.zeros(ts.size)
    scores[-6:] = 3.0
    new = {"__name__": "anomaly_score", "for": "node_load1", "instance": "new", "job": "node"}
    _append(store, new, ts, scores)
    old_ts = NOW_MS - MIN * np.arange(199, -1, -1, dtype=np.int64)
    old_scores = np.zeros(old_ts.size)
    old_scores[-6:] = 3.0
    old = {"__name__": "anomaly_score", "for": "node_load1", "instance": "old", "job": "node"}
    _append(store, old, old_ts, old_scores)
    signals = gather.EntitySignals()
    gather.anomaly_shares(store, NOW_MS - 3 * 60 * MIN, NOW_MS + 1, None, signals)
    assert signals.hosts["new"].anomaly_share == 6 / 30
    assert signals.hosts["old"].anomaly_share == 6 / 181  # the window holds both ends
