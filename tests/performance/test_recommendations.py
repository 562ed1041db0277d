"""Recommendations on the demo over the in-memory store, whatever weekday the window ends on."""

from __future__ import annotations

import pytest

from perfintel.analysis.recommend import CostModel
from perfintel.demo import generate_demo
from perfintel.performance.recommendations import recommend
from perfintel.storage.memory import MemoryStore

DAY = 86_400_000
MONDAY = 1_767_571_200_000  # 2026-01-05T00:00:00Z
RESIZES = {"overprovisioned", "underprovisioned"}


@pytest.mark.parametrize("weekday", range(7))
def test_planted_cases_and_nothing_else_resized(weekday: int) -> None:
    end = MONDAY + weekday * DAY + 13 * 3_600_000
    store = MemoryStore()
    for batch in generate_demo(end_ms=end, days=8, step_s=1200):
        store.append(batch)
    rep = recommend(store, end, 8, CostModel())
    resized = {
        (r.kind, dict(r.resource.entity).get("service"))
        for r in rep.recommendations
        if r.kind in RESIZES
    }
    assert ("overprovisioned", "reports") in resized and ("underprovisioned", "ingest") in resized
    healthy = {"api-gateway", "checkout", "search", "auth", "payments", "postgres"}
    assert {svc for _, svc in resized} & healthy == set(), resized
    leaks = {
        dict(r.resource.entity).get("service")
        for r in rep.recommendations
        if r.kind == "memory_leak"
    }
    assert leaks == {"notifier"}
