"""PromQL range queries, perfintel against Prometheus 2.42 on the same data and machine.

Data: 1,000 counter series ``bench_requests_total{service="s00".."s19",instance}``
over 24 h at a 10 s scrape (8.64 M samples), loaded into Prometheus with
``promtool tsdb create-blocks-from openmetrics`` and into perfintel's
in-memory store served by uvicorn in a separate process.

Queries, both through the HTTP APIs (form POST to ``/api/v1/query_range``),
warm, median of repeats:

1. ``rate(bench_requests_total{service="s00",instance="0"}[5m])`` over 24 h at 60 s step;
2. ``sum by (service) (rate(bench_requests_total[5m]))`` over 24 h at 5 min step.

perfintel is measured twice: with the rollup planner on (query 2 then reads the
5-minute tier) and off (raw samples, Prometheus's exact semantics).
Prints the times and the ratios perfintel / Prometheus (target ≤ 2×).

Run: ``.venv/bin/python benchmarks/promql.py [--repeats 15] [--store memory|duckdb]`` (about 2-3 minutes,
most of it building the Prometheus blocks).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "query"))

from promql_harness import HOUR, PrometheusServer, RawSeries, free_port  # noqa: E402

SERIES = 1000
SERVICES = 20
STEP_MS = 10_000

QUERIES = [
    ('rate(bench_requests_total{service="s00",instance="0"}[5m])', "60"),
    ("sum by (service) (rate(bench_requests_total[5m]))", "300"),
]


def generate(base: int) -> list[RawSeries]:
    rng = np.random.default_rng(11)
    ts = np.arange(base, base + 24 * HOUR, STEP_MS, dtype=np.int64)
    out = []
    for i in range(SERIES):
        vals = np.round(np.cumsum(rng.gamma(2.0, 1.0 + i % 7, len(ts))), 2)
        labels = {
            "__name__": "bench_requests_total",
            "service": f"s{i % SERVICES:02d}",
            "instance": str(i // SERVICES),
        }
        out.append(RawSeries(labels, ts, vals))
    return out


def serve(port: int, base: int, kind: str) -> None:
    """The perfintel side: load the data, then serve the router (rollups on at /, off at /raw)."""
    import tempfile

    import uvicorn
    from fastapi import FastAPI

    from perfintel.api import errors
    from perfintel.api.prometheus import router
    from perfintel.batch import SampleBatch
    from perfintel.query import QuerySettings
    from perfintel.storage.memory import MemoryStore

    store: Any
    if kind == "duckdb":
        from perfintel.storage.duckdb import DuckDBStore, StoreOptions

        tmp = tempfile.mkdtemp(prefix="promql-bench-")
        store = DuckDBStore(Path(tmp), StoreOptions(background=False, wal_fsync=False))
    else:
        store = MemoryStore()
    for i, s in enumerate(generate(base)):
        store.append(SampleBatch.from_arrays(s.labels, s.timestamps, s.values))
        if kind == "duckdb" and i % 100 == 99:
            store.flush()  # no background thread here: keep the write head from filling up
    if kind == "duckdb":
        store.flush(compact=True)
    app, raw = FastAPI(), FastAPI()
    for a, rollups in ((app, True), (raw, False)):
        errors.install(a)
        a.include_router(router)
        a.state.store = store
        a.state.query_settings = QuerySettings(use_rollups=rollups)
    app.mount("/raw", raw)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def measure(
    client: httpx.Client, urls: list[str], form: dict[str, str], repeats: int
) -> tuple[list[float], int]:
    """Median seconds per URL; runs are interleaved so background load hits all alike."""
    points = 0
    for url in urls:
        for _ in range(2):  # warm-up
            body = client.post(url, data=form).json()
            if body["status"] != "success":
                raise RuntimeError(f"{url}: {body}")
            points = sum(len(s["values"]) for s in body["data"]["result"])
    times: list[list[float]] = [[] for _ in urls]
    for _ in range(repeats):
        for i, url in enumerate(urls):
            t0 = time.perf_counter()
            client.post(url, data=form).raise_for_status()
            times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times], points


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--store", choices=["memory", "duckdb"], default="memory")
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--base", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.base, args.store)
        return
    base = (int(time.time() * 1000) - 26 * HOUR) // HOUR * HOUR
    port = free_port()
    t0 = time.perf_counter()
    ours = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), "--base", str(base), "--store", args.store]
    )
    try:
        blocks = ["--storage.tsdb.min-block-duration=2h", "--storage.tsdb.max-block-duration=2h"]
        with (
            PrometheusServer(generate(base), extra_args=blocks) as prom,
            httpx.Client(timeout=300) as client,
        ):
            print(f"Prometheus ready after {time.perf_counter() - t0:.0f} s")
            url = f"http://127.0.0.1:{port}"
            while True:
                try:
                    client.get(url + "/api/v1/status/buildinfo").raise_for_status()
                    break
                except httpx.HTTPError:
                    if ours.poll() is not None:
                        raise SystemExit("perfintel server exited") from None
                    time.sleep(0.5)
            start, end = (base + 300_000) / 1000, (base + 24 * HOUR) / 1000
            print(
                f"{SERIES} series x 24 h at {STEP_MS // 1000} s, perfintel on the {args.store} store; "
                f"median of {args.repeats} warm runs\n"
            )
            print(
                f"{'query':62} {'step':>5} {'points':>7} {'prometheus':>11} {'perfintel':>10} {'ratio':>6} {'raw path':>9} {'ratio':>6}"
            )
            for query, step in QUERIES:
                form = {"query": query, "start": str(start), "end": str(end), "step": step}
                urls = [prom.url, url, url + "/raw"]
                (tp, to, tr), n = measure(
                    client, [u + "/api/v1/query_range" for u in urls], form, args.repeats
                )
                print(
                    f"{query:62} {step:>5} {n:>7} {tp * 1000:>9.1f}ms {to * 1000:>8.1f}ms {to / tp:>5.2f}x"
                    f" {tr * 1000:>7.1f}ms {tr / tp:>5.2f}x"
                )
    finally:
        ours.terminate()
        ours.wait(10)


if __name__ == "__main__":
    main()
