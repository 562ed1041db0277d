"""`/healthz` latency while one hostile request at a time is in flight (target: p99 ≤ 50 ms).

.venv/bin/python benchmarks/healthz_under_attack.py                  # every case
.venv/bin/python benchmarks/healthz_under_attack.py --cases gzip_members,garbage
.venv/bin/python benchmarks/healthz_under_attack.py --new-series 200000   # a smaller series flood

A real ``perfintel serve`` (host collector off, everything else default) is
started. Another process polls ``GET /healthz`` on loopback at ``--rate`` per
second over one keep-alive connection, timing each answer. Meanwhile this
process sends the hostile request of a case, one at a time, again and again for
at least ``--min-seconds`` (so short requests are measured over many polls too);
the polls sent while a hostile request was in flight are the case's figures:
p50, p99 and max in milliseconds (a poll unanswered after 5 s counts as
5000 ms). A baseline without any attack comes first. Each case gets a fresh
server, so its peak RSS is its own; if the server dies, the row says so.

Cases (issue 10): many empty gzip members (4 MB), a 4 MB garbage body, a
query of 12,000 nested parentheses, ``abs(`` nested 1,000 deep, ``1+1+…``
with 3,000 terms, a 58 MB text body of 2 M new series, and a large streaming
import. The PromQL bounds and the new-series limits are other branches' work:
on a branch without them those rows show the problem, not a regression.
"""

from __future__ import annotations

import argparse
import gzip
import multiprocessing as mp
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np

from perfintel.bench.backup import RssSampler
from perfintel.bench.harness import ServerProcess, free_port, perfintel_server

POLL_TIMEOUT_S = 5.0


def poller(url: str, rate: float, stop: mp.synchronize.Event, out: mp.Queue) -> None:
    """In its own process: GET /healthz every 1/rate s; (monotonic send time, ms or None)."""
    results = []
    period = 1.0 / rate
    nxt = time.monotonic()
    with httpx.Client(timeout=POLL_TIMEOUT_S) as client:
        while not stop.is_set():
            sent = time.monotonic()
            try:
                ok = client.get(url + "/healthz").status_code == 200
                ms = (time.monotonic() - sent) * 1000 if ok else None
            except httpx.HTTPError:
                ms = None
            results.append((sent, ms))
            nxt += period
            time.sleep(max(0.0, nxt - time.monotonic()))
    out.put(results)


