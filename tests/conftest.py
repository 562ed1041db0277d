"""Shared fixtures: a service on a real DuckDB file, in-process or as a real server process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from perfintel.api.app import create_app
from perfintel.config import load_settings

ROOT = Path(__file__).resolve().parents[1]
ANY_PAST_S = 100 * 365 * 86_400  # a raw retention that takes any timestamp since 1970


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    """The whole app over a real DuckDB file, no collectors (tests control every sample).

    Raw samples are kept for a century: tests use fixed timestamps of past years,
    which the default retention (15 days) refuses at ingest."""
    settings = load_settings(
        overrides={"data_dir": tmp_path / "data", "storage": {"raw_retention": ANY_PAST_S}},
        env={},
    )
    with TestClient(create_app(settings, collectors=False)) as c:
        yield c


@dataclass
class Server:
    url: str
    data_dir: Path
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill9()


def start_server(
    data_dir: Path,
    *,
    port: int | None = None,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
) -> Server:
    port = port or free_port()
    log = data_dir.parent / f"server-{port}.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PERFINTEL_")}
    full_env.update(env or {})
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "perfintel",
                "serve",
                "--data-dir",
                str(data_dir),
                "--port",
                str(port),
                *args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=ROOT,
        )
    server = Server(f"http://127.0.0.1:{port}", data_dir, proc, port, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"perfintel serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(server.url + "/readyz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"perfintel serve did not become ready:\n{log.read_text()}")


def start_alerting_server(tmp: Path, rules: str, alertmanager: str) -> Server:
    """A server that evaluates the rule file ``rules`` and routes by the alertmanager.yml
    ``alertmanager`` (both YAML text, written under ``tmp``), on ingested data only: no host
    collector, no anomaly detector."""
    rule_file, am_file = tmp / "rules.yml", tmp / "alertmanager.yml"
    rule_file.write_text(rules)
    am_file.write_text(alertmanager)
    env = {
        "PERFINTEL_ALERTING__RULE_FILES": str(rule_file),
        "PERFINTEL_ALERTING__ALERTMANAGER_CONFIG": str(am_file),
        "PERFINTEL_HOST_COLLECTOR__ENABLED": "false",
        "PERFINTEL_ANOMALY__ENABLED": "false",
    }
    return start_server(tmp / "data", env=env)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = start_server(tmp_path / "data")
    yield s
    s.stop()


def run_perfintel(
    *args: str, env: dict[str, str] | None = None, columns: int = 200
) -> subprocess.CompletedProcess[str]:
    """``perfintel ARGS`` as a user runs it: a process, no PERFINTEL_* settings inherited."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PERFINTEL_")}
    return subprocess.run(
        [sys.executable, "-m", "perfintel", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**clean, **(env or {}), "COLUMNS": str(columns)},
    )


VM_BINARY = os.environ.get("PERFINTEL_VM_BINARY", "/usr/bin/victoria-metrics")


@pytest.fixture(scope="session")
def victoria_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a real VictoriaMetrics single-node server, one per test session, on a fresh
    ``-storageDataPath``; tests isolate their series with a unique label (``vm_store``)."""
    from perfintel.bench.harness import victoria_metrics as vm_process

    if not os.access(VM_BINARY, os.X_OK):
        pytest.fail(f"victoria-metrics binary not found at {VM_BINARY} (Debian victoria-metrics)")
    root = tmp_path_factory.mktemp("victoria-metrics")
    with vm_process(root / "data", free_port(), root / "vm.log", VM_BINARY) as vm:
        yield vm.base_url


@pytest.fixture
def vm_store(victoria_metrics: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A ``RemoteStore`` over the session's VictoriaMetrics, seeing only this test's series."""
    import uuid

    from perfintel.storage.victoriametrics import RemoteStore, RemoteStoreOptions

    ns = ("pi_test", f"{request.node.name[:40]}-{uuid.uuid4().hex[:8]}")
    store = RemoteStore(RemoteStoreOptions.single_node(victoria_metrics, namespace=ns))
    yield store
    store.close()
