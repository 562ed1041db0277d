"""SIGKILL mid-escalation: after the restart no notification is lost, repeats keep their key."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import httpx
from notify_helpers import HttpReceiver, wait_for

from tests.conftest import start_server

AM_YML = """\
route:
  receiver: team
  group_by: [alertname]
  group_wait: 1s
  group_interval: 2s
receivers:
  - name: team
    webhook_configs: [{{url: '{url}/team'}}]
  - name: l1
    webhook_configs: [{{url: '{url}/l1'}}]
  - name: l2
    webhook_configs: [{{url: '{url}/l2'}}]
  - name: l3
    webhook_configs: [{{url: '{url}/l3'}}]
"""
EXTENSIONS = """\
escalation_policies:
  - name: critical
    matchers: ['severity="critical"']
    levels:
      - {delay: 0s, receivers: [l1]}
      - {delay: 3s, receivers: [l2]}
      - {delay: 4s, receivers: [l3]}
"""


def test_sigkill_mid_escalation_loses_nothing_and_repeats_carry_the_same_key(
    tmp_path: Path,
) -> None:
    hook = HttpReceiver()
    cfg, ext = tmp_path / "alertmanager.yml", tmp_path / "perfintel.yml"
    cfg.write_text(AM_YML.format(url=hook.url))
    ext.write_text(EXTENSIONS)
    env = {
        "PERFINTEL_ALERTING__ALERTMANAGER_CONFIG": str(cfg),
        "PERFINTEL_ALERTING__NOTIFY_EXTENSIONS": str(ext),
        "PERFINTEL_HOST_COLLECTOR__ENABLED": "false",
        "PERFINTEL_ANOMALY__ENABLED": "false",
    }
    # L2's receiver is down for a while: its notification sits in the outbox, retried with backoff
    hook.by_path["/l2"] = [503] * 3
    server = start_server(tmp_path / "data", env=env)
    try:
        alert = [
            {
                "labels": {"alertname": "Outage", "service": "shop", "severity": "critical"},
                "endsAt": "2099-01-01T00:00:00Z",
            }
        ]
        assert httpx.post(server.url + "/api/v2/alerts", json=alert).status_code == 200
        wait_for(lambda: "/l2" in hook.paths(), 20, "L2's first (failing) attempt")
        assert "/l3" not in hook.paths()
        server.kill9()  # mid-escalation: L2 undelivered, L3 not yet due
        time.sleep(1)
        server = start_server(tmp_path / "data", env=env)
        wait_for(
            lambda: any(r.path == "/l2" and r.status == 200 for r in hook.requests),
            40,
            "L2 delivered after the restart",
        )
        wait_for(
            lambda: any(r.path == "/l3" and r.status == 200 for r in hook.requests),
            20,
            "L3 after the restart",
        )
        time.sleep(3)  # nothing else should come
    finally:
        server.stop()
        hook.close()
    delivered: dict[str, set[str]] = defaultdict(set)
    attempts: dict[str, set[str]] = defaultdict(set)
    for r in hook.requests:
        attempts[r.path].add(r.headers["idempotency-key"])
        if r.status == 200:
            delivered[r.path].add(r.headers["idempotency-key"])
    assert set(delivered) == {"/team", "/l1", "/l2", "/l3"}, hook.paths()
    # every level was delivered exactly once (one key), and every repeat of it used that key
    for path in ("/team", "/l1", "/l2", "/l3"):
        assert len(attempts[path]) == 1, (path, attempts[path])
    body = next(r.json() for r in hook.requests if r.path == "/l3")
    assert body["incident"]["level"] == 3 and body["notification_reason"] == "escalation"
