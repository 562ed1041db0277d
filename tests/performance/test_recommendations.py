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


def test_container_resources_from_cadvisor_metrics() -> None:
    """cAdvisor's usage and limits make container-level CPU and memory resources."""
    import numpy as np

    from perfintel.batch import SampleBatch
    from perfintel.model import label_set

    end = MONDAY + 14 * DAY
    ts = np.arange(end - 14 * DAY, end, 300_000, dtype=np.int64)
    hours = (ts % DAY) / 3_600_000
    busy = 0.3 + 0.7 * np.exp(-0.5 * ((hours - 14) / 3) ** 2)
    store = MemoryStore()

    def put(name: str, labels: dict[str, str], values: np.ndarray) -> None:
        store.append(SampleBatch.from_arrays(label_set({"__name__": name, **labels}), ts, values))

    for pod, cores, limit_cores, mem, limit_mem in (
        ("idle-api", 0.2, 4.0, 300e6, 2 * 1024**3),  # far too large
        ("hot-worker", 0.98, 1.0, 900e6, 1024**3),  # at its CPU limit
        ("fine-web", 0.6, 1.0, 550e6, 1024**3),
    ):
        c = {"namespace": "shop", "pod": pod, "container": "app"}
        put("container_cpu_usage_seconds_total", c, np.cumsum(cores * busy * 300))
        put("container_spec_cpu_quota", c, np.full(ts.size, limit_cores * 100_000))
        put("container_spec_cpu_period", c, np.full(ts.size, 100_000.0))
        put("container_memory_working_set_bytes", c, mem * (0.9 + 0.1 * busy))
        put("container_spec_memory_limit_bytes", c, np.full(ts.size, float(limit_mem)))
    rep = recommend(store, end, 14, CostModel())
    found = {
        (r.kind, dict(r.resource.entity)["pod"], r.resource.kind)
        for r in rep.recommendations
        if r.resource.level == "container"
    }
    assert ("overprovisioned", "idle-api", "cpu") in found
    assert ("overprovisioned", "idle-api", "memory") in found
    assert ("underprovisioned", "hot-worker", "cpu") in found
    assert not {f for f in found if f[1] == "fine-web"}
    (cpu,) = [
        r
        for r in rep.recommendations
        if r.resource.level == "container"
        and r.kind == "overprovisioned"
        and r.resource.kind == "cpu"
    ]
    assert cpu.current == 4.0 and cpu.proposed == 1.0
