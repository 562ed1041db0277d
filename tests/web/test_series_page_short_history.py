"""End-to-end: the Series page of a series with little history says so: why one of five
minutes is not correlated with its neighbours (instead of "Nothing moved with this series",
which reads as an answer), and that a 6-hour forecast from under an hour is an
extrapolation."""

from __future__ import annotations

import re
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

MIN = 60_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (scripts/test does)")
    env = {"PERFINTEL_HOST_COLLECTOR__ENABLED": "false", "PERFINTEL_ANOMALY__ENABLED": "false"}
    srv = start_server(tmp_path_factory.mktemp("young") / "data", env=env)
    try:
        now = int(time.time() * 1000) // MIN * MIN
        rng = np.random.default_rng(3)
        young = np.arange(now - 4 * MIN, now + 1, MIN)  # five samples: a process just started
        old = np.arange(now - 50 * MIN, now + 1, MIN)
        body = {
            "series": [
                {
                    "metric": name,
                    "labels": {"instance": "app-1:8080", "job": "app"},
                    "samples": [[int(t), float(v)] for t, v in zip(ts, vals, strict=True)],
                }
                for name, ts, vals in (
                    ("app_young_gauge", young, rng.normal(5, 1, young.size)),
                    ("app_old_gauge", old, rng.normal(5, 1, old.size)),
                )
            ]
        }
        r = httpx.post(srv.url + "/api/v1/ingest", json=body, timeout=30)
        assert r.status_code == 200, r.text
        yield srv
    finally:
        srv.stop()


def test_a_series_of_five_minutes_says_why_it_is_not_correlated(
    server: Server, browser: Browser
) -> None:
    s = 'app_young_gauge{instance="app-1:8080"}'
    page = _open(browser, f"{server.url}/series?s={s}&from=now-1h", DESKTOP)
    empty = page.locator("#correlated-empty")
    empty.wait_for(timeout=60_000)
    assert empty.inner_text() == (
        "This series cannot be correlated: only 5 points in the range (at least 8 needed)."
    )
    page.close()


def test_a_forecast_from_under_an_hour_says_it_is_an_extrapolation(
    server: Server, browser: Browser
) -> None:
    s = 'app_old_gauge{instance="app-1:8080"}'
    page = _open(browser, f"{server.url}/series?s={s}&from=now-1h", DESKTOP)
    note = page.locator("#forecast-note")
    page.wait_for_function("document.querySelector('#forecast-note').textContent.length > 0")
    text = note.inner_text()
    assert text.startswith("Model: "), text
    assert re.search(r"Fitted on only 5[01] min of history: 6 h ahead is further than", text), text
    page.close()
