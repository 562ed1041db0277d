"""Hostile PromQL requests against a real ``perfintel serve`` process.

Each request is one ``POST /api/v1/query`` (form body) that once crashed or
exhausted the server (issue 10, item 2): deeply nested parentheses, deeply
nested function calls, a long chain of binary operators, a huge query text.
The server is started with ``tests.conftest.start_server`` (a real uvicorn
process on a free loopback port, a temporary data directory). Per request the
script prints the HTTP status (or the connection error), the wall time as the
client sees it, the server's resident memory before and after and its peak
(``VmHWM``) after, and whether the process is still alive; a dead server is
restarted for the next case. Never a pass/fail.

    .venv/bin/python benchmarks/promql_hostile.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import Server, start_server  # noqa: E402

CASES: list[tuple[str, str]] = [
    ("( x 12,000 around 1", "(" * 12_000 + "1" + ")" * 12_000),
    ("( x 5,000 around 1", "(" * 5_000 + "1" + ")" * 5_000),
    ("abs( x 1,000 around vector(1)", "abs(" * 1_000 + "vector(1)" + ")" * 1_000),
    ("1+1+... 3,000 terms", "+".join(["1"] * 3_000)),
    ("-(-(...)) x 2,000", "-(" * 2_000 + "1" + ")" * 2_000),
    ("1 MiB label value", 'up{job="' + "a" * (1 << 20) + '"}'),
    ("reference: sum(rate(up[5m]))", "sum(rate(up[5m]))"),
]


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(rest.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="perfintel-hostile-") as tmp:
        n = 0

        def fresh() -> Server:
            nonlocal n
            n += 1
            return start_server(Path(tmp) / f"data{n}")

        server = fresh()
        print(
            f"{'case':32} {'status':>8} {'seconds':>8} {'RSS MiB before→after':>22} "
            f"{'peak MiB':>9} alive"
        )
        try:
            for name, query in CASES:
                pid = server.proc.pid
                rss0, _ = memory_kib(pid)
                t0 = time.perf_counter()
                try:
                    r = httpx.post(server.url + "/api/v1/query", data={"query": query}, timeout=120)
                    status = str(r.status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                seconds = time.perf_counter() - t0
                time.sleep(0.2)
                alive = server.proc.poll() is None
                if alive:
                    rss1, hwm = memory_kib(pid)
                    mem = f"{rss0 / 1024:8.0f} → {rss1 / 1024:8.0f}"
                    peak = f"{hwm / 1024:9.0f}"
                else:
                    mem, peak = f"{rss0 / 1024:8.0f} → {'-':>8}", f"{'-':>9}"
                code = "yes" if alive else f"no (exit {server.proc.returncode})"
                print(f"{name:32} {status:>8} {seconds:8.3f} {mem:>22} {peak} {code}", flush=True)
                if not alive:
                    server = fresh()
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    sys.exit(main())
