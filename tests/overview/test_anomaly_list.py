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
