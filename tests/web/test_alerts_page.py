"""End-to-end: the alerts and incidents page in Debian's headless chromium, on real alerts.

One server with a threshold rule, an ``alertmanager.yml`` routing to a real
local webhook and an escalation policy. Samples ingested over HTTP make the
rule fire; the rule engine sends the alert to the notification pipeline,
which opens an incident, notifies the webhook and escalates. The browser then
sees the alert and the incident (with its timeline and escalation level),
acknowledges the incident and silences the alert through the page, and the
APIs confirm both; a second alert appears on the open page without a reload
(the stream's alerts topic). Phone layout, axe-core and screenshots as for the
other pages (``tests/web/test_browser.py``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page

from tests.alerting.notify_helpers import HttpReceiver, wait_for
from tests.conftest import Server, start_server
from tests.web.conftest import CHROMIUM
from tests.web.test_browser import (
    ARTIFACTS,
    DESKTOP,
    PHONE,
    _axe,
    _no_horizontal_scroll,
)

RULES = """
groups:
  - name: web
    interval: 1s
    rules:
      - alert: HighLoad
        expr: node_load1 > 4
        labels: {severity: critical}
        annotations:
          summary: "load {{ $value }} on {{ $labels.instance }}"
"""

AM_YML = """\
route:
  receiver: team
  group_by: [alertname, instance]
  group_wait: 1s
  group_interval: 2s
receivers:
  - name: team
    webhook_configs: [{{url: '{url}/team'}}]
