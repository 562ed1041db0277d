"""The overview's capacity risks: a projection from under half a day of history is flagged."""

from __future__ import annotations

import numpy as np

from perfintel.batch import SampleBatch
from perfintel.model import label_set
from perfintel.overview import gather
from perfintel.overview.state import OverviewState
from perfintel.storage.memory import MemoryStore

NOW_MS = 1_800_000_000_000
MIN = 60_000
DAY = 1440 * MIN


def _memory(store: MemoryStore, host: str, minutes: int, runs_out_in_min: float) -> None:
    """A host's available memory falling steadily: gone ``runs_out_in_min`` after now."""
    node = {"instance": f"{host}:9100", "job": "node"}
    ts = NOW_MS - MIN * np.arange(minutes - 1, -1, -1, dtype=np.int64)
    rng = np.random.default_rng(len(host))
    left = (NOW_MS - ts) / MIN + runs_out_in_min  # minutes until empty, as a level
    avail = 100.0 * left / (minutes + runs_out_in_min) + rng.normal(0, 0.05, ts.size)
    for name, values in (
        ("node_memory_MemAvailable_bytes", avail),
        ("node_memory_MemTotal_bytes", np.full(ts.size, 100.0)),
    ):
        store.append(SampleBatch.from_arrays(label_set({"__name__": name, **node}), ts, values))


def test_a_short_history_is_not_projected_far_nor_held_against_its_host() -> None:
    store = MemoryStore()
    _memory(store, "new", 30, 12 * 60)  # 30 minutes seen, 12 hours to go
    _memory(store, "old", 2 * 1440, 3 * 1440)  # two days seen, three to go
    risks, problems = gather.capacity_risks(store, NOW_MS, horizon_days=30, max_samples=None)
    assert not problems
    by_host = {r["host"]: r for r in risks}
    assert by_host["new"]["history_days"] < 0.05 and by_host["new"]["beyond_history"]
    assert by_host["old"]["history_days"] > 1.9 and not by_host["old"]["beyond_history"]
    assert 1.5 < by_host["old"]["days_p50"] < 5
    signals = gather.EntitySignals()
    OverviewState._add_capacity_signals(signals, risks)
    assert "new" not in signals.hosts
    assert signals.hosts["old"].exhaustion_days_p50 == by_host["old"]["days_p50"]
