"""End-to-end: Debian's headless chromium through every page of the dashboard.

One perfintel server process, fed with ``perfintel demo`` (one day), is shared
by the module. Each test drives a real browser (Playwright with
``executable_path``; no downloaded browser) and checks what a person would
see: charts drawn with data points (in the DOM and in the canvas pixels),
autocomplete offering the demo's metric names, a pushed sample on an open
chart within a second, shareable Explore URLs, no horizontal scroll on a
phone, and no serious or critical axe-core violations. Screenshots of every
page at desktop and phone sizes go to ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Browser, Page

from tests.conftest import ROOT, Server, start_server
from tests.web.conftest import CHROMIUM

ARTIFACTS = ROOT / "test-artifacts" / "screenshots"
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
PAGES = {
    "overview": "/",
    "explore": "/explore?q=node_load1&from=now-6h&to=now&forecast=1",
    "series": "/series?s="
    + quote(
        'node_filesystem_avail_bytes{instance="postgres-0:9100",mountpoint="/var/lib/postgresql"}'
    )
    + "&from=now-12h",
    "capacity": "/capacity",
    "alerts": "/alerts",  # nothing fires on the demo: the empty states (tests/web/test_alerts_page.py fires)
}


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (scripts/test does)")
    data = tmp_path_factory.mktemp("dashboard") / "data"
    env = {
        "PERFINTEL_DASHBOARD__REFRESH_INTERVAL": "2",
        "PERFINTEL_DASHBOARD__ANOMALY_INTERVAL": "3",
        "PERFINTEL_DASHBOARD__CAPACITY_INTERVAL": "5",
    }
    server = start_server(data, env=env)
    try:
        subprocess.run(
            [sys.executable, "-m", "perfintel", "demo", "--url", server.url, "--days", "1"],
            check=True,
            cwd=ROOT,
            capture_output=True,
            timeout=300,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            doc = httpx.get(
                server.url + "/api/v1/performance/dashboard/realtime", timeout=10
            ).json()
            d = doc["data"]
            if d["anomalies"] and d["capacity"] and d["refreshed"].get("capacity"):
                break
            time.sleep(1)
        else:
            pytest.fail(f"the overview never filled: {json.dumps(doc)[:2000]}")
        yield server
    finally:
        server.stop()


def _open(browser: Browser, url: str, viewport: dict[str, int]) -> Page:
    page = browser.new_page(viewport=viewport)  # type: ignore[arg-type]
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_selector("main[data-ready='1']", timeout=60_000)
    assert errors == [], errors
    return page


def _canvas_ink(page: Page, selector: str) -> int:
    """Pixels of the canvas under ``selector`` drawn in a series colour (not axes or grid)."""
    return int(
        page.evaluate(
            """(sel) => {
              const c = document.querySelector(sel + ' canvas');
              if (!c) return 0;
              const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
              let n = 0;
              for (let i = 0; i < d.length; i += 4) {
                const [r, g, b, a] = [d[i], d[i+1], d[i+2], d[i+3]];
                // saturated colour: the data lines, bands and markers (axes and grid are grey)
                if (a > 100 && Math.max(r, g, b) - Math.min(r, g, b) > 60) n++;
              }
              return n;
            }""",
            selector,
        )
    )


def _no_horizontal_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"horizontal scroll: content {width} px wide"


def _axe(page: Page) -> list[dict[str, object]]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"][:3]]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@pytest.mark.parametrize("name", list(PAGES))
def test_every_page_renders_data_on_desktop_and_phone(
    demo_server: Server, browser: Browser, name: str
) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page = _open(browser, demo_server.url + PAGES[name], viewport)
        # the header's live indicator on every page, also those that subscribe to nothing
        page.wait_for_selector("#live-status.on", timeout=30_000)
        if name == "overview":
            page.wait_for_selector(".spark canvas")
            counts = page.eval_on_selector_all(".spark", "els => els.map(e => +e.dataset.points)")
            assert counts and all(c > 5 for c in counts), counts
            assert page.locator("#h-services + ul li").count() >= 6  # the demo's six services
            assert page.locator("#h-capacity ~ div table tbody tr").count() >= 1
            assert _canvas_ink(page, ".spark") > 20
        elif name == "alerts":
            page.wait_for_selector("#alerts-page[data-loaded='1']")
            assert page.inner_text("#count-firing") == "0"
            assert "No incident is open." in page.inner_text("#alerts-page")
        else:
            chart = {"explore": "#explore-chart", "series": "#series-chart"}.get(
                name, "#capacity-chart"
            )
            page.wait_for_function(
                f"document.querySelector('{chart}').dataset.points > 10", timeout=60_000
            )
            assert _canvas_ink(page, chart) > 200
            if name == "explore":  # the forecast was asked for: drawn beside the data
                page.wait_for_function(
                    "document.querySelector('#explore-chart canvas') && "
                    "document.querySelector('#chart-title').textContent.includes('series')"
                )
            if name == "capacity":
                assert page.locator("#capacity-table tbody tr").count() >= 10
            if name == "series":  # its neighbours on the same host, from the correlation API
                page.wait_for_selector("#correlated-table tbody tr", timeout=60_000)
                note = page.inner_text("#correlated [role=status]")
                assert "series of instance postgres-0:9100" in note, note
                rows = page.locator("#correlated-table tbody tr").all_inner_texts()
                assert all("postgres-0:9100" in r for r in rows), rows
                # never the series itself
                assert not any('mountpoint="/var/lib/postgresql"' in r for r in rows), rows
                r = page.eval_on_selector_all(
                    "#correlated-table tbody td:nth-child(2)", "els => els.map(e => +e.textContent)"
                )
                assert len(r) == len(rows) and all(-1 <= x <= 1 for x in r), r
        if size == "phone":
            _no_horizontal_scroll(page)
        page.screenshot(path=str(ARTIFACTS / f"{name}-{size}.png"), full_page=True)
        violations = _axe(page)
        assert violations == [], f"{name} ({size}): {violations}"
        page.close()


def test_explore_autocomplete_offers_demo_metric_names(
    demo_server: Server, browser: Browser
) -> None:
    page = _open(browser, demo_server.url + "/explore", DESKTOP)
    box = page.locator("#query")
    box.click()
    box.type("http_req")
    page.wait_for_selector("#query-list li")
    offered = page.locator("#query-list li").all_inner_texts()
    assert any(t.startswith("http_requests_total") for t in offered), offered
    # label names inside braces, then label values
    box.fill("")
    box.type("node_load1{serv")
    page.wait_for_function(
        "[...document.querySelectorAll('#query-list li')].some(l => l.textContent.startsWith('service'))"
    )
    box.press("ArrowDown")
    box.press("Enter")
    box.type('="che')
    page.wait_for_function(
        "[...document.querySelectorAll('#query-list li')].some(l => l.textContent.startsWith('checkout'))"
    )
    page.close()


def test_explore_url_reproduces_the_view(demo_server: Server, browser: Browser) -> None:
    page = _open(browser, demo_server.url + "/explore", DESKTOP)
    page.fill("#query", 'node_load1{service="search"}')
    page.select_option("#range", "2d")
    page.wait_for_function("location.search.includes('now-2d')")
    page.fill("#query", 'node_load1{service="search"}')
    page.press("#query", "Control+Enter")
    page.wait_for_function("location.search.includes('search')")
    page.wait_for_function("document.querySelector('#explore-chart').dataset.points > 10")
    url = page.url
    title = page.inner_text("#chart-title")
    points = page.eval_on_selector("#explore-chart", "e => e.dataset.points")
    page.close()
    again = _open(browser, url, DESKTOP)
    again.wait_for_function("document.querySelector('#explore-chart').dataset.points > 10")
    assert again.input_value("#query") == 'node_load1{service="search"}'
    assert again.input_value("#from") == "now-2d"
    assert again.inner_text("#chart-title") == title == "2 series"
    # the range slides with "now", so the count may move by a step or two
    assert (
        abs(int(again.eval_on_selector("#explore-chart", "e => e.dataset.points")) - int(points))
        <= 4
    )
    again.close()


def test_a_sample_pushed_through_ingest_appears_on_an_open_chart_within_a_second(
    demo_server: Server, browser: Browser
) -> None:
    now_ms = int(time.time() * 1000)
    series = {"metric": "dashboard_probe", "labels": {"run": "live"}}
    first = [[now_ms - 60_000 * k, float(k)] for k in range(10, 0, -1)]
    r = httpx.post(
        demo_server.url + "/api/v1/ingest", json={"series": [{**series, "samples": first}]}
    )
    assert r.status_code == 200, r.text
    page = _open(
        browser,
        demo_server.url
        + "/explore?q="
        + quote('dashboard_probe{run="live"}')
        + "&from=now-15m&band=0",
        DESKTOP,
    )
    page.wait_for_function("document.querySelector('#explore-chart').dataset.points >= 10")
    page.wait_for_selector("#explore-chart[data-live]")  # subscribed to the stream
    before = int(page.eval_on_selector("#explore-chart", "e => e.dataset.live"))
    ink_before = _canvas_ink(page, "#explore-chart")
    t0 = time.monotonic()
    r = httpx.post(
        demo_server.url + "/api/v1/ingest",
        json={"series": [{**series, "samples": [[int(time.time() * 1000), 42.0]]}]},
    )
    assert r.status_code == 200, r.text
    page.wait_for_function(
        f"document.querySelector('#explore-chart').dataset.live > {before}", timeout=1000
    )
    elapsed = time.monotonic() - t0
    assert elapsed <= 1.0
    assert _canvas_ink(page, "#explore-chart") != ink_before  # redrawn with the new point
    page.close()


def test_the_token_dialog_asks_once_and_keeps_the_token(tmp_path: Path, browser: Browser) -> None:
    token = "dashboard-test-token-0123456789"
    config = tmp_path / "perfintel.yaml"
    config.write_text(
        f"auth:\n  tokens:\n    - token: {token}\n      scopes: [read, write]\n"
        "anomaly:\n  enabled: false\nhost_collector:\n  enabled: false\n"
    )
    server = start_server(tmp_path / "data", env={"PERFINTEL_CONFIG": str(config)})
    try:
        page = browser.new_page(viewport=DESKTOP)  # type: ignore[arg-type]
        page.goto(server.url + "/")
        page.wait_for_selector("#token-dialog[open]")
        page.fill("#token-input", token)
        page.press("#token-input", "Enter")
        page.wait_for_selector("#overview[data-loaded='1']")
        assert page.evaluate("sessionStorage.getItem('perfintel.token')") == token
        page.click("nav a[data-page='explore']")  # client-side navigation: no new prompt
        page.wait_for_selector("#query")
        assert not page.locator("#token-dialog[open]").count()
        page.close()
    finally:
        server.stop()


def test_docs_work_offline(demo_server: Server, browser: Browser) -> None:
    page = browser.new_page(viewport=DESKTOP)  # type: ignore[arg-type]
    outside: list[str] = []
    page.on(
        "request",
        lambda req: outside.append(req.url) if not req.url.startswith(demo_server.url) else None,
    )
    page.goto(demo_server.url + "/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=30_000)
    assert page.locator(".opblock").count() > 30
    assert outside == []
    page.close()


def test_readme_screenshots_exist() -> None:
    # The README shows these; they are refreshed from test-artifacts by hand (see docs/dashboard.md).
    readme = (ROOT / "README.md").read_text()
    for name in ("dashboard-overview.png", "dashboard-explore.png", "dashboard-phone.png"):
        assert f"docs/{name}" in readme
        assert (ROOT / "docs" / name).stat().st_size > 10_000
    assert shutil.which("chromium") or os.path.exists(CHROMIUM)


def _ingest_memory(server: Server, instance: str, ts: list[int], available: list[float]) -> None:
    """A node's available memory at ``ts`` beside a total of 25 GB, through the JSON ingest."""
    labels = {"instance": instance, "job": "node"}
    series = [
        {
            "metric": "node_memory_MemAvailable_bytes",
            "labels": labels,
            "samples": [[t, v] for t, v in zip(ts, available, strict=True)],
        },
        {
            "metric": "node_memory_MemTotal_bytes",
            "labels": labels,
            "samples": [[t, 25e9] for t in ts],
        },
    ]
    r = httpx.post(server.url + "/api/v1/ingest", json={"series": series})
    assert r.status_code == 200, r.text


