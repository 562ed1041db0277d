"""The whole alerting path in one real server: samples in, rules evaluated, a notification out.

A threshold rule and a predictive rule (``threshold_approaching``) read samples
ingested over HTTP; the rule engine sends their alerts to the notification
pipeline, which routes them by ``alertmanager.yml`` to a real local webhook
receiver. The predictive alert arrives with its expected crossing time.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np

from tests.alerting.notify_helpers import HttpReceiver, wait_for
from tests.conftest import start_alerting_server

RULES = """
groups:
  - name: host
    interval: 1s
    rules:
      - alert: HighLoad
        expr: node_load1 > 4
        labels: {severity: warning}
        annotations:
          summary: "load {{ $value }} on {{ $labels.instance }}"
      - alert: DiskFillingUp
        kind: threshold_approaching
        expr: disk_used_percent
        threshold: 95
        within: 6h
        step: 5m
        history: 2d
        labels: {severity: page}
"""

AM_YML = """\
route:
  receiver: team
  group_by: [alertname]
  group_wait: 1s
  group_interval: 2s
receivers:
  - name: team
    webhook_configs: [{{url: '{url}/team'}}]
"""


def _series(name: str, labels: dict[str, str], ts: np.ndarray, values: np.ndarray) -> dict:
    return {
        "metric": name,
        "labels": labels,
        "samples": [[int(t), float(v)] for t, v in zip(ts, values, strict=True)],
    }


def test_rules_fire_through_the_pipeline_to_a_webhook(tmp_path: Path) -> None:
    hook = HttpReceiver()
    server = start_alerting_server(tmp_path, RULES, AM_YML.format(url=hook.url))
    try:
        now_ms = int(time.time() * 1000) // 60_000 * 60_000
        # two days of a disk filling steadily from 40 % to 90 %: 95 % is ~4 h away
        ts = np.arange(now_ms - 2 * 86_400_000, now_ms + 1, 300_000)
        used = 40 + 50 * (ts - ts[0]) / (ts[-1] - ts[0])
        used = used + np.random.default_rng(7).normal(0, 0.1, len(ts))
        load_ts = np.arange(now_ms - 600_000, now_ms + 1, 60_000)
        body = {
            "series": [
                _series("disk_used_percent", {"instance": "db-1"}, ts, used),
                _series("node_load1", {"instance": "web-1"}, load_ts, np.full(len(load_ts), 7.5)),
            ]
        }
        r = httpx.post(server.url + "/api/v1/ingest", json=body, timeout=30)
        assert r.status_code in (200, 204), r.text

        def received(name: str) -> dict | None:
            for req in hook.requests:
                for a in req.json()["alerts"]:
                    if a["labels"].get("alertname") == name and a["status"] == "firing":
                        return a
            return None

        wait_for(lambda: received("HighLoad") is not None, 60, "HighLoad notified")
        wait_for(lambda: received("DiskFillingUp") is not None, 120, "DiskFillingUp notified")
        load = received("HighLoad")
        disk = received("DiskFillingUp")
        assert load is not None and disk is not None
        assert load["labels"]["instance"] == "web-1"
        assert load["annotations"]["summary"] == "load 7.5 on web-1"
        assert disk["labels"]["instance"] == "db-1" and disk["labels"]["severity"] == "page"
        # a predictive alert says when the crossing is expected and how sure it is
        assert disk["annotations"].get("prediction"), disk["annotations"]
        assert disk["annotations"].get("confidence"), disk["annotations"]
        # the rule engine's alerts are the pipeline's: listed by both APIs
        names = {
            a["labels"]["alertname"]
            for a in httpx.get(server.url + "/api/v2/alerts", timeout=5).json()
        }
        assert {"HighLoad", "DiskFillingUp"} <= names
    finally:
        server.stop()
        hook.close()
