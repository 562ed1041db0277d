"""What the storage benchmark needs around the engines: processes, sending, sizes, memory.

* ``ServerProcess`` starts a server in its own session, waits for its
  readiness URL and always stops it (SIGTERM to its process group, then
  SIGKILL); ``perfintel_server`` and ``victoria_metrics`` build the two.
* ``send_sharded`` posts pre-encoded bodies with one thread and one HTTP
  client per shard, each shard in order, and times the whole run until the
  last response.
* ``time_query`` runs an HTTP query a few times and returns the median.
* ``dir_bytes`` is the apparent size of a tree (``du --apparent-size -b``),
  ``rss_bytes`` reads ``VmRSS``/``VmHWM`` from ``/proc``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from perfintel.errors import PerfintelError

__all__ = [
    "BenchError",
    "QueryTiming",
    "SendReport",
    "ServerProcess",
    "dir_bytes",
    "free_port",
    "perfintel_server",
    "rss_bytes",
    "send_sharded",
    "time_query",
    "victoria_metrics",
]


class BenchError(PerfintelError):
    """The benchmark cannot go on (a server did not start, a request kept failing)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dir_bytes(path: Path) -> int:
    """Apparent size of every regular file below ``path`` (like ``du -sb``)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(root, f))
            except FileNotFoundError:  # merged away while walking
                continue
            total += st.st_size
    return total


def rss_bytes(pid: int, proc_root: Path = Path("/proc")) -> tuple[int, int]:
    """``(VmRSS, VmHWM)`` of a process in bytes (current and peak resident set)."""
    rss = hwm = 0
    for line in (proc_root / str(pid) / "status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) * 1024
    return rss, hwm


class ServerProcess:
    """A server started for the benchmark, always stopped by ``stop`` (or ``with``)."""

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        base_url: str,
        ready_path: str,
        log: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.env = dict(env or {})
        self.cmd = list(cmd)
        self.base_url = base_url
        self.ready_path = ready_path
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise BenchError(f"{self.name} is not running")
        return self.proc.pid

    def start(self, timeout_s: float = 60.0) -> ServerProcess:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **self.env},
            )
        deadline = time.monotonic() + timeout_s
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise BenchError(
                        f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
                    )
                try:
                    if client.get(self.ready_path).status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
        self.stop()
        raise BenchError(f"{self.name} was not ready within {timeout_s:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout_s: float = 30.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # our own child's session, nothing else
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        except ProcessLookupError:
            pass

    def __enter__(self) -> ServerProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def perfintel_server(
    data_dir: Path, port: int, log: Path, *, anomaly: bool = False
) -> ServerProcess:
    """``perfintel serve`` storing only what it is sent, as VictoriaMetrics does.

    The host collector is off, and so is the online anomaly detector unless
    ``anomaly`` (it writes ``anomaly_score``/``yhat*`` series back to the store).
    """
    script = Path(sys.executable).with_name("perfintel")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "perfintel"]
    cmd = [*base, "serve", "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", str(port)]
    env = {
        "PERFINTEL_HOST_COLLECTOR__ENABLED": "false",
        "PERFINTEL_ANOMALY__ENABLED": "true" if anomaly else "false",
    }
    return ServerProcess("perfintel", cmd, f"http://127.0.0.1:{port}", "/readyz", log, env)


def victoria_metrics(
    data_dir: Path,
    port: int,
    log: Path,
    binary: str = "/usr/bin/victoria-metrics",
    extra_args: Sequence[str] = (),
) -> ServerProcess:
    cmd = [
        binary,
        f"-storageDataPath={data_dir}",
        f"-httpListenAddr=127.0.0.1:{port}",
        "-retentionPeriod=100y",
        "-search.disableCache",  # every query reads the data
        "-loggerLevel=WARN",
        *extra_args,
    ]
    return ServerProcess("VictoriaMetrics", cmd, f"http://127.0.0.1:{port}", "/health", log)


@dataclass
class SendReport:
    seconds: float
    requests: int
    retries: int
    bytes_sent: int


def send_sharded(
    base_url: str,
    path: str,
    shards: Sequence[Sequence[bytes]],
    *,
    headers: Mapping[str, str],
    params: Mapping[str, str] | None = None,
    max_attempts: int = 30,
) -> SendReport:
    """POST every body, one thread and client per shard, shard order kept; time it all.

    429 and 5xx answers and connection errors are retried with backoff (the
    wait counts in the time); any other non-2xx answer stops the benchmark.
    """
    retries = [0] * len(shards)
    errors: list[BaseException] = []
    start_gate = threading.Barrier(len(shards) + 1)

    def run(i: int, bodies: Sequence[bytes]) -> None:
        try:
            with httpx.Client(base_url=base_url, timeout=120.0, headers=dict(headers)) as client:
                start_gate.wait()
                for body in bodies:
                    for attempt in range(max_attempts):
                        try:
                            r = client.post(path, content=body, params=params)
                        except httpx.TransportError as exc:
                            if attempt + 1 == max_attempts:
                                raise BenchError(f"POST {path} kept failing: {exc}") from exc
                        else:
                            if r.status_code < 300:
                                break
                            if (
                                r.status_code != 429 and r.status_code < 500
                            ) or attempt + 1 == max_attempts:
                                raise BenchError(
                                    f"POST {path} answered {r.status_code}: {r.text[:300]}"
                                )
                        retries[i] += 1
                        time.sleep(min(0.05 * 2**attempt, 2.0))
        except BaseException as exc:
            errors.append(exc)
            if not start_gate.broken:
                start_gate.abort()

    threads = [threading.Thread(target=run, args=(i, b), daemon=True) for i, b in enumerate(shards)]
    for t in threads:
        t.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        start_gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    if errors:
        raise BenchError(f"sending to {base_url}{path} failed: {errors[0]}") from errors[0]
    return SendReport(
        seconds, sum(len(b) for b in shards), sum(retries), sum(len(x) for b in shards for x in b)
    )


@dataclass
class QueryTiming:
    median_s: float
    runs: list[float]
    series: int
    points: int


def time_query(
    client: httpx.Client,
    path: str,
    params: Mapping[str, Any],
    *,
    warmups: int = 3,
    repeats: int = 20,
) -> QueryTiming:
    """Median wall time of ``repeats`` GETs after ``warmups``; the answer must be 200."""
    runs: list[float] = []
    body: Any = None
    for i in range(warmups + repeats):
        t0 = time.perf_counter()
        r = client.get(path, params=dict(params))
        dt = time.perf_counter() - t0
        if r.status_code != 200:
            raise BenchError(f"GET {path} {dict(params)} answered {r.status_code}: {r.text[:300]}")
        if i >= warmups:
            runs.append(dt)
        body = r.json()
    series, points = _result_size(body)
    return QueryTiming(statistics.median(runs), runs, series, points)


def _result_size(body: Any) -> tuple[int, int]:
    """Series and points in a Prometheus matrix answer or a perfintel series answer."""
    data = body.get("data", body) if isinstance(body, dict) else body
    result = data.get("result", data.get("series", [])) if isinstance(data, dict) else data
    if not isinstance(result, list):
        return 0, 0
    points = 0
    for s in result:
        if isinstance(s, dict):
            for key in ("values", "points", "samples", "timestamps"):
                if isinstance(s.get(key), list):
                    points += len(s[key])
                    break
    return len(result), points
