"""Rule shards across real processes: two ``perfintel serve --role api`` on one
VictoriaMetrics store (a namespace of their own), one PostgreSQL database and Redis.

While both run (a sample pushed to the store makes every alert pending), each rule group is evaluated by exactly one of them (their own rule
metrics say which) and every recorded sample is written once. Then the process holding
some of the groups is SIGKILLed: the survivor takes its shards over once their leases
expire, the alerts keep the ``for`` timers the dead process started (``activeAt``
unchanged; they fire ``for`` after it, not after the takeover), and each fires with one
webhook notification.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from perfintel.alerting.rules.shards import rule_shard
from tests.alerting.notify_helpers import HttpReceiver
from tests.bus.multiprocess import WEBHOOK_AM_YML, bus_env, live_leases, vm_store_env
from tests.conftest import Server, start_server

GROUPS = 6
RULE_SHARDS = 4
FOR_S = 20


def _group_names(path: Path) -> list[str]:
    """``GROUPS`` group names that put at least one group in every rule shard: a group's
    shard hashes its key (the file's path and its name), and the path is new every run,
    so plain names left a shard empty now and then (its holder evaluated nothing)."""
    names: list[str] = []
    empty = set(range(RULE_SHARDS))
    for n in range(10_000):
        shard = rule_shard(f"{path};g{n}", RULE_SHARDS)
        if shard in empty or len(names) < GROUPS - len(empty):
            names.append(f"g{n}")
            empty.discard(shard)
        if len(names) == GROUPS:
            return names
    raise AssertionError("no group names cover every shard")


def _rules(path: Path) -> str:
    lines = ["groups:"]
    for i, name in enumerate(_group_names(path)):
        lines += [
            f"  - name: {name}",
            "    interval: 1s",
            "    rules:",
            f"      - record: shardtest:g{i}",
            "        expr: vector(1)",
            f"      - alert: Held{i}",
            "        expr: shardtest_trigger > 0",
            f"        for: {FOR_S}s",
        ]
    return "\n".join(lines) + "\n"


def _holders(url: str) -> dict[str, str]:
    return live_leases(url, "rules:", numbered=True)


def _states(url: str) -> dict[str, tuple[str, float]]:
    """group key -> (state, active_at) of its alert, from the shared alert state."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT group_key, state, active_at FROM rule_alert_state"))
            return {r.group_key: (r.state, float(r.active_at)) for r in rows}
    finally:
        engine.dispose()


def _evaluations(srv: Server) -> dict[str, float]:
    """rule group -> evaluations this process made (its own /metrics)."""
    text = httpx.get(srv.url + "/metrics", timeout=5).text
    out = {}
    for m in re.finditer(
        r'^perfintel_rule_evaluations_total\{rule_group="([^"]+)"\} (\S+)', text, re.M
    ):
        out[m.group(1)] = float(m.group(2))
    return out


def _wait(cond: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s  # a bound for a failure, not a speed claim
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"never: {what}")


@pytest.mark.slow
def test_two_api_processes_share_the_rules_and_one_takes_over_with_for_state(
    tmp_path: Path, redis_prefix: str, postgres_url: str, victoria_metrics: str
) -> None:
    ns = f"mp-rules-{uuid.uuid4().hex[:12]}"
    hook = HttpReceiver()
    rules, am = tmp_path / "rules.yml", tmp_path / "alertmanager.yml"
    rules.write_text(_rules(rules))
    am.write_text(WEBHOOK_AM_YML.format(url=hook.url))
    env = {
        **bus_env(redis_prefix, postgres_url, 2),
        "PERFINTEL_ROLE": "api",
        **vm_store_env(victoria_metrics, ns),
        "PERFINTEL_ALERTING__RULE_FILES": str(rules),
        "PERFINTEL_ALERTING__RULE_SHARDS": str(RULE_SHARDS),
        "PERFINTEL_ALERTING__ALERTMANAGER_CONFIG": str(am),
    }
    servers: list[Server] = []
    try:
        servers = [start_server(tmp_path / f"api{i}", env=env) for i in range(2)]
        # the second process gets its share: every shard held, by both
        _wait(
            lambda: sorted(Counter(_holders(postgres_url).values()).values()) == [2, 2],
            30,
            "rule shards spread evenly over both processes (no shard moves any more)",
        )
        # the alerts turn pending now (the rules read the store: a sample makes them true)
        httpx.post(
            victoria_metrics + "/api/v1/import/prometheus",
            content=f'shardtest_trigger{{pi_test="{ns}"}} 1\n',
            timeout=10,
        ).raise_for_status()
        _wait(lambda: len(_states(postgres_url)) == GROUPS, FOR_S, "every alert pending")
        before = [_evaluations(s) for s in servers]
        time.sleep(3)  # a few evaluations of every group (interval 1s)
        after = [_evaluations(s) for s in servers]
        ran = [{g for g, n in after[i].items() if n > before[i].get(g, 0.0)} for i in range(2)]
        assert ran[0] and ran[1], ran  # both evaluate groups ...
        assert not ran[0] & ran[1], ran  # ... never the same one
        assert len(ran[0] | ran[1]) == GROUPS
        pending = _states(postgres_url)
        assert len(pending) == GROUPS and {s for s, _ in pending.values()} == {"pending"}

        # kill the first process; its groups' pending timers live on in PostgreSQL
        victim_groups = {g for g in ran[0]}
        servers[0].kill9()
        killed_at = time.time()
        _wait(
            lambda: len(h := _holders(postgres_url)) == RULE_SHARDS and len(set(h.values())) == 1,
            30,
            "the survivor holds every rule shard",
        )
        taken_over_at = time.time()
        metrics = httpx.get(servers[1].url + "/metrics", timeout=5).text
        assert f"perfintel_rule_shards_owned {RULE_SHARDS}" in metrics
        _wait(
            lambda: {s for s, _ in _states(postgres_url).values()} == {"firing"},
            FOR_S + 30,
            "every alert fires",
        )
        states = _states(postgres_url)
        for key, (_, active_at) in states.items():
            assert active_at == pending[key][1], key  # the same alert, pending since then
        # the timers were not restarted at the takeover: the groups fired FOR_S after
        # their first activeAt, which is before the takeover plus FOR_S
        assert max(a for _, a in states.values()) < killed_at
        _wait(
            lambda: (
                {
                    a["labels"]["alertname"]
                    for r in hook.requests
                    for a in r.json()["alerts"]
                    if a["status"] == "firing"
                }
                == {f"Held{i}" for i in range(GROUPS)}
            ),
            30,
            "one notification per alert",
        )
        time.sleep(3)  # a repeat would come within group_interval
        fired = [
            a["labels"]["alertname"]
            for r in hook.requests
            for a in r.json()["alerts"]
            if a["status"] == "firing"
        ]
        assert sorted(fired) == sorted(f"Held{i}" for i in range(GROUPS)), fired
        assert victim_groups and taken_over_at - killed_at < 30

        # every recorded sample was written once (VictoriaMetrics keeps duplicates)
        r = httpx.get(
            victoria_metrics + "/api/v1/export",
            params={"match[]": f'{{__name__=~"shardtest:.*",pi_test="{ns}"}}'},
            timeout=30,
        )
        import orjson

        series = [orjson.loads(line) for line in r.text.splitlines() if line]
        assert len(series) == GROUPS
        for s in series:
            ts = s["timestamps"]
            assert len(ts) == len(set(ts)) and len(ts) >= 3, s["metric"]
    finally:
        for s in servers:
            s.stop()
        hook.close()
