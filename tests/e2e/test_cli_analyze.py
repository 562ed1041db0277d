"""``perfintel analyze …`` against a real server process: tables, JSON and PNG charts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from perfintel.bench.incidents import generate_incident
from tests.conftest import Server, start_server

MIN = 60_000
HOUR = 60 * MIN
NOW = (int(time.time() * 1000) // MIN) * MIN - 5 * MIN
PNG = b"\x89PNG\r\n\x1a\n"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "perfintel", "analyze", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("PERFINTEL_")},
            "COLUMNS": "250",
        },
    )


def _line(labels: dict[str, str], ts: np.ndarray, vals: np.ndarray) -> bytes:
    ok = np.isfinite(vals)
    return orjson.dumps(
        {"metric": labels, "values": vals[ok].tolist(), "timestamps": ts[ok].astype(int).tolist()}
    )


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int]]:
    """A server holding a generated incident (ending now) and a lagged pair of series."""
    root = Path(tmp_path_factory.mktemp("cli-analyze"))
    srv = start_server(root / "data", env={"PERFINTEL_ANOMALY__ENABLED": "false"})
    inc = generate_incident(1002)
    shift = NOW - int(inc.timestamps[-1])
    ts = inc.timestamps + shift
    lines = [_line(dict(s.labels), ts, s.values) for s in inc.series]
    rng = np.random.default_rng(1)
    n = 6 * 60
    t2 = NOW - (n - 1) * MIN + MIN * np.arange(n)
    cause = np.cumsum(rng.normal(size=n))
    lines.append(_line({"__name__": "cli_cause"}, t2, cause))
    lines.append(
        _line(
            {"__name__": "cli_effect"}, t2, np.r_[np.zeros(3), cause[:-3]] + rng.normal(0, 0.2, n)
        )
    )
    r = httpx.post(srv.url + "/api/v1/import", content=b"\n".join(lines), timeout=120)
    assert r.status_code in (200, 204), r.text
    yield srv, inc.time_ms + shift
    srv.stop()


def test_correlations_table_json_and_heat_map(loaded: tuple[Server, int], tmp_path: Path) -> None:
    srv, _ = loaded
    start = str((NOW - 6 * HOUR) / 1000)
    png = tmp_path / "heat.png"
    res = cli(
        "correlations",
        "cli_cause",
        "cli_effect",
        "--url",
        srv.url,
        "--start",
        start,
        "--max-lag",
        "10m",
        "--plot",
        str(png),
    )
    assert res.returncode == 0, res.stderr
    assert "1 of 1 pairs significant" in res.stdout and "+180 s" in res.stdout
    assert png.read_bytes().startswith(PNG)
    res = cli(
        "correlations", "cli_cause", "cli_effect", "--url", srv.url, "--start", start, "--json"
    )
    data = orjson.loads(res.stdout)
    assert data["leaders"][0]["labels"] == {"__name__": "cli_cause"}
    # an expression is named by itself (its labels, when it has any, come first)
    res = cli("correlations", "cli_cause * 2", "cli_effect", "--url", srv.url, "--start", start)
    assert res.returncode == 0, res.stderr
    assert "1 of 1 pairs significant" in res.stdout and "cli_cause * 2" in res.stdout


def test_root_cause_table_and_timeline(loaded: tuple[Server, int], tmp_path: Path) -> None:
    srv, at = loaded
    png = tmp_path / "timeline.png"
    res = cli(
        "root-cause",
        '{service=~".+"}',
        "--time",
        str(at / 1000),
        "--url",
        srv.url,
        "--limit",
        "5",
        "--plot",
        str(png),
    )
    assert res.returncode == 0, res.stderr
    assert "root-cause candidates" in res.stdout and "memory_bytes" in res.stdout
    assert png.read_bytes().startswith(PNG)
    table = res
    res = cli("root-cause", '{service=~".+"}', "--time", str(at / 1000), "--url", srv.url, "--json")
    causes = orjson.loads(res.stdout)["causes"]
    assert causes[0]["labels"]["__name__"] == "memory_bytes"
    # each explanation whole on its own line under the table (a sixth column folded them)
    assert f"1. {causes[0]['explanation']}\n" in table.stdout, table.stdout
    # no --time: what is happening now
    res = cli("root-cause", '{service=~".+"}', "--url", srv.url, "--json")
    assert res.returncode == 0, res.stderr
    asked = datetime.fromisoformat(orjson.loads(res.stdout)["time"]).timestamp()
    assert abs(asked - time.time()) < 300


def test_change_impact_and_recommend(loaded: tuple[Server, int]) -> None:
    srv, _at = loaded
    since = ("--change-time", str((NOW - HOUR) / 1000), "--after", "30m", "--url", srv.url)
    res = cli("change-impact", "cli_effect", *since)
    assert res.returncode == 0, res.stderr
    assert "impact of the change" in res.stdout
    # an expression's results have no name: a row is its labels, or (none) the expression
    res = cli("change-impact", "cli_effect * 2", *since)
    assert res.returncode == 0, res.stderr
    assert "│ cli_effect * 2 │" in res.stdout and "{}" not in res.stdout, res.stdout
    res = cli("recommend", "--url", srv.url, "--window", "1d", "--core-hour", "0.05")
    assert res.returncode == 0, res.stderr
    assert "recommendations over" in res.stdout
    res = cli("recommend", "--url", srv.url, "--kind", "astrology")
    assert res.returncode == 2 and "astrology" in res.stderr
    res = cli("root-cause", "x{", "--time", "0", "--url", srv.url)
    assert res.returncode == 2 and "selector" in res.stderr


def test_a_plot_names_series_by_what_tells_them_apart() -> None:
    from perfintel.cli_analyze import _told_apart

    rows = [
        {"__name__": "node_load1", "job": "node", "instance": "a:9100"},
        {"__name__": "node_load1", "job": "node", "instance": "b:9100"},
    ]
    assert _told_apart(rows) == (
        'node_load1{job="node"}',
        ['{instance="a:9100"}', '{instance="b:9100"}'],
    )
    # nothing left to tell one apart: every series by its full name
    same = [{"__name__": "up"}, {"__name__": "up", "job": "x"}]
    assert _told_apart(same) == ("", ["up", 'up{job="x"}'])
    assert _told_apart(rows[:1]) == ("", ['node_load1{job="node",instance="a:9100"}'])
