"""Small CLI promises: the version, label sets never cut, clear JSON errors of the API."""

from __future__ import annotations

import time

import httpx
import pytest
from fastapi.testclient import TestClient

from perfintel import __version__
from tests.conftest import Server, run_perfintel


def test_version() -> None:
    done = run_perfintel("--version")
    assert done.returncode == 0
    assert done.stdout == f"perfintel {__version__}\n"


@pytest.mark.parametrize("columns", [40, 80, 250])
def test_query_never_cuts_label_sets(server: Server, columns: int) -> None:
    labels = {
        "service": "checkout-payment-gateway-eu-west",
        "instance": "ip-10-20-30-40.eu-west-1.compute.internal:9100",
        "pod": "payment-gateway-7d9f8b6c5d-x2k4q",
        "zone": "eu-west-1c",
    }
    pairs = ",".join(f'{k}="{v}"' for k, v in labels.items())
    text = f"wide_labels{{{pairs}}} 42 {int(time.time() * 1000)}\n"
    r = httpx.post(server.url + "/api/v1/import/prometheus", content=text.encode())
    assert r.status_code == 200, r.text
    done = run_perfintel("query", "wide_labels", "--url", server.url, columns=columns)
    assert done.returncode == 0, done.stderr
    # A table when it fits, else label sets on their own (wrapped) lines: never elided.
    out = done.stdout
    assert ("┃ series" in out) == (columns == 250)
    assert "…" not in out and max(len(line) for line in out.splitlines()) <= columns
    joined = "".join(line.strip() for line in out.splitlines()).replace(" ", "")
    for k, v in labels.items():
        assert f'{k}="{v}"' in joined


def test_json_without_content_type_and_malformed_json_say_so(client: TestClient) -> None:
    path = "/api/v1/performance/detect/anomalies"
    r = client.post(path, content=b'{"query": "up"}')
    assert r.status_code == 400
    assert r.json()["error"] == (
        "the body must be a JSON object sent with Content-Type: application/json "
        "(this request has no Content-Type)"
    )
    r = client.post(
        path, content=b'{"query": "up",\n  "start": }', headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"] == "body is not valid JSON: Expecting value at line 2 column 12"
    r = client.post(path, content=b"", headers={"Content-Type": "application/json"})
    assert "needs a JSON body" in r.json()["error"]
    r = client.post("/api/v1/ingest", content=b'{"series": [\n  {"metric": }]}')
    assert r.status_code == 400
    assert "line 2 column" in r.json()["error"]
