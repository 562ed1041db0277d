"""``/api/v1/metadata`` and ``/api/v1/status/*`` (issue 10, item 15).

Before, ``/api/v1/metadata`` was empty after ``perfintel demo`` (the demo sent
no metadata, the host collector's own metrics had none, scraped metadata was
dropped, and whatever there was vanished at restart), and
``/api/v1/status/runtimeinfo`` reported the working directory as ``/``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from perfintel.api.app import create_app
from perfintel.batch import MetricMetadata, SampleBatch
from perfintel.config import load_settings
from perfintel.ingest.remote_write import encode_remote_write
from perfintel.model import label_set
from perfintel.storage.metadata import MAX_HELP_CHARS, MetadataStore
from tests.conftest import ROOT, start_server

TEXT = b"""# HELP shop_orders_total Orders placed.
# TYPE shop_orders_total counter
shop_orders_total{shop="a"} 5
# HELP shop_basket_bytes Basket size.
# TYPE shop_basket_bytes gauge
shop_basket_bytes 10
"""


def _app(data_dir: Path, **overrides: Any) -> TestClient:
    settings = load_settings(overrides={"data_dir": data_dir, **overrides}, env={})
    return TestClient(create_app(settings, collectors=bool(overrides)))


def _metadata(client: TestClient | httpx.Client) -> dict[str, Any]:
    r = client.get("/api/v1/metadata")
    assert r.status_code == 200
    data: dict[str, Any] = r.json()["data"]
    return data


def test_metadata_survives_a_restart(tmp_path: Path) -> None:
    with _app(tmp_path / "d") as client:
        assert client.post("/api/v1/import/prometheus", content=TEXT).status_code == 200
        assert _metadata(client)["shop_orders_total"] == [
            {"type": "counter", "help": "Orders placed.", "unit": ""}
        ]
    with _app(tmp_path / "d") as client:
        md = _metadata(client)
        assert md["shop_orders_total"][0]["help"] == "Orders placed."
        assert md["shop_basket_bytes"] == [{"type": "gauge", "help": "Basket size.", "unit": ""}]
        r = client.get("/api/v1/metadata", params={"metric": "shop_basket_bytes"})
        assert list(r.json()["data"]) == ["shop_basket_bytes"]


def test_remote_write_metadata(tmp_path: Path) -> None:
    batch = SampleBatch.from_arrays(
        label_set({"__name__": "rw_latency_seconds"}),
        np.array([int(time.time() * 1000)]),
        np.ones(1),
    )
    body = encode_remote_write(
        batch, metadata={"rw_latency_seconds": MetricMetadata("gauge", "Latency.", "seconds")}
    )
    with _app(tmp_path / "d") as client:
        r = client.post(
            "/api/v1/write",
            content=body,
            headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"},
        )
        assert r.status_code == 204, r.text
        assert _metadata(client)["rw_latency_seconds"] == [
            {"type": "gauge", "help": "Latency.", "unit": "seconds"}
        ]


def test_host_collector_describes_its_metrics(tmp_path: Path) -> None:
    with _app(tmp_path / "d", anomaly={"enabled": False}) as client:
        md = _metadata(client)
    assert md["node_load1"] == [{"type": "gauge", "help": "1m load average.", "unit": ""}]
    assert md["node_cpu_seconds_total"][0]["type"] == "counter"
    assert md["node_memory_MemAvailable_bytes"][0]["help"].startswith("Memory information field")


@pytest.fixture
def exporter() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(TEXT)))
            self.end_headers()
            self.wfile.write(TEXT)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_scraped_metadata_is_kept(tmp_path: Path, exporter: str) -> None:
    scrape = [{"job_name": "shop", "targets": [exporter], "interval_s": 0.5, "timeout_s": 0.5}]
    with _app(
        tmp_path / "d", scrape=scrape, host_collector={"enabled": False}, anomaly={"enabled": False}
    ) as client:
        deadline = time.monotonic() + 30
        while "shop_orders_total" not in _metadata(client):
            assert time.monotonic() < deadline, "the scrape's metadata never arrived"
            time.sleep(0.1)
        assert _metadata(client)["shop_orders_total"][0]["type"] == "counter"


def test_metadata_is_bounded(tmp_path: Path) -> None:
    store = MetadataStore(tmp_path / "m.json", max_families=3, save_interval_s=0)
    store.update({f"f{i}": MetricMetadata("gauge", "x" * 10_000) for i in range(5)})
    assert len(store) == 3 and store.dropped == 2
    assert all(len(store[k].help) == MAX_HELP_CHARS for k in store)
    store.update({"f0": MetricMetadata("counter", "known families still update")})
    assert store["f0"].type == "counter"
    store.close()
    assert set(MetadataStore(tmp_path / "m.json")) == {"f0", "f1", "f2"}
    (tmp_path / "m.json").write_text("{not json")
    assert len(MetadataStore(tmp_path / "m.json")) == 0  # a broken file is ignored, not fatal


def test_runtimeinfo_reports_the_real_directories(tmp_path: Path) -> None:
    with _app(tmp_path / "d") as client:
        r = client.get("/api/v1/status/runtimeinfo")
        assert r.status_code == 200
        data = r.json()["data"]
    assert data["CWD"] == os.getcwd() != "/"
    assert data["dataDir"] == str((tmp_path / "d").resolve())
    assert data["storageRetention"] == "2w1d"  # the 15-day default, as Prometheus writes it
    for key in ("startTime", "reloadConfigSuccess", "lastConfigTime", "corruptionCount"):
        assert key in data


def test_buildinfo_as_grafana_reads_it(tmp_path: Path) -> None:
    with _app(tmp_path / "d") as client:
        data = client.get("/api/v1/status/buildinfo").json()["data"]
    major, minor, *_ = (int(x) for x in data["version"].split("."))
    assert (major, minor) >= (2, 40)  # Grafana enables the newer query features from the version


def test_demo_metadata_end_to_end(tmp_path: Path) -> None:
    """``perfintel demo`` against a real server, as a user runs it: the metadata endpoint
    describes the demo's families, and still does after a restart."""
    server = start_server(tmp_path / "data")
    try:
        r = subprocess.run(
            [sys.executable, "-m", "perfintel", "demo", "--url", server.url, "--days", "0.1"],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=ROOT,
        )
        assert r.returncode == 0, r.stderr
        md = httpx.get(server.url + "/api/v1/metadata", timeout=30).json()["data"]
        assert md["http_requests_total"][0]["type"] == "counter"
        assert md["http_request_duration_seconds"][0]["type"] == "histogram"
        assert md["node_load1"][0]["help"] == "1m load average."
    finally:
        server.stop()
    server = start_server(tmp_path / "data")
    try:
        md = httpx.get(server.url + "/api/v1/metadata", timeout=30).json()["data"]
        assert md["http_requests_total"][0]["help"].startswith("Total HTTP requests")
    finally:
        server.stop()