def test_capacity_page_marks_a_projection_from_minutes_of_history(
    demo_server: Server, browser: Browser
) -> None:
    # A host that appeared ten minutes ago with memory rising as its processes start: listed
    # after the demo's hosts, its times marked, and the page says why they are not a plan.
    now_ms = int(time.time() * 1000)
    ts = [now_ms - 60_000 * k for k in range(10, -1, -1)]
    _ingest_memory(demo_server, "fresh:9100", ts, [24e9 - 1.2e9 * i for i in range(len(ts))])
    page = _open(browser, demo_server.url + "/capacity", DESKTOP)
    rows = page.locator("#capacity-table tbody tr")
    texts = [rows.nth(i).inner_text() for i in range(rows.count())]
    marked = [
        i for i in range(len(texts)) if rows.nth(i).locator("td[data-beyond-history]").count()
    ]
    (fresh,) = [i for i, t in enumerate(texts) if "fresh" in t]
    # the new host is marked, and marked rows come last (the server's own host, collected
    # since it started, may be one of them); the demo's day-old hosts are not marked
    assert fresh in marked and marked == list(range(len(texts) - len(marked), len(texts)))
    assert any("postgres-0" in texts[i] for i in range(len(texts)) if i not in marked)
    assert not any("postgres-0" in texts[i] for i in marked)
    cell = rows.nth(fresh).locator("td[data-beyond-history]").first
    assert cell.inner_text().endswith("*")
    assert "too little to plan on" in (cell.get_attribute("title") or "")
    assert "under half a day of history" in page.locator("#h-table ~ p[role=status]").inner_text()
    # its chart says the same under the drawing (a trend of minutes drawn over a month)
    rows.nth(fresh).locator("button").click()
    page.wait_for_function(
        "document.querySelector('#h-proj ~ p[role=status]').textContent.includes('fresh')",
        timeout=60_000,
    )
    note = page.inner_text("#h-proj ~ p[role=status]")
    assert "Drawn from only" in note and "too little to plan on" in note, note
    page.close()


