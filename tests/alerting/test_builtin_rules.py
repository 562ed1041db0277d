"""perfintel's starter host rules (``alerting.builtin_rules``): loaded when asked, and right."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from perfintel.alerting.rules.files import load_rule_file
from perfintel.alerting.rules.kinds import KindContext, kinds
from perfintel.alerting.rules.promtest import run_test_file
from perfintel.alerting.rules.service import BUILTIN_RULES
from perfintel.api.app import create_app
from perfintel.batch import SampleBatch
from perfintel.config import load_settings
from perfintel.model import label_set
from perfintel.query.promql.engine import Engine
from perfintel.storage.memory import MemoryStore

HERE = Path(__file__).parent
T0 = 1_800_000_000  # seconds
MIN = 60
DAY = 86_400


def test_threshold_rules_pass_their_unit_tests() -> None:
    """Disk nearly full (not tmpfs), memory low, CPU saturated for half an hour, a failing
    collector: each fires when it should, with its summary (promtool's test format)."""
    result = run_test_file(HERE / "builtin_host_rules_test.yml")
    assert result.ok, "\n".join(result.errors)


def _rule(name: str):  # type: ignore[no-untyped-def]
    [group] = load_rule_file(BUILTIN_RULES)
    return next(r for r in group.rules if r.name == name)


def _disk(store: MemoryStore, host: str, seconds: int, left_after_s: float) -> float:
    """A data disk filling steadily: full ``left_after_s`` after the last sample; its time."""
    t = T0 + 15 * MIN * np.arange(seconds // (15 * MIN))
    now = float(t[-1])
    used = 100.0 * (1 - (now + left_after_s - t) / (now + left_after_s - t[0]) * 0.6)
    labels = {"instance": host, "mountpoint": "/data", "fstype": "ext4"}
    for name, v in (
        ("node_filesystem_avail_bytes", 100.0 - used),
        ("node_filesystem_size_bytes", np.full(t.size, 100.0)),
    ):
        store.append(SampleBatch.from_arrays(label_set({"__name__": name, **labels}), t * 1000, v))
    return now


@pytest.mark.parametrize(
    ("history_s", "left_s", "fires"),
    [(4 * DAY, 0.5 * DAY, True), (4 * DAY, 20 * DAY, False), (2 * 3600, 0.2 * DAY, False)],
)
def test_disk_will_fill_needs_a_day_of_history(history_s: int, left_s: float, fires: bool) -> None:
    store = MemoryStore()
    now = _disk(store, "db", history_s, left_s)
    rule = _rule("HostDiskWillFill")
    ctx = KindContext(store, Engine(store), int(now * 1000))
    got = kinds()[rule.kind].evaluate(rule.params, ctx)
    assert any(f.trigger for f in got) is fires


@pytest.mark.parametrize("on", [True, False])
def test_loaded_only_when_asked(tmp_path: Path, on: bool) -> None:
    settings = load_settings(
        overrides={"data_dir": tmp_path / "data", "alerting": {"builtin_rules": on}}, env={}
    )
    with TestClient(create_app(settings, collectors=False)) as c:
        groups = c.get("/api/v1/rules").json()["data"]["groups"]
    names = {r["name"] for g in groups if g["name"] == "perfintel-host" for r in g["rules"]}
    assert names == (
        {
            "HostDiskAlmostFull",
            "HostDiskWillFill",
            "HostMemoryLow",
            "HostMemoryWillRunOut",
            "HostCpuSaturated",
            "HostCollectorFailing",
        }
        if on
        else set()
    )