"""


@pytest.fixture(scope="module")
def hook() -> Iterator[HttpReceiver]:
    h = HttpReceiver()
    yield h
    h.close()


@pytest.fixture(scope="module")
def alert_server(tmp_path_factory: pytest.TempPathFactory, hook: HttpReceiver) -> Iterator[Server]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (scripts/test does)")
    tmp = tmp_path_factory.mktemp("alerts-page")
    rules, am = tmp / "rules.yml", tmp / "alertmanager.yml"
    rules.write_text(RULES)
    am.write_text(AM_YML.format(url=hook.url))
    env = {
        "PERFINTEL_ALERTING__RULE_FILES": str(rules),
        "PERFINTEL_ALERTING__ALERTMANAGER_CONFIG": str(am),
        "PERFINTEL_HOST_COLLECTOR__ENABLED": "false",
        "PERFINTEL_ANOMALY__ENABLED": "false",
        "PERFINTEL_DASHBOARD__REFRESH_INTERVAL": "1",
    }
    server = start_server(tmp / "data", env=env)
    try:
        # two levels: the first at once, the second 3 s later unless acknowledged
        r = httpx.put(
            server.url + "/api/v1/alerting/escalation-policies/oncall",
            json={
                "matchers": ['severity="critical"'],
                "levels": [
                    {"delay": "0s", "receivers": ["team"]},
                    {"delay": "3s", "receivers": ["team"]},
                ],
            },
            timeout=10,
        )
        assert r.status_code == 200, r.text
        yield server
    finally:
        server.stop()


def _load(server: Server, instance: str, value: float) -> None:
    now_ms = int(time.time() * 1000)
    samples = [[now_ms - 60_000 * k, value] for k in range(5, -1, -1)]
    body = {
        "series": [
            {
                "metric": "node_load1",
                "labels": {"instance": instance, "service": "web"},
                "samples": samples,
            }
        ]
    }
    r = httpx.post(server.url + "/api/v1/ingest", json=body, timeout=30)
    assert r.status_code == 200, r.text


def _firing(server: Server, instance: str) -> dict | None:
    for a in httpx.get(server.url + "/api/v2/alerts", timeout=5).json():
        if a["labels"].get("instance") == instance and a["incident"]:
            return a
    return None


def _open(
    browser: Browser, url: str, viewport: dict[str, int], color_scheme: str = "light"
) -> Page:
    page = browser.new_page(viewport=viewport, color_scheme=color_scheme)  # type: ignore[arg-type]
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_selector("#alerts-page[data-loaded='1']", timeout=30_000)
    assert errors == [], errors
    return page


def test_fire_acknowledge_and_silence_through_the_page(
    alert_server: Server, browser: Browser, hook: HttpReceiver
) -> None:
    url = alert_server.url
    _load(alert_server, "web-1:9100", 7.5)
    wait_for(lambda: _firing(alert_server, "web-1:9100") is not None, 60, "HighLoad fired")
    alert = _firing(alert_server, "web-1:9100")
    assert alert is not None
    incident_id = alert["incident"]

    def escalated() -> bool:
        inc = httpx.get(f"{url}/api/v1/incidents/{incident_id}", timeout=5).json()["data"]
        kinds = {t["kind"] for t in inc["timeline"]}
        return (
            inc["escalation"] is not None
            and inc["escalation"]["level"] >= 1
            and ("notified" in kinds)
        )

    wait_for(escalated, 30, "the incident notified and escalated to L1")

    page = _open(browser, url + "/alerts", DESKTOP)
    page.evaluate("window.__sameDocument = true")  # gone if the page ever reloads
    row = page.locator(f"#alerts-table tr[data-fingerprint='{alert['fingerprint']}']")
    assert "HighLoad" in row.inner_text() and "critical" in row.inner_text()
    inc_row = page.locator(f"#incidents-table tr[data-id='{incident_id}']")
    assert inc_row.get_attribute("data-state") == "open"
    assert "L1" in inc_row.inner_text() or "L2" in inc_row.inner_text()
    assert page.inner_text("#count-firing") == "1"

    # the incident's timeline: the alert joining, a notification, the escalation
    inc_row.locator("a").click()
    page.wait_for_selector("#incident-detail:not([hidden]) #incident-timeline li")
    assert page.url.endswith(f"/incidents/{incident_id}")
    kinds = page.eval_on_selector_all(
        "#incident-timeline li", "els => els.map(e => e.dataset.kind)"
    )
    assert {"alert", "notified", "escalated"} <= set(kinds), kinds

    # acknowledge with the keyboard: focus the button, press Enter
    button = inc_row.locator("button[data-action='ack']")
    button.focus()
    page.keyboard.press("Enter")
    page.wait_for_selector(
        f"#incidents-table tr[data-id='{incident_id}'][data-state='acknowledged']"
    )
    inc = httpx.get(f"{url}/api/v1/incidents/{incident_id}", timeout=5).json()["data"]
    assert inc["state"] == "acknowledged" and inc["acknowledgedBy"] == "dashboard"
    page.wait_for_function(
        "[...document.querySelectorAll('#incident-timeline li')]"
        ".some(l => l.dataset.kind === 'acknowledged')"
    )

    # silence the alert by its labels for 4 hours
    row.locator("button[data-action='silence']").click()
    page.wait_for_selector("#silence-dialog[open]")
    boxes = page.locator("#silence-dialog input[name=matcher]")
    assert boxes.count() == len(alert["labels"])
    page.select_option("#silence-duration", "4h")
    page.fill("#silence-comment", "load test in progress")
    t0 = time.time()
    page.click("#silence-submit")
    page.wait_for_selector("#silences-table tr[data-state='active']")
    silences = [
        s
        for s in httpx.get(url + "/api/v2/silences", timeout=5).json()
        if s["status"]["state"] == "active"
    ]
    assert len(silences) == 1
    s = silences[0]
    assert {m["name"]: m["value"] for m in s["matchers"]} == alert["labels"]
    assert s["comment"] == "load test in progress"
    ends = time.mktime(time.strptime(s["endsAt"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert abs(ends - (t0 + 4 * 3600)) < 120
    page.wait_for_selector(
        f"#alerts-table tr[data-fingerprint='{alert['fingerprint']}'][data-state='silenced']"
    )

    # a second alert fires while the page is open: it appears without a reload
    live_before = int(page.eval_on_selector("#alerts-page", "e => +(e.dataset.live || 0)"))
    _load(alert_server, "web-2:9100", 9.0)
    page.wait_for_function(
        "[...document.querySelectorAll('#alerts-table tr[data-fingerprint]')]"
        ".some(r => r.textContent.includes('web-2'))",
        timeout=60_000,
    )
    assert page.evaluate("window.__sameDocument") is True
    assert int(page.eval_on_selector("#alerts-page", "e => +e.dataset.live")) > live_before

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")  # the sticky header at the top of the picture
    page.screenshot(path=str(ARTIFACTS / "alerts-desktop.png"), full_page=True)
    violations = _axe(page)
    assert violations == [], f"alerts (desktop): {violations}"
    # the silence dialog open, checked too
    page.locator(
        "#alerts-table tr[data-state='firing'] button[data-action='silence']"
    ).first.click()
    page.wait_for_selector("#silence-dialog[open]")
    assert _axe(page) == []
    page.keyboard.press("Escape")
    page.wait_for_function("!document.querySelector('#silence-dialog').open")
    assert page.evaluate("document.activeElement.dataset.action") == "silence"  # focus returned
    page.click("text=Include resolved")
    page.wait_for_function("location.search.includes('resolved=1')")
    page.wait_for_selector(f"#incidents-table tr[data-id='{incident_id}']")
    page.close()

    # the incident link of notifications opens the page on that incident (dark theme here)
    phone = _open(browser, f"{url}/incidents/{incident_id}", PHONE, color_scheme="dark")
    # the dark palette of app.css (--bg: #0f1419)
    assert phone.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(15, 20, 25)"
    phone.wait_for_selector("#incident-detail:not([hidden]) #incident-timeline li")
    _no_horizontal_scroll(phone)
    phone.evaluate("window.scrollTo(0, 0)")
    phone.screenshot(path=str(ARTIFACTS / "alerts-phone-dark.png"), full_page=True)
    violations = _axe(phone)
    assert violations == [], f"alerts (phone, dark): {violations}"
    phone.close()

    # the overview lists them too (dashboard/realtime's alerts)
    over = browser.new_page(viewport=DESKTOP)  # type: ignore[arg-type]
    over.goto(url + "/")
    over.wait_for_selector("#alerts-panel")
    assert "HighLoad" in over.inner_text("#alerts-panel")
    over.close()
