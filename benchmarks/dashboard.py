"""Dashboard latency under load: dashboard/realtime, WebSocket push, Explore's first chart.

Starts a perfintel server on a free loopback port (temporary data directory),
loads ``perfintel demo --days N`` into it, waits for the overview to fill, then:

* ``realtime``: an open-loop load of ``--rate`` requests/s for ``--seconds`` on
  ``GET /api/v1/performance/dashboard/realtime`` from ``--procs`` separate
  processes (each keeps one HTTP/1.1 connection); latency is measured from each
  request's *scheduled* send time, so a stalled server cannot hide behind
  fewer requests (no coordinated omission);
* ``stream``: ``--clients`` WebSocket clients (in ``--procs`` processes)
  subscribed to one series; another process ingests one sample of it every
  100 ms; latency = a client's receipt − the ingest response's arrival
  (CLOCK_MONOTONIC, which is one clock for all processes on Linux);
* ``explore``: headless chromium (``/usr/bin/chromium``) opens Explore on the
  demo data; the page marks ``perfintel:first-chart`` when its first chart is
  drawn with data points (time from navigation start).

Prints the figures and the machine's load average before and after each part.

    python benchmarks/dashboard.py --rate 500 --seconds 60 --clients 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import start_server  # noqa: E402

REALTIME = "/api/v1/performance/dashboard/realtime"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q / 100 * len(s)))]


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


# -- realtime -------------------------------------------------------------------------------


def _realtime_worker(url: str, rate: float, seconds: float, start: float, out: mp.Queue) -> None:
    lat: list[float] = []
    errors = 0
    n = int(rate * seconds)
    with httpx.Client(base_url=url, timeout=10) as client:
        for i in range(n):
            sched = start + i / rate
            delay = sched - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                r = client.get(REALTIME)
                if r.status_code != 200:
                    errors += 1
            except httpx.HTTPError:
                errors += 1
            lat.append(time.monotonic() - sched)
    out.put((lat, errors))


def server_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of the server process (0 when it is not ours)."""
    if pid is None:
        return 0.0
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def bench_realtime(
    url: str, rate: float, seconds: float, procs: int, pid: int | None = None
) -> dict[str, float]:
    cpu0 = server_cpu_s(pid)
    out: mp.Queue = mp.Queue()
    start = time.monotonic() + 1.0
    workers = [
        mp.Process(target=_realtime_worker, args=(url, rate / procs, seconds, start, out))
        for _ in range(procs)
    ]
    for w in workers:
        w.start()
    lat: list[float] = []
    errors = 0
    t_start = time.monotonic()
    for _ in workers:
        part, err = out.get()
        lat.extend(part)
        errors += err
    for w in workers:
        w.join()
    cpu = server_cpu_s(pid) - cpu0
    elapsed = time.monotonic() - max(t_start, start)
    return {
        "server_cpu_ms_per_request": 1000 * cpu / len(lat) if pid else float("nan"),
        "requests": len(lat),
        "errors": errors,
        "achieved_rps": len(lat) / elapsed,
        "p50_ms": 1000 * pct(lat, 50),
        "p99_ms": 1000 * pct(lat, 99),
        "max_ms": 1000 * max(lat),
    }


# -- stream ---------------------------------------------------------------------------------


def _stream_clients(url: str, n: int, selector: str, ready: mp.Queue, out: mp.Queue) -> None:
    import websockets

    async def client(received: dict[int, float]) -> None:
        ws_url = url.replace("http://", "ws://") + "/api/v1/performance/stream"
        async with websockets.connect(ws_url, max_queue=None) as ws:
            await ws.recv()  # ready
            await ws.send(
                json.dumps({"subscribe": {"topics": ["samples"], "selectors": [selector]}})
            )
            await ws.recv()  # subscribed
            ready.put(1)
            while True:
                msg = json.loads(await ws.recv())
                now = time.monotonic()
                if msg.get("type") == "samples":
                    for s in msg["series"]:
                        for v in s["values"]:
                            if v is not None and v >= 0:
                                received[int(v)] = now
                                if v == 1e9:
                                    return

    async def main() -> list[dict[int, float]]:
        results: list[dict[int, float]] = [{} for _ in range(n)]
        await asyncio.gather(*(client(r) for r in results))
        return results

    out.put(asyncio.run(main()))


