"""Resources of one capacity request are planned on the planning threads, in series order."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from perfintel.analysis.capacity import CapacityReport
from perfintel.model import label_set
from perfintel.performance import capacity as cap
from perfintel.performance.history import History, HistorySet, Window

STEP = 3_600_000
DAY = 24 * STEP


def _set(name: str, hosts: list[str], values: list[np.ndarray]) -> HistorySet:
    ts = np.arange(values[0].size, dtype=np.int64) * STEP
    series = [
        History(label_set({"__name__": name, "instance": h}), ts, v)
        for h, v in zip(hosts, values, strict=True)
    ]
    return HistorySet(STEP, "raw", int(ts[0]), int(ts[-1]), series)


def test_resources_are_planned_off_the_calling_thread_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(0)
    n = 14 * 24
    hosts = [f"h{i}" for i in range(6)]
    # h2 has no capacity series, h4 no usable samples: both skipped in their place
    avail = [100 - (20 + 2 * i) - 0.1 * np.arange(n) + rng.normal(0, 0.5, n) for i in range(6)]
    avail[4] = np.full(n, np.nan)
    usage = _set("avail", hosts, avail)
    capacity = _set("size", [h for h in hosts if h != "h2"], [np.full(n, 100.0)] * 5)
    threads: set[str] = set()
    real = cap.plan_capacity

    def recording(*args: object, **kwargs: object) -> CapacityReport:
        threads.add(threading.current_thread().name)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(cap, "plan_capacity", recording)
    window = Window(STEP, 14 * DAY, 30 * DAY)
    analysis = cap.plan_histories(usage, capacity, window, usage_kind="available")
    assert [dict(p.labels)["instance"] for p in analysis.resources] == ["h0", "h1", "h3", "h5"]
    assert [dict(s.labels)["instance"] for s in analysis.skipped] == ["h2", "h4"]
    assert "no capacity series" in analysis.skipped[0].reason
    assert threads and all(t.startswith("perfintel-capacity") for t in threads)
    # the same plans as one at a time
    for p in analysis.resources:
        alone = cap.plan_histories(
            HistorySet(
                STEP,
                "raw",
                0,
                (n - 1) * STEP,
                [next(s for s in usage.series if s.labels == p.labels)],
            ),
            capacity,
            window,
            usage_kind="available",
        )
        assert alone.resources[0].report == p.report
