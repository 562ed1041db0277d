"""Helpers shared by the multi-process scale-out tests (real ``perfintel serve`` processes)."""

from __future__ import annotations

import asyncio
import time

import sqlalchemy as sa

from perfintel.alerting.state.leases import LeaseManager
from perfintel.bus.redis_streams import RedisBus
from tests.bus.conftest import REDIS_URL

#: headers of a Prometheus remote_write request
WRITE = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}


def bus_env(prefix: str, database_url: str, shards: int) -> dict[str, str]:
    """The settings every process of one deployment shares: the bus and the state database.
    Short lease TTL and checkpoint interval, so a killed process is replaced within seconds."""
    return {
        "PERFINTEL_BUS__REDIS_URL": REDIS_URL,
        "PERFINTEL_BUS__STREAM_PREFIX": prefix,
        "PERFINTEL_BUS__SHARDS": str(shards),
        "PERFINTEL_BUS__LEASE_TTL": "2s",
        "PERFINTEL_BUS__CHECKPOINT_INTERVAL": "1s",
        "PERFINTEL_ALERTING__DATABASE_URL": database_url,
    }


def vm_store_env(vm_url: str, namespace: str) -> dict[str, str]:
    """The environment that puts a process's samples in the VictoriaMetrics at ``vm_url``,
    each test's own under the extra label ``pi_test=<namespace>``."""
    return {
        "PERFINTEL_STORAGE__BACKEND": "victoriametrics",
        "PERFINTEL_STORAGE__REMOTE__WRITE_URL": vm_url + "/api/v1/write",
        "PERFINTEL_STORAGE__REMOTE__READ_URL": vm_url,
        "PERFINTEL_STORAGE__REMOTE__FLUSH_URL": vm_url + "/internal/force_flush",
        "PERFINTEL_STORAGE__REMOTE__NAMESPACE": f"pi_test={namespace}",
    }


#: the ``alertmanager.yml`` of the multi-process tests: every alert to one webhook
WEBHOOK_AM_YML = """\
route:
  receiver: team
  group_by: [alertname]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: team
    webhook_configs: [{{url: '{url}/team'}}]
"""


def live_leases(database_url: str, prefix: str, *, numbered: bool = False) -> dict[str, str]:
    """Unexpired leases whose name starts with ``prefix``: name -> holder
    (``host:port:pid:role``); ``numbered``: only ``<prefix><n>`` (shards, not members)."""
    engine = sa.create_engine(database_url)
    try:
        live = LeaseManager(engine, "tests", 1.0).live(prefix)
    finally:
        engine.dispose()
    return {
        name: lease.holder
        for name, lease in live.items()
        if not numbered or name[len(prefix) :].isdigit()
    }


def shard_holders(database_url: str) -> dict[str, str]:
    """Live bus shard leases: lease name -> holder."""
    return live_leases(database_url, "bus:workers:", numbered=True)


def wait_for_holders(database_url: str, shards: int, holders: int, timeout_s: float) -> None:
    """Wait until every shard is leased and by exactly ``holders`` distinct workers."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = shard_holders(database_url)
        if len(now) == shards and len(set(now.values())) == holders:
            return
        time.sleep(0.2)
    raise AssertionError(f"shard leases never settled on {holders}: {shard_holders(database_url)}")


def behind(prefix: str, shards: int) -> int:
    """Bus entries not yet acknowledged by the workers, over every shard."""

    async def run() -> int:
        bus = RedisBus(REDIS_URL, prefix, shards)
        try:
            return sum(b.behind for b in await bus.backlog("workers"))
        finally:
            await bus.close()

    return asyncio.run(run())


def wait_drained(prefix: str, shards: int, database_url: str, timeout_s: float) -> None:
    """Wait until the workers acknowledged every entry and one worker holds every shard."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and (
        behind(prefix, shards) or len(set(shard_holders(database_url).values())) != 1
    ):
        time.sleep(0.3)
    assert behind(prefix, shards) == 0