def gzip_members() -> Callable[[str], httpx.Response]:
    body = gzip.compress(b"") * (4_000_000 // 20)
    return _post("/api/v1/import/prometheus", body, {"Content-Encoding": "gzip"})


def garbage() -> Callable[[str], httpx.Response]:
    body = np.random.default_rng(1).integers(0, 256, 4_000_000, dtype=np.uint8).tobytes()
    return _post("/api/v1/import/prometheus", body, {})


def _query(expr: str) -> Callable[[str], httpx.Response]:
    return _post("/api/v1/query", expr, {}, form=True)


def parens() -> Callable[[str], httpx.Response]:
    return _query("(" * 12_000 + "1" + ")" * 12_000)


def abs_nested() -> Callable[[str], httpx.Response]:
    return _query("abs(" * 1_000 + "1" + ")" * 1_000)


def long_sum() -> Callable[[str], httpx.Response]:
    return _query("+".join(["1"] * 3_000))


def new_series(n: int) -> Callable[[str], httpx.Response]:
    # 29 bytes a line: 2 M series make the 58 MB body of the report
    lines = (f'flood{{i="{i:09d}",k="v"}} 1\n' for i in range(n))
    body = "".join(lines).encode()
    counter = [0]

    def send(url: str) -> httpx.Response:
        # every request new series: a fresh name each time
        counter[0] += 1
        fresh = body.replace(b"flood{", f"flood{counter[0]}{{".encode())
        return httpx.post(url + "/api/v1/import/prometheus", content=fresh, timeout=600)

    return send


def big_import(samples: int) -> Callable[[str], httpx.Response]:
    per_line = 10_000
    now = int(time.time() * 1000)
    ts = ",".join(str(now - (per_line - k) * 1000) for k in range(per_line))
    vals = ",".join(f"{(k * 7) % 1000}.5" for k in range(per_line))

    def lines() -> Iterator[bytes]:
        for i in range(samples // per_line):
            yield (
                f'{{"metric":{{"__name__":"imported","i":"{i}"}},"values":[{vals}],'
                f'"timestamps":[{ts}]}}\n'
            ).encode()

    def send(url: str) -> httpx.Response:
        return httpx.post(url + "/api/v1/import", content=lines(), timeout=3600)

    return send


def _post(
    path: str, body: bytes | str, headers: dict[str, str], *, form: bool = False
) -> Callable[[str], httpx.Response]:
    def send(url: str) -> httpx.Response:
        if form:
            return httpx.post(url + path, data={"query": body}, timeout=600)
        return httpx.post(url + path, content=body, headers=headers, timeout=600)

    return send


def _summary(latencies: list[float | None]) -> str:
    if not latencies:
        return "no poll fell inside"
    ms = [POLL_TIMEOUT_S * 1000 if x is None else x for x in latencies]
    lost = sum(x is None for x in latencies)
    p = np.percentile(ms, [50, 99])
    extra = f", {lost} unanswered" if lost else ""
    return f"p50 {p[0]:7.1f}  p99 {p[1]:7.1f}  max {max(ms):7.1f} ms  (n={len(ms)}{extra})"


def run_case(
    server: ServerProcess,
    send: Callable[[str], httpx.Response] | None,
    *,
    rate: float,
    min_seconds: float,
) -> tuple[str, str, int]:
    stop = mp.Event()
    out: mp.Queue = mp.Queue()
    proc = mp.Process(target=poller, args=(server.base_url, rate, stop, out), daemon=True)
    proc.start()
    time.sleep(0.5)  # the poller's connection is up
    windows: list[tuple[float, float]] = []
    outcomes: list[str] = []
    with RssSampler(server.pid) as rss:
        began = time.monotonic()
        while True:
            t0 = time.monotonic()
            if send is None:
                time.sleep(min_seconds)
                outcome = "idle"
            else:
                try:
                    r = send(server.base_url)
                    outcome = f"{r.status_code}"
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
            windows.append((t0, time.monotonic()))
            outcomes.append(outcome)
            if time.monotonic() - began >= min_seconds or server.proc is None:
                break
            if server.proc.poll() is not None:
                break
    stop.set()
    polls = out.get(timeout=60)
    proc.join(10)
    inside = [ms for sent, ms in polls if any(a <= sent <= b for a, b in windows)]
    durations = [b - a for a, b in windows]
    answer = (
        f"{len(windows)} request(s), {statistics.median(durations):.2f} s each, "
        f"answers {','.join(sorted(set(outcomes)))}"
    )
    return _summary(inside), answer, rss.peak


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rate", type=float, default=50.0, help="/healthz polls per second")
    p.add_argument("--min-seconds", type=float, default=3.0, help="attack time per case, at least")
    p.add_argument("--new-series", type=int, default=2_000_000)
    p.add_argument("--import-samples", type=int, default=10_000_000)
    p.add_argument("--cases", default="", help="comma-separated subset of the case names")
    args = p.parse_args(argv)
    cases: dict[str, Callable[[], Callable[[str], httpx.Response]]] = {
        "gzip_members": gzip_members,
        "garbage_4mb": garbage,
        "parens_12000": parens,
        "abs_1000": abs_nested,
        "sum_3000_terms": long_sum,
        "new_series": lambda: new_series(args.new_series),
        "big_import": lambda: big_import(args.import_samples),
    }
    wanted = [c for c in args.cases.split(",") if c] or list(cases)
    workdir = Path(tempfile.mkdtemp(prefix="perfintel-attack-"))
    server: ServerProcess | None = None
    generation = 0

    def fresh() -> ServerProcess:
        nonlocal generation
        generation += 1
        d = workdir / f"data{generation}"
        s = perfintel_server(d, free_port(), workdir / f"server{generation}.log", anomaly=True)
        return s.start()

    print(f"/healthz polled at {args.rate:g}/s from another process; latencies while in flight")
    print(f"{'case':<16} {'healthz':<58} {'server peak RSS':>15}   hostile requests")
    try:
        for name in ["baseline", *wanted]:
            server = fresh()  # each case on a fresh server: its memory figure is its own
            send = None if name == "baseline" else cases[name]()
            summary, answer, peak = run_case(
                server, send, rate=args.rate, min_seconds=args.min_seconds
            )
            if server.proc is not None and server.proc.poll() is not None:
                answer += f"; the server DIED (exit {server.proc.returncode})"
            print(f"{name:<16} {summary:<58} {peak / 2**20:>11.0f} MiB   {answer}", flush=True)
            server.stop()
            server = None
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "main"
    raise SystemExit(main())
