"""Recommendation rules, the cost model and the plugin registry (a third-party rule included)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from perfintel.analysis.recommend import (
    CostModel,
    RecommendationContext,
    Resource,
    Usage,
    available_rules,
    load_rules,
    run_rules,
)
from perfintel.analysis.recommend.base import GIB, resize_impact
from perfintel.analysis.recommend.headroom import DiskHeadroom
from perfintel.analysis.recommend.leak import MemoryLeak
from perfintel.analysis.recommend.rightsizing import Overprovisioned, Underprovisioned
from perfintel.errors import BadInputError, ConfigError
from perfintel.model import label_set

HOURS = 14 * 24
HOUR_MS = 3_600_000
BUILT_IN = {"overprovisioned", "underprovisioned", "memory_leak", "disk_headroom"}


def daily(peak: float, trough: float, seed: int = 0) -> np.ndarray:
    """Hourly usage with a daily cycle between ``trough`` and ``peak``."""
    h = np.arange(HOURS)
    shape = 0.5 + 0.5 * np.sin(2 * np.pi * (h - 8) / 24)
    noise = np.random.default_rng(seed).normal(0, 0.01 * (peak - trough), HOURS)
    return trough + (peak - trough) * shape + noise


def resource(
    kind: str, used: np.ndarray, capacity: float | None, level: str = "node", who: str = "h"
) -> Resource:
    return Resource(
        kind,  # type: ignore[arg-type]
        level,  # type: ignore[arg-type]
        label_set({"instance": who}),
        Usage(used, used),
        capacity,
        (label_set({"__name__": f"{kind}_usage", "instance": who}),),
    )


def context(*resources: Resource, cost: CostModel | None = None) -> RecommendationContext:
    return RecommendationContext(0, HOUR_MS, HOURS, cost or CostModel(), resources)


def test_cost_model_arithmetic() -> None:
    c = CostModel(core_hour=0.05, memory_gib_month=2.0, disk_gib_month=0.1, hours_per_month=730)
    assert c.monthly("cpu", 2) == pytest.approx(2 * 0.05 * 730)
    assert c.monthly("memory", 3 * GIB) == pytest.approx(6.0)
    assert c.monthly("disk", 100 * GIB) == pytest.approx(10.0)
    imp = resize_impact("cpu", 16, 4, c)
    assert imp.monthly_cost == pytest.approx(-12 * 0.05 * 730) and imp.amount == -12
    assert imp.formula == "-12 cores × 0.05 USD/core-hour × 730 h = -438.00"
    imp = resize_impact("memory", 8 * GIB, 4 * GIB, c)
    assert imp.formula == "-4 GiB × 2 USD/GiB-month = -8.00"


def test_rightsizing_leaves_a_right_sized_host_alone() -> None:
    over = resource("cpu", daily(1.2, 0.2), 16.0, who="big")
    under = resource("cpu", daily(1.98, 0.8), 2.0, who="small")
    fine = resource("cpu", daily(1.1, 0.3), 2.0, who="fine")
    mem_over = resource("memory", daily(3 * GIB, 2 * GIB), 64 * GIB, who="big")
    no_cap = resource("cpu", daily(1, 0.1), None, level="process", who="p")
    ctx = context(over, under, fine, mem_over, no_cap)
    found = {
        (r.kind, dict(r.resource.entity)["instance"], r.resource.kind): r
        for rule in (Overprovisioned(), Underprovisioned())
        for r in rule.evaluate(ctx)
    }
    assert set(found) == {
        ("overprovisioned", "big", "cpu"),
        ("overprovisioned", "big", "memory"),
        ("underprovisioned", "small", "cpu"),
    }
    cpu = found[("overprovisioned", "big", "cpu")]
    assert cpu.current == 16 and cpu.proposed == 2  # ceil(1.2 / 0.7)
    assert cpu.impact is not None and cpu.impact.monthly_cost == pytest.approx(-14 * 0.04 * 730)
    mem = found[("overprovisioned", "big", "memory")]
    assert mem.proposed == 5 * GIB  # ceil(3 GiB / 0.7) in whole GiB
    up = found[("underprovisioned", "small", "cpu")]
    assert up.proposed == 3 and up.impact is not None and up.impact.monthly_cost > 0
    assert 0.5 <= up.confidence <= 1
    names = {e.name for e in up.evidence}
    assert {"capacity", "p99 peak", "p99 peak utilisation", "daily peak growth"} <= names


def test_growth_counts_against_the_capacity() -> None:
    growing = daily(0.9, 0.3) + np.arange(HOURS) * (0.05 / 24)  # +0.05 cores a day
    (rec,) = Underprovisioned().evaluate(context(resource("cpu", growing, 2.0)))
    assert "projected" in rec.title  # 45 % now, beyond the capacity within 30 days


def test_memory_leak_found_since_the_last_restart() -> None:
    h = np.arange(HOURS)
    base = 400e6 * (1 + 0.05 * np.sin(2 * np.pi * h / 24))
    leaking = base + np.where(h >= 100, h - 100, h) * (40e6 / 24)  # 40 MB a day ...
    leaking[:100] += 300e6  # ... and a restart at hour 100 released what had grown before
    restarted = base + np.where(h < 300, (h % 150) * 10e6, 0)  # grew, then was restarted
    ctx = context(
        resource("memory", leaking, 2 * GIB, level="process", who="leaky"),
        resource("memory", base, 2 * GIB, level="process", who="flat"),
        resource("memory", restarted, 2 * GIB, level="process", who="fixed"),
    )
    (rec,) = MemoryLeak().evaluate(ctx)
    assert dict(rec.resource.entity)["instance"] == "leaky"
    ev = {e.name: e.value for e in rec.evidence}
    assert ev["growth per day"] == pytest.approx(40e6, rel=0.1)
    assert ev["segment start"] == pytest.approx(100 * HOUR_MS, abs=3 * HOUR_MS)
    assert rec.impact is not None and rec.impact.monthly_cost == pytest.approx(
        -ev["grown since segment start"] / GIB * 3.0
    )
    assert rec.extra["days_to_capacity"] > 0 and rec.confidence >= 0.7


def test_disk_headroom_for_a_filling_disk_not_a_rotating_one() -> None:
    h = np.arange(HOURS)
    filling = 300 * GIB + h * (5 * GIB / 24)  # 5 GiB a day
    rotating = 20 * GIB + (h % 24) * 1 * GIB  # filled and cleaned daily
    ctx = context(
        resource("disk", filling, 500 * GIB, who="db"),
        resource("disk", rotating, 50 * GIB, who="logs"),
    )
    (rec,) = DiskHeadroom().evaluate(ctx)
    assert dict(rec.resource.entity)["instance"] == "db"
    assert rec.extra["days_to_full"] == pytest.approx((500 - 300 - 5 * 13.96) / 5, rel=0.1)
    assert rec.proposed is not None and rec.proposed > 500 * GIB and rec.proposed % (10 * GIB) == 0
    assert rec.impact is not None and rec.impact.monthly_cost == pytest.approx(
        (rec.proposed - 500 * GIB) / GIB * 0.10
    )


def test_rules_survive_empty_and_missing_data() -> None:
    nan = np.full(HOURS, np.nan)
    ctx = context(
        resource("cpu", nan, 4.0),
        resource("memory", nan, GIB),
        resource("disk", nan, GIB),
        resource("memory", np.zeros(HOURS), None, level="process"),
    )
    for rule in load_rules():
        assert list(rule.evaluate(ctx)) == []
        assert list(rule.evaluate(context())) == []


def test_built_in_rules_come_from_the_entry_points() -> None:
    assert set(available_rules()) >= BUILT_IN
    rules = load_rules(["memory_leak", "overprovisioned"])
    assert [r.name for r in rules] == ["memory_leak", "overprovisioned"]
    with pytest.raises(BadInputError, match="astrology"):
        load_rules(["astrology"])


def _third_party(root: Path, entry: str) -> None:
    """A distribution installed on ``root`` that registers rules as a third party would."""
    (root / "acme_rules.py").write_text(
        textwrap.dedent(
            """
            from perfintel.analysis.recommend import Recommendation


            class IdleHost:
                name = "idle_host"
                requires = frozenset({"resources"})

                def evaluate(self, context):
                    for r in context.resources:
                        if r.kind == "cpu" and r.usage.peak.max() < 0.01:
                            yield Recommendation(self.name, r, "idle", "turn it off", 0.9, None, ())


            class NoisyAlerts:
                name = "noisy_alerts"
                requires = frozenset({"alerts"})

                def evaluate(self, context):
                    raise AssertionError("never run without the alerts section")


            class Broken:
                name = "broken"
                requires = frozenset({"resources"})

                def evaluate(self, context):
                    raise ValueError("bad data")


            class NotARule:
                pass
            """
        )
    )
    info = root / "acme_rules-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-rules\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[perfintel.recommendations]\n{entry}\n")


def test_a_third_party_rule_registers_like_the_built_ins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _third_party(
        tmp_path,
        "idle_host = acme_rules:IdleHost\nnoisy_alerts = acme_rules:NoisyAlerts\n"
        "broken = acme_rules:Broken",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert {"idle_host", "noisy_alerts", "broken"} <= set(available_rules())
    rules = load_rules()
    idle = resource("cpu", np.full(HOURS, 0.001), 8.0, who="idle")
    recs, failures, skipped = run_rules(rules, context(idle))
    assert [r.kind for r in recs if r.kind == "idle_host"] == ["idle_host"]
    assert [f.rule for f in failures] == ["broken"] and "bad data" in failures[0].error
    assert skipped == ["noisy_alerts"]  # its section does not exist yet: not run, not stubbed
    assert any(r.kind == "overprovisioned" for r in recs)  # the built-ins ran beside them


def test_a_broken_plugin_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _third_party(tmp_path, "not_a_rule = acme_rules:NotARule\nmissing = acme_rules:Nowhere")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="not_a_rule"):
        load_rules(["not_a_rule"])
    with pytest.raises(ConfigError, match="missing"):
        load_rules(["missing"])
