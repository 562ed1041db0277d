"""The anomaly kernel compiles in the background at start-up (issue 10, item 12).

Before, the first detect request paid the kernel's compilation (about 3 s).
Now ``/readyz`` answers at once (``anomaly_kernel: warming``), a daemon thread
compiles, and once it says ``ready`` a detect request compiles nothing: every
compiled loop already has the signatures the request uses.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from perfintel.analysis.anomaly import kernel, steps
from perfintel.api.app import create_app
from perfintel.batch import SampleBatch
from perfintel.config import load_settings
from perfintel.model import label_set

MIN = 60_000


def _signatures() -> dict[str, int]:
    """How many compiled signatures each numba function of the detector holds."""
    assert kernel.compiled(), "numba is a runtime dependency"
    return {
        name: len(fn.signatures)
        for name, fn in vars(steps).items()
        if hasattr(fn, "signatures") and hasattr(fn, "py_func")
    }


def test_first_detect_after_start_up_compiles_nothing(tmp_path: Path) -> None:
    settings = load_settings(overrides={"data_dir": tmp_path / "d"}, env={})
    with TestClient(create_app(settings, collectors=False)) as client:
        first = client.get("/readyz")
        assert first.status_code == 200  # ready without waiting for the compiler
        assert first.json()["anomaly_kernel"] in ("waiting", "warming", "ready")
        deadline = time.monotonic() + 300
        while client.get("/readyz").json()["anomaly_kernel"] in ("waiting", "warming"):
            assert time.monotonic() < deadline, "the kernel never finished compiling"
            time.sleep(0.1)
        assert client.get("/readyz").json()["anomaly_kernel"] == "ready"
        before = _signatures()
        # every model's loop compiled (the step functions are compiled into their callers)
        runs = [name for name in before if name.endswith("_run")]
        assert len(runs) >= 5 and all(before[name] >= 1 for name in runs), before

        end = int(time.time() * 1000) // MIN * MIN
        ts = np.arange(end - 2 * 86_400_000, end, MIN)
        values = 50 + 10 * np.sin(ts / 3.6e6) + np.random.default_rng(1).normal(0, 1, ts.size)
        client.app.state.store.append(  # type: ignore[attr-defined]
            SampleBatch.from_arrays(label_set({"__name__": "load", "h": "a"}), ts, values)
        )
        r = client.post(
            "/api/v1/performance/detect/anomalies",
            json={"selector": "load", "start": "now-1d", "warmup": "1d"},
        )
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()["data"]
        assert data["path"] == "kernel"
        assert _signatures() == before  # nothing compiled for the request


def test_kernel_switched_off_is_reported(tmp_path: Path) -> None:
    settings = load_settings(
        overrides={"data_dir": tmp_path / "d", "anomaly": {"kernel": False}}, env={}
    )
    try:
        with TestClient(create_app(settings, collectors=False)) as client:
            assert client.get("/readyz").json() == {
                "status": "ready",
                "role": "all",
                "anomaly_kernel": "off",
            }
    finally:
        kernel.set_enabled(True)  # a process-wide switch: leave it as the other tests expect


def test_warm_up_waits_for_a_quiet_moment(tmp_path: Path) -> None:
    """The compiler holds the GIL much of the time: it waits while requests keep coming
    (probes do not count), and starts once a second passes without one."""
    settings = load_settings(overrides={"data_dir": tmp_path / "d"}, env={})
    with TestClient(create_app(settings, collectors=False)) as client:
        busy_until = time.monotonic() + 2.5
        while time.monotonic() < busy_until:
            assert client.get("/api/v1/query", params={"query": "1"}).status_code == 200
            assert client.get("/readyz").json()["anomaly_kernel"] == "waiting"
        deadline = time.monotonic() + 300
        while client.get("/readyz").json()["anomaly_kernel"] != "ready":
            assert time.monotonic() < deadline
            time.sleep(0.1)
