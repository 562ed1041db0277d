"""``perfintel rules backtest`` over stored history: from a data directory and from a running server."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from perfintel.alerting.rules.backtest import CountingSink, OverlayStore, backtest
from perfintel.alerting.rules.files import parse_rules
from perfintel.batch import SampleBatch
from perfintel.cli_rules import rules_app
from perfintel.model import label_set, parse_selector
from perfintel.storage.duckdb import DuckDBStore, StoreOptions
from perfintel.storage.memory import MemoryStore
from tests.conftest import start_server

# recent: the DuckDB store drops raw samples older than its retention (wall clock)
T0 = float(int(time.time() // 3600 * 3600) - 6 * 3600)
RULES = """
groups:
  - name: g
    interval: 1m
    rules:
      - record: cpu:max
        expr: max(cpu)
      - alert: High
        expr: cpu:max > 0.9
        for: 2m
"""
# a second group, for the command's table
LONG = """\
  - name: a-second-group-with-a-long-name
    rules:
      - alert: CpuAboveAHundredPercentForLong
        expr: cpu > 100
"""


def _history() -> SampleBatch:
    t = T0 + 60 * np.arange(180)
    v = np.where((np.arange(180) % 60) < 20, 0.95, 0.1)  # 20 minutes high in every hour
    return SampleBatch.from_arrays(
        label_set({"__name__": "cpu", "host": "a"}), (t * 1000).astype(np.int64), v
    )


class ClockedCounter(CountingSink):
    def __init__(self) -> None:
        super().__init__()
        self.ticks = 0

    def tick(self, now: float) -> None:
        super().tick(now)
        self.ticks += 1


def test_backtest_counts_alerts_and_never_writes_into_the_store() -> None:
    base = MemoryStore()
    base.append(_history())
    overlay = OverlayStore(base)
    sink = ClockedCounter()
    report = backtest(parse_rules(RULES, "r.yml"), overlay, T0, T0 + 3 * 3600 - 60, sink=sink)
    (high,) = report.rules
    assert (high.rule, high.alerts, high.series) == ("High", 3, 1)  # one spell per hour
    assert high.firing_seconds == 3 * 18 * 60  # 20 minutes high, 2 of them pending
    assert report.evaluations == 180 and sink.ticks == 180
    assert report.sink["firing alerts sent"] == 3 and report.sink["resolutions sent"] == 3
    assert not base.select(parse_selector("cpu:max"), 0, 2**62)  # recordings stayed in the overlay
    assert overlay.select(parse_selector("cpu:max"), 0, 2**62)


def test_backtest_command_on_a_data_dir_and_on_a_server(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES + LONG)
    data = tmp_path / "data"
    store = DuckDBStore(data / "samples", StoreOptions())
    store.append(_history())
    store.close()
    args = ["backtest", str(rules), "--from", str(T0), "--to", str(T0 + 3 * 3600 - 60)]
    r = CliRunner().invoke(rules_app, [*args, "--data-dir", str(data)])
    assert r.exit_code == 0, r.output
    assert "3 alerts from 1 rules" in r.output
    # in 80 columns a rule's name stays whole, its group under it
    assert "CpuAboveAHundredPercentForLong" in r.output and "a-second-group" in r.output
    srv = start_server(data, env={"PERFINTEL_HOST_COLLECTOR__ENABLED": "false"})
    try:
        r = CliRunner().invoke(rules_app, [*args, "--url", srv.url])
        assert r.exit_code == 0, r.output
        assert "3 alerts from 1 rules" in r.output
        r = CliRunner().invoke(rules_app, [*args, "--data-dir", str(data)])
        assert r.exit_code == 2 and "use --url" in r.output  # the server holds the store
    finally:
        srv.stop()
