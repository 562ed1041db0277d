"""``perfintel alerts list|ack|silence`` against a real server whose rule fires: what an
operator types during an incident, and what it tells them when there is nothing to show or
a silence would silence nothing."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.alerting.notify_helpers import wait_for
from tests.conftest import Server, run_perfintel, start_alerting_server

RULES = """
groups:
  - name: cli
    interval: 1s
    rules:
      - alert: CliProbeHigh
        expr: cli_probe > 1
        labels: {severity: page}
        annotations: {summary: "the probe is high"}
"""

AM_YML = """\
route:
  receiver: nobody
receivers:
  - name: nobody
"""


def alerts(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return run_perfintel("alerts", *args, "--url", server.url, columns=80)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_alerting_server(tmp_path_factory.mktemp("cli-alerts"), RULES, AM_YML)
    try:
        yield srv
    finally:
        srv.stop()


def test_list_ack_and_silence_an_incident(server: Server) -> None:
    empty = alerts(server, "list")
    assert empty.returncode == 0, empty.stderr
    assert "no incidents" in empty.stderr and "┃ id" not in empty.stdout

    now_ms = int(time.time() * 1000)
    body = {"series": [{"metric": "cli_probe", "labels": {"job": "cli"}, "samples": [[now_ms, 5]]}]}
    r = httpx.post(server.url + "/api/v1/ingest", json=body, timeout=30)
    assert r.status_code in (200, 204), r.text

    def opened() -> list[dict]:
        return httpx.get(server.url + "/api/v1/incidents", timeout=5).json()["data"]

    [inc] = wait_for(opened, 60, "an incident opened")
    listed = alerts(server, "list")
    assert listed.returncode == 0, listed.stderr
    assert inc["id"] in listed.stdout and "open" in listed.stdout

    acked = alerts(server, "ack", inc["id"])
    assert acked.returncode == 0, acked.stderr
    assert acked.stdout.strip() == f"incident {inc['id']} is acknowledged"
    assert alerts(server, "list", "--state", "open").stderr.startswith("no incidents in state")

    wait_for(
        lambda: httpx.get(server.url + "/api/v2/alerts", timeout=5).json(), 30, "the alert active"
    )
    made = alerts(server, "silence", "alertname=CliProbeHigh", "--duration", "10m")
    assert made.returncode == 0, made.stderr
    sid = made.stdout.strip()  # the id alone on stdout, as amtool prints it
    silences = httpx.get(server.url + "/api/v2/silences", timeout=5).json()
    assert [s["id"] for s in silences] == [sid]
    assert "it silences 1 of 1 active alerts now" in made.stderr
    assert "warning" not in made.stderr

    # a typo in the alert's name silences nothing: made, and said so with the names there are
    typo = alerts(server, "silence", "alertname=CliProbeHihg")
    assert typo.returncode == 0, typo.stderr
    assert "it silences 0 of 1 active alerts now" in typo.stderr
    words = " ".join(typo.stderr.split())  # rich folds the line at 80 columns
    assert 'no alerting rule or active alert is named alertname="CliProbeHihg"' in words
    assert "rules here: CliProbeHigh" in words

    bad = alerts(server, "silence", "alertname")
    assert bad.returncode == 2 and "error" in bad.stderr


def test_ack_of_an_unknown_incident_says_so(server: Server) -> None:
    r = alerts(server, "ack", "no-such-incident")
    assert r.returncode == 1
    assert "HTTP 404" in r.stderr