def test_capacity_chart_draws_the_plans_projection_up_to_the_capacity(
    demo_server: Server, browser: Browser
) -> None:
    # A host whose memory fills within a day: the table says so, and the chart under it draws
    # the same model's projection, whose P50 reaches the capacity line (the forecaster's three
    # days, drawn before, had nothing to do with the table's numbers).
    now_ms = int(time.time() * 1000)
    ts = [now_ms - 60_000 * k for k in range(24 * 60, -1, -1)]
    _ingest_memory(
        demo_server, "filling:9100", ts, [20e9 - 1e10 * i / len(ts) for i in range(len(ts))]
    )
    page = _open(browser, demo_server.url + "/capacity", DESKTOP)
    row = page.locator("#capacity-table tbody tr", has_text="filling")
    p50_cell = row.locator("td").nth(4).inner_text()
    assert p50_cell.endswith(" h") or p50_cell.endswith(" d"), p50_cell  # full within the horizon
    row.locator("button").click()
    page.wait_for_function(
        "document.querySelector('#h-proj ~ p[role=status]').textContent.includes('filling')"
        " && document.querySelector('#capacity-chart').dataset.projection",
        timeout=60_000,
    )
    drawn = json.loads(page.get_attribute("#capacity-chart", "data-projection") or "{}")
    assert drawn["capacity"] == 25e9
    assert 10 <= len(drawn["x"]) <= 300
    assert max(drawn["p50"]) >= drawn["capacity"]  # the drawn P50 reaches the capacity line
    assert drawn["x"][0] >= now_ms / 1000 - 600  # the future, after the history
    note = page.inner_text("#h-proj ~ p[role=status]")
    assert "capacity model's own projection" in note and "P10–P90" in note, note
    assert _canvas_ink(page, "#capacity-chart") > 200
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.locator("#capacity-chart").screenshot(path=str(ARTIFACTS / "capacity-projection.png"))
    page.close()
