"""The real service process: host metrics from the first second, the CLI's ingest and query."""

from __future__ import annotations

import gzip
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson

from tests.conftest import Server


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "perfintel", *args], capture_output=True, text=True, timeout=120
    )


def test_host_metrics_are_there_at_once(server: Server) -> None:
    r = httpx.get(
        server.url + "/api/v1/series/query",
        params={"match": '{__name__=~"node_(load1|memory_MemTotal_bytes|cpu_seconds_total)"}'},
    )
    assert r.status_code == 200
    names = {s["labels"]["__name__"] for s in r.json()["data"]["series"]}
    assert names == {"node_load1", "node_memory_MemTotal_bytes", "node_cpu_seconds_total"}
    metrics = httpx.get(server.url + "/metrics").text
    assert "perfintel_build_info" in metrics and 'protocol="collector"' in metrics


def test_cli_ingest_and_query(server: Server, tmp_path: Path) -> None:
    now = int(time.time())
    prom = tmp_path / "a.prom"
    prom.write_text(
        f'# TYPE cli_temp gauge\ncli_temp{{room="a"}} 21 {now * 1000}\ncli_temp{{room="b"}} 19 {now * 1000}\n'
    )
    lp = tmp_path / "b.lp.gz"
    lp.write_bytes(gzip.compress(f"cli_disk,dev=sda used=5i {now}\nbroken line\n".encode()))
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_bytes(
        orjson.dumps(
            {
                "metric": {"__name__": "cli_x"},
                "values": [1, 2],
                "timestamps": [now * 1000 - 1000, now * 1000],
            }
        )
        + b"\n"
    )
    res = cli("ingest", str(prom), str(jsonl), "--url", server.url)
    assert res.returncode == 0, res.stderr
    assert "accepted 4 samples, rejected 0" in res.stderr
    res = cli("ingest", str(lp), "--url", server.url, "--precision", "s")
    assert (
        res.returncode == 1
        and "accepted 1 samples, rejected 1" in res.stderr
        and "line 2" in res.stderr
    )
    # the server's answer is read, not dumped: the counts, then each error on its own line
    assert "(1 samples accepted, 1 rejected)" in res.stderr, res.stderr
    assert "\n  line 2: " in res.stderr and '"errors"' not in res.stderr, res.stderr
    res = cli("query", "cli_temp", "--url", server.url, "--json")
    assert res.returncode == 0, res.stderr
    series = orjson.loads(res.stdout)["data"]["series"]
    assert sorted(s["labels"]["room"] for s in series) == ["a", "b"]
    res = cli("query", "cli_temp", "--url", server.url)
    assert "2 series" in res.stdout
    # a PromQL expression is evaluated (a newcomer types rate(...), not a selector)
    res = cli("query", "sum by (room) (cli_temp) * 2", "--url", server.url, "--start", "now-5m")
    assert res.returncode == 0, res.stderr
    assert "2 series (PromQL" in res.stdout and 'room="a"' in res.stdout
    res = cli("query", "2 * cli_temp", "--url", server.url, "--start", "now-5m", "--json")
    assert {
        float(v) for s in orjson.loads(res.stdout)["data"]["result"] for _, v in s["values"]
    } >= {
        42.0,
        38.0,
    }
    res = cli("query", "cli_temp{", "--url", server.url)
    assert res.returncode == 2 and "HTTP 400" in res.stderr and "braces" in res.stderr, res.stderr


def test_configured_scrape_targets_are_scraped(tmp_path: Path) -> None:
    from tests.conftest import free_port, start_server

    port = free_port()
    scrape = orjson.dumps(
        [{"job_name": "self", "targets": [f"127.0.0.1:{port}"], "interval_s": 1, "timeout_s": 1}]
    )
    srv = start_server(tmp_path / "data", port=port, env={"PERFINTEL_SCRAPE": scrape.decode()})
    try:
        deadline = time.monotonic() + 20
        up: list[dict[str, object]] = []
        while time.monotonic() < deadline and not up:
            r = httpx.get(srv.url + "/api/v1/series/query", params={"match": 'up{job="self"}'})
            up = r.json()["data"]["series"]
            time.sleep(0.2)
        assert up and up[0]["values"][-1] == 1.0
        assert up[0]["labels"] == {"__name__": "up", "instance": f"127.0.0.1:{port}", "job": "self"}
        r = httpx.get(
            srv.url + "/api/v1/series/query",
            params={"match": '{__name__="perfintel_build_info",job="self"}'},
        )
        assert r.json()["data"]["series"], "the scraped samples themselves are stored"
    finally:
        srv.stop()


def test_cli_demo_loads_a_queryable_data_set(server: Server) -> None:
    res = cli("demo", "--url", server.url, "--days", "0.25", "--step", "60")
    assert res.returncode == 0, res.stderr
    r = httpx.get(
        server.url + "/api/v1/query",
        params={"query": "count(count by (service) (http_requests_total))"},
    )
    assert r.status_code == 200, r.text
    [sample] = r.json()["data"]["result"]
    assert float(sample["value"][1]) >= 4  # several services, queryable through PromQL at once
    # the demo says what it planted and how to find it; the incident's cause is found
    assert "analyze root-cause" in res.stderr and "analyze recommend" in res.stderr
    line = next(x for x in res.stderr.splitlines() if "perfintel analyze root-cause" in x)
    args = shlex.split(line.strip())[1:]
    assert args[args.index("--url") + 1] == server.url
    found = cli(*args, "--json")
    assert found.returncode == 0, found.stderr
    top = orjson.loads(found.stdout)["causes"][0]
    # a slow postgres replica: its machine's iowait on every core, one cause
    assert top["labels"]["instance"] == "postgres-1:9100", top["labels"]
    assert top["labels"]["mode"] == "iowait" and top["part_label"] == "cpu"
    assert {p["labels"]["mode"] for p in top["parts"]} == {"iowait"} and top["parts"]
    assert "on search-" in top["explanation"], top["explanation"]