def bench_stream(url: str, clients: int, procs: int, seconds: float) -> dict[str, float]:
    selector = 'dashboard_bench_probe{run="stream"}'
    ready: mp.Queue = mp.Queue()
    out: mp.Queue = mp.Queue()
    per = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    workers = [mp.Process(target=_stream_clients, args=(url, k, selector, ready, out)) for k in per]
    for w in workers:
        w.start()
    for _ in range(clients):
        ready.get(timeout=60)
    acks: dict[int, float] = {}
    body = {"metric": "dashboard_bench_probe", "labels": {"run": "stream"}}
    n = int(seconds * 10)
    with httpx.Client(base_url=url, timeout=10) as c:
        for i in range(n + 1):
            value = float(i) if i < n else 1e9
            r = c.post(
                "/api/v1/ingest",
                json={"series": [{**body, "samples": [[int(time.time() * 1000), value]]}]},
            )
            acks[int(value)] = time.monotonic()
            assert r.status_code == 200, r.text
            time.sleep(0.1)
    lat: list[float] = []
    missing = 0
    for _ in workers:
        for received in out.get(timeout=60):
            for i in range(n):
                if i in received:
                    lat.append(max(0.0, received[i] - acks[i]))
                else:
                    missing += 1
    for w in workers:
        w.join()
    return {
        "clients": clients,
        "samples": n,
        "deliveries": len(lat),
        "missing": missing,
        "p50_ms": 1000 * pct(lat, 50),
        "p99_ms": 1000 * pct(lat, 99),
        "max_ms": 1000 * max(lat),
    }


# -- explore --------------------------------------------------------------------------------


def bench_explore(url: str, runs: int) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    target = url + "/explore?q=" + quote("node_load1") + "&from=now-6h&to=now&band=0"
    times = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        for _ in range(runs):
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(target)
            page.wait_for_function(
                "performance.getEntriesByName('perfintel:first-chart').length > 0", timeout=30_000
            )
            times.append(
                page.evaluate("performance.getEntriesByName('perfintel:first-chart')[0].startTime")
            )
            page.close()
        browser.close()
    return {"runs": runs, "median_ms": statistics.median(times), "max_ms": max(times)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=float, default=1.0, help="demo days to load")
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--stream-seconds", type=float, default=30.0)
    ap.add_argument("--explore-runs", type=int, default=5)
    ap.add_argument("--only", choices=["realtime", "stream", "explore"], action="append")
    ap.add_argument("--url", help="an existing server (default: start one and load the demo)")
    a = ap.parse_args(argv)
    parts = a.only or ["realtime", "stream", "explore"]
    tmp = tempfile.TemporaryDirectory(prefix="perfintel-bench-")
    server = None
    url = a.url
    if url is None:
        server = start_server(Path(tmp.name) / "data")
        url = server.url
        t0 = time.monotonic()
        loaded_ms = 0
        subprocess.run(
            [sys.executable, "-m", "perfintel", "demo", "--url", url, "--days", str(a.days)],
            check=True,
            capture_output=True,
        )
        print(f"demo: {a.days} days loaded in {time.monotonic() - t0:.1f} s")
        loaded_ms = int(time.time() * 1000)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:  # the overview's first refresh after the load
            d = httpx.get(url + REALTIME, timeout=10).json()["data"]
            if (d["refreshed"].get("anomalies") or 0) > loaded_ms:
                break
            time.sleep(1)
        size = len(httpx.get(url + REALTIME).content)
        print(f"overview ready: answer {size} bytes, {len(d['anomalies'])} anomalies")
    try:
        if "realtime" in parts:
            print(f"realtime: {a.rate:g} req/s for {a.seconds:g} s, {a.procs} processes; {load()}")
            r = bench_realtime(url, a.rate, a.seconds, a.procs, server.proc.pid if server else None)
            print("realtime:", json.dumps({k: round(v, 2) for k, v in r.items()}), f"; {load()}")
        if "stream" in parts:
            print(f"stream: {a.clients} clients; {load()}")
            s = bench_stream(url, a.clients, a.procs, a.stream_seconds)
            print("stream:", json.dumps({k: round(v, 2) for k, v in s.items()}), f"; {load()}")
        if "explore" in parts:
            e = bench_explore(url, a.explore_runs)
            print(
                "explore first chart:",
                json.dumps({k: round(v, 1) for k, v in e.items()}),
                f"; {load()}",
            )
    finally:
        if server is not None:
            server.stop()
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
