"""A real server: firing alerts survive kill -9 without re-firing; SIGHUP reloads (or refuses)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx

from tests.conftest import Server, start_server

RULES = """
groups:
  - name: always
    interval: 1s
    rules:
      - alert: AlwaysFiring
        expr: vector(1) > 0
        for: 3s
        labels: {severity: page}
"""


def _alerts(srv: Server) -> list[dict[str, object]]:
    r = httpx.get(srv.url + "/api/v1/alerts", timeout=5)
    assert r.status_code == 200, r.text
    return r.json()["data"]["alerts"]  # type: ignore[no-any-return]


def _wait(srv: Server, cond: object, timeout: float = 30) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = _alerts(srv)
        if cond(got):  # type: ignore[operator]
            return got
        time.sleep(0.2)
    raise AssertionError(f"condition not met; last: {got}")


def _names(srv: Server) -> list[str]:
    data = httpx.get(srv.url + "/api/v1/rules", timeout=5).json()["data"]
    return [r["name"] for g in data["groups"] for r in g["rules"]]


def test_firing_alert_survives_kill_9_without_refiring(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES)
    env = {
        "PERFINTEL_ALERTING__RULE_FILES": str(rules),
        "PERFINTEL_HOST_COLLECTOR__ENABLED": "false",
    }
    srv = start_server(tmp_path / "data", env=env)
    try:
        firing = _wait(srv, lambda a: a and a[0]["state"] == "firing")
        active_at = firing[0]["activeAt"]
        time.sleep(1.5)  # at least one more evaluation after it fired (state saved)
    finally:
        srv.kill9()
    srv2 = start_server(tmp_path / "data", port=srv.port, env=env)
    try:
        seen = []
        deadline = time.monotonic() + 6  # several evaluations after the restart
        while time.monotonic() < deadline:
            seen.extend(_alerts(srv2))
            time.sleep(0.1)
        assert seen, "the restored alert is listed"
        assert {a["state"] for a in seen} == {"firing"}, "never pending again after a restart"
        assert {a["activeAt"] for a in seen} == {active_at}, "the same alert, not a new one"
    finally:
        srv2.stop()


def test_sighup_reloads_and_a_bad_file_is_refused(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES)
    env = {
        "PERFINTEL_ALERTING__RULE_FILES": str(rules),
        "PERFINTEL_HOST_COLLECTOR__ENABLED": "false",
    }
    srv = start_server(tmp_path / "data", env=env)
    try:
        assert _names(srv) == ["AlwaysFiring"]
        rules.write_text(RULES.replace("AlwaysFiring", "Renamed"))
        srv.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while _names(srv) != ["Renamed"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _names(srv) == ["Renamed"]
        rules.write_text("groups:\n  - name: x\n    rules:\n      - alert: Bad\n        expr: (\n")
        srv.proc.send_signal(signal.SIGHUP)
        time.sleep(2)
        assert _names(srv) == ["Renamed"], "the running rules stay"
        assert srv.proc.poll() is None
        assert f"{rules}:5: " in srv.log.read_text()  # refused with file, line and reason
        m = httpx.get(srv.url + "/metrics", timeout=5).text
        assert "perfintel_rule_config_last_reload_successful 0" in m
    finally:
        srv.stop()
