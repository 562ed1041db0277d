"""Latency of the performance APIs through HTTP, against a real ``perfintel serve`` process.

The server is started with ``tests.conftest.start_server`` (uvicorn, a real
DuckDB data directory in a temporary folder, loopback HTTP); the data is
loaded through ``/api/v1/import`` (VictoriaMetrics JSON lines) and the
rollup tiers are built with ``POST /api/v1/admin/flush``. Requests are sent
with httpx, warm (after ``--warmup`` calls), one at a time; the figures are
wall times per request as the client sees them (HTTP, history load, models,
JSON rendering).

Cases:

1. ``predict 4h, 1 series`` — 240 steps with 80/95 % intervals from 7 days of
   1-minute data (10,080 points, raw samples bucketed to 1 minute);
2. ``predict 4h, N series`` — the same for ``--series`` series in one request;
3. ``predict 30d (1h tier)`` — 720 hourly steps from the 1-hour rollup tier;
4. ``capacity 30d (1h tier)`` — a capacity plan (two scenarios, 400 paths)
   of one filesystem from ``*_avail_bytes`` and ``*_size_bytes``;
5. ``capacity png`` — the same as a PNG chart.

Prints median and 90th percentile per case. Never a pass/fail.

    .venv/bin/python benchmarks/predict_api.py [--repeats 20] [--series 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import start_server  # noqa: E402

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR


def _line(labels: dict[str, str], ts: np.ndarray, vals: np.ndarray) -> bytes:
    return orjson.dumps(
        {"metric": labels, "values": vals.tolist(), "timestamps": ts.tolist()},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def load(client: httpx.Client, end: int, series: int) -> None:
    rng = np.random.default_rng(0)
    ts = np.arange(end - 7 * DAY, end, MIN)
    for i in range(series):
        y = 40 + 10 * np.sin(2 * np.pi * (ts / DAY + rng.uniform())) + rng.normal(0, 1.0, ts.size)
        body = _line({"__name__": "bench_load", "host": f"h{i:03d}"}, ts, y)
        client.post("/api/v1/import", content=body).raise_for_status()
    ts5 = np.arange(end - 60 * DAY, end, 5 * MIN)
    used = 600e9 + 5e9 * (ts5 - end) / DAY + rng.normal(0, 0.3e9, ts5.size)
    lab = {"device": "sda1", "mountpoint": "/"}
    lines = [
        _line({"__name__": "bench_fs_avail_bytes", **lab}, ts5, 1e12 - used),
        _line({"__name__": "bench_fs_size_bytes", **lab}, ts5, np.full(ts5.size, 1e12)),
        _line({"__name__": "bench_tier_load", **lab}, ts5, used / 1e9),
    ]
    client.post("/api/v1/import", content=b"\n".join(lines)).raise_for_status()
    client.post("/api/v1/admin/flush", params={"compact": "true"}).raise_for_status()


def measure(call: Callable[[], httpx.Response], repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        call().raise_for_status()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = call()
        out.append(time.perf_counter() - t0)
        r.raise_for_status()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--series", type=int, default=10, help="series in the multi-series case")
    a = ap.parse_args()
    end = (int(time.time() * 1000) // HOUR) * HOUR
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp) / "data")
        try:
            with httpx.Client(base_url=server.url, timeout=300) as c:
                t0 = time.perf_counter()
                load(c, end, a.series)
                print(f"loaded in {time.perf_counter() - t0:.1f} s ({server.url})")
                at = {"end": end / 1000}
                predict = "/api/v1/performance/predict/metrics"
                capacity = "/api/v1/performance/capacity/analyze"
                disk = {
                    "usage": "bench_fs_avail_bytes",
                    "usage_kind": "available",
                    "capacity": "bench_fs_size_bytes",
                    "horizon_days": 30,
                    **at,
                }
                cases: list[tuple[str, Callable[[], httpx.Response]]] = [
                    (
                        "predict 4h, 1 series (7d of 1m, raw)",
                        lambda: c.post(
                            predict,
                            json={"selector": 'bench_load{host="h000"}', "horizon": "4h", **at},
                        ),
                    ),
                    (
                        f"predict 4h, {a.series} series",
                        lambda: c.post(
                            predict, json={"selector": "bench_load", "horizon": "4h", **at}
                        ),
                    ),
                    (
                        "predict 30d (60d of the 1h tier)",
                        lambda: c.post(
                            predict, json={"selector": "bench_tier_load", "horizon": "30d", **at}
                        ),
                    ),
                    ("capacity 30d (1h tier), JSON", lambda: c.post(capacity, json=disk)),
                    ("capacity 30d, PNG", lambda: c.post(capacity, json={**disk, "format": "png"})),
                ]
                print(f"{'case':44s} {'median ms':>10s} {'p90 ms':>8s}   (n={a.repeats})")
                for name, call in cases:
                    times = sorted(measure(call, a.repeats, a.warmup))
                    p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
                    print(f"{name:44s} {1000 * statistics.median(times):10.1f} {1000 * p90:8.1f}")
                    last = call()
                    if last.headers["content-type"].startswith("application/json"):
                        print(f"{'':44s} source={last.json()['data']['source']}")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
