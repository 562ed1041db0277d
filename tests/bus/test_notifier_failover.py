"""The notifier lease across process deaths: real ``perfintel serve --role api`` processes on
one PostgreSQL database and one VictoriaMetrics, each evaluating the same alerting rule;
only the holder of the ``notifier`` lease delivers.

1. The holder (as the ``leases`` table says) is SIGKILLed while the alert is *pending*
   (nothing sent yet): the other process takes the lease once it expires and delivers the
   firing notification.
2. A third process starts; the holder is SIGKILLed while the alert is *firing* and its
   notification delivered: the survivor takes over from the state in PostgreSQL.

Across both deaths the webhook receiver gets the firing notification once, or repeats
carrying the same idempotency key; never a second notification under another key.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import numpy as np

from perfintel.batch import SampleBatch
from perfintel.ingest.remote_write import encode_remote_write
from perfintel.model import label_set
from tests.alerting.notify_helpers import HttpReceiver
from tests.bus.multiprocess import WEBHOOK_AM_YML, WRITE, bus_env, live_leases, vm_store_env
from tests.conftest import Server, start_server

# ``for: 4s``: the alert is pending for two evaluations before it fires
RULES = """
groups:
  - name: failover
    interval: 1s
    rules:
      - alert: QueueBacklog
        expr: max_over_time(queue_depth[20m]) > 100
        for: 4s
        labels: {severity: page}
"""


def _holder(database_url: str, servers: list[Server]) -> Server | None:
    """The process holding the live ``notifier`` lease (by the port in its holder id)."""
    holder = live_leases(database_url, "notifier").get("notifier")
    return next((s for s in servers if holder and f":{s.port}:" in holder), None)


def _says_it_holds(s: Server) -> bool:
    text = httpx.get(s.url + "/metrics", timeout=5).text
    return "perfintel_notifier_lease_held 1" in text


def _alert_state(s: Server) -> str | None:
    alerts = httpx.get(s.url + "/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return alerts[0]["state"] if alerts else None


def _wait(what: str, cond: object, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.1)


def _firing(hook: HttpReceiver) -> list[str]:
    """The idempotency key of every firing notification received so far."""
    return [
        r.headers.get("idempotency-key", "")
        for r in hook.requests
        if r.path == "/team" and b'"firing"' in r.body
    ]


def test_notifier_dies_while_pending_and_while_firing(
    tmp_path: Path, redis_prefix: str, postgres_url: str, victoria_metrics: str
) -> None:
    ns = f"nf-{uuid.uuid4().hex[:12]}"
    hook = HttpReceiver()
    rules, am = tmp_path / "rules.yml", tmp_path / "alertmanager.yml"
    rules.write_text(RULES)
    am.write_text(WEBHOOK_AM_YML.format(url=hook.url))
    env = {
        **bus_env(redis_prefix, postgres_url, 1),  # lease TTL 2 s
        "PERFINTEL_ROLE": "api",
        **vm_store_env(victoria_metrics, ns),
        "PERFINTEL_ALERTING__RULE_FILES": str(rules),
        "PERFINTEL_ALERTING__ALERTMANAGER_CONFIG": str(am),
    }
    servers: list[Server] = []
    alive: list[Server] = []
    try:
        for i in range(2):
            servers.append(start_server(tmp_path / f"api{i}", env=env))
        alive = list(servers)
        _wait("one process holds the notifier lease", lambda: _holder(postgres_url, alive))

        # a backlog, minutes back (VictoriaMetrics hides the last 30 s from queries at "now")
        now_ms = int(time.time() * 1000)
        ts = now_ms - 60_000 - np.arange(0, 300_000, 15_000, dtype=np.int64)[::-1]
        batch = SampleBatch(
            [label_set({"__name__": "queue_depth", "queue": "orders", "pi_test": ns})],
            np.zeros(len(ts), np.int32),
            ts,
            np.linspace(10, 500, len(ts)),
        )
        r = httpx.post(
            victoria_metrics + "/api/v1/write", content=encode_remote_write(batch), headers=WRITE
        )
        assert r.status_code // 100 == 2, r.text
        httpx.get(victoria_metrics + "/internal/force_flush", timeout=30).raise_for_status()

        # 1. the holder dies while the alert is pending: nothing has been sent
        _wait("the alert is pending", lambda: all(_alert_state(s) == "pending" for s in alive))
        holder = _holder(postgres_url, alive)
        assert holder is not None
        holder.kill9()
        alive.remove(holder)
        assert _firing(hook) == []
        _wait("the survivor takes the lease", lambda: _holder(postgres_url, alive) is alive[0])
        _wait("the firing notification arrives", lambda: len(_firing(hook)) >= 1)
        assert _says_it_holds(alive[0])
        assert _alert_state(alive[0]) == "firing"

        # 2. the holder dies while the alert is firing and notified
        servers.append(start_server(tmp_path / "api2", env=env))
        alive.append(servers[-1])
        _wait(
            "every process has the alert firing",
            lambda: all(_alert_state(s) == "firing" for s in alive),
        )
        holder = _holder(postgres_url, alive)
        assert holder is not None
        holder.kill9()
        alive.remove(holder)
        _wait("the survivor takes the lease", lambda: _holder(postgres_url, alive) is alive[0])
        assert _says_it_holds(alive[0])
        time.sleep(6)  # three group intervals: a repeat would have been sent by now
        keys = _firing(hook)
        assert keys and keys[0], keys
        assert set(keys) == {keys[0]}, keys  # once, or repeats under the same key
        print(f"\n{len(keys)} firing notification(s), key {keys[0]}")
    finally:
        for s in servers:
            s.stop()
        hook.close()
