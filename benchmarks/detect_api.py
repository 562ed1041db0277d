"""Latency of the detect API through HTTP, against a real ``perfintel serve`` process.

The server is started with ``tests.conftest.start_server`` (uvicorn, a real
DuckDB data directory in a temporary folder, loopback HTTP, host collector
off); the data is loaded through ``/api/v1/import`` (VictoriaMetrics JSON
lines). Requests are sent with httpx, warm (after ``--warmup`` calls), one at
a time; the figures are wall times per request as the client sees them (HTTP,
reading the store, the detector, events, JSON rendering).

Cases:

1. ``24h, no history`` — one series, 24 h of 1-minute data (1,440 points), the
   range is those 24 h: nothing before it to warm up on (the target case);
2. ``24h + 7d warm-up`` — the same range on a series with 7 more days before
   it (10,080 warm-up points learnt, not returned).

Prints median and 90th percentile per case, and which detector path ran
(``kernel``: the compiled per-series kernel; ``lockstep``: vectorised steps).
Never a pass/fail.

    .venv/bin/python benchmarks/detect_api.py [--repeats 30] [--warmup 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import start_server  # noqa: E402

MIN = 60_000
DAY = 24 * 60 * MIN
PATH = "/api/v1/performance/detect/anomalies"


def load(client: httpx.Client, end: int) -> None:
    rng = np.random.default_rng(0)
    for name, days in (("bench_day", 1), ("bench_week", 8)):
        ts = np.arange(end - days * DAY, end, MIN)
        y = 40 + 15 * np.sin(2 * np.pi * ts / DAY) + rng.normal(0, 2, ts.size)
        y[-300:-295] += 60  # an incident 5 hours before the end
        line = orjson.dumps(
            {"metric": {"__name__": name, "host": "h1"}, "values": y, "timestamps": ts},
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
        client.post("/api/v1/import", content=line).raise_for_status()


def measure(
    client: httpx.Client, body: dict[str, object], repeats: int, warmup: int
) -> tuple[list[float], dict[str, object]]:
    last: dict[str, object] = {}
    for _ in range(warmup):
        client.post(PATH, json=body).raise_for_status()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        r = client.post(PATH, json=body)
        out.append((time.perf_counter() - t) * 1e3)
        r.raise_for_status()
        last = r.json()["data"]
    return out, last


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    end = (int(time.time() * 1000) // MIN) * MIN
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(
            Path(tmp) / "data",
            env={"PERFINTEL_HOST_COLLECTOR__ENABLED": "false"},
        )
        try:
            with httpx.Client(base_url=server.url, timeout=120) as client:
                load(client, end)
                start = (end - DAY) / 1000
                cases = [
                    (
                        "24h, no history",
                        {"selector": "bench_day", "start": start, "end": end / 1000},
                    ),
                    (
                        "24h + 7d warm-up",
                        {"selector": "bench_week", "start": start, "end": end / 1000},
                    ),
                ]
                print(
                    f"{'case':<20} {'points':>6} {'warm-up':>7} {'path':>8} {'median ms':>10} {'p90 ms':>8} {'events':>6}"
                )
                for name, body in cases:
                    times, data = measure(client, body, args.repeats, args.warmup)
                    series = data["series"]
                    assert isinstance(series, list)
                    (s,) = series
                    p90 = statistics.quantiles(times, n=10)[-1]
                    print(
                        f"{name:<20} {len(s['timestamps']):>6} {s['warmup_points']:>7} {data['path']:>8} "
                        f"{statistics.median(times):>10.1f} {p90:>8.1f} {len(s['anomalies']):>6}"
                    )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
