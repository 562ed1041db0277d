"""End-to-end: the Overview of a fresh server says why no anomaly is listed yet.

A new user's first minutes: a server with ten minutes of a new host's series at 15 s
(ordinary noise, a gauge at 0 that then moves). The detector scores a series once its
history spans an hour, so nothing is listed, and the page says so with the time the
first series gets scores instead of an empty "No anomalies" (or, before the warm-up
existed, ten "low" anomalies of ordinary fluctuations).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser

from tests.conftest import Server, start_server
from tests.web.conftest import CHROMIUM
from tests.web.test_browser import DESKTOP, _open

STEP = 15_000


def _ingest_new_host(server: Server) -> int:
    """Ten minutes of a new host's series at 15 s; returns the first timestamp."""
    now = int(time.time() * 1000) // STEP * STEP
    ts = np.arange(now - 10 * 60_000, now + 1, STEP)
    rng = np.random.default_rng(5)
    labels = {"instance": "new-host:9100", "job": "node"}
    huge = np.where(ts >= now - 7 * 60_000, 2.0e6, 0.0)  # 0 for 3 minutes, then 2 MB
    series = [
        ("node_memory_Active_bytes", 4.0e9 + rng.normal(0, 2e7, ts.size)),
        ("node_filesystem_avail_bytes", 5.0e10 - 1e5 * np.arange(ts.size)),
        ("node_memory_FileHugePages_bytes", huge),
    ]
    body = {
        "series": [
            {
                "metric": name,
                "labels": labels,
                "samples": [[int(t), float(v)] for t, v in zip(ts, values, strict=True)],
            }
            for name, values in series
        ]
    }
    r = httpx.post(server.url + "/api/v1/ingest", json=body)
    assert r.status_code == 200, r.text
    return int(ts[0])


@pytest.fixture(scope="module")
def fresh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int]]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (scripts/test does)")
    env = {
        "PERFINTEL_HOST_COLLECTOR__ENABLED": "false",
        "PERFINTEL_DASHBOARD__REFRESH_INTERVAL": "1",
        "PERFINTEL_DASHBOARD__ANOMALY_INTERVAL": "1",
    }
    server = start_server(tmp_path_factory.mktemp("fresh") / "data", env=env)
    try:
        first = _ingest_new_host(server)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            d = httpx.get(server.url + "/api/v1/performance/dashboard/realtime").json()["data"]
            if d["anomaly_warmup"]["series"] == 3:
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"the overview never read the scores: {d}")
        yield server, first
    finally:
        server.stop()


def test_the_overview_says_anomaly_scores_start_after_an_hour(
    fresh_server: tuple[Server, int], browser: Browser
) -> None:
    server, first = fresh_server
    d = httpx.get(server.url + "/api/v1/performance/dashboard/realtime").json()["data"]
    assert d["anomalies"] == []
    assert d["anomaly_warmup"] == {
        "seconds": 3600.0,
        "series": 3,
        "warming": 3,
        "first_ready": first + 3_600_000,
    }
    page = _open(browser, server.url + "/", DESKTOP)
    note = page.locator("#anomaly-warmup")
    note.wait_for(timeout=30_000)
    text = note.inner_text()
    assert text.startswith("Anomaly scores start once a series has 1 h of history: ")
    assert "the first of these 3 series at " in text
    assert page.locator(".anomaly-list li").count() == 0
    assert "No anomalies in this window." not in page.locator("#overview").inner_text()
    page.close()
