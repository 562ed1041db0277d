"""The two engines of the storage benchmark, perfintel and VictoriaMetrics, as
every run of it sees them: its options, the figures kept per engine, the bench
that starts and stops their servers, a forced flush of each, and the three
queries (q1–q3, described in ``perfintel.bench.storage``) timed on each."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from perfintel.bench.harness import (
    BenchError,
    QueryTiming,
    ServerProcess,
    dir_bytes,
    free_port,
    perfintel_server,
    time_query,
    victoria_metrics,
)

PERFINTEL = "perfintel"
VM = "VictoriaMetrics"
Q1_SERIES = 'bench_cpu_usage{instance="host-00000:9103"}'
Q3_SELECTOR = '{__name__=~"bench_.*",job="bench"}'  # every workload series, nothing else


@dataclass
class StorageBenchOptions:
    """Everything the benchmark can be told (the CLI and the script map flags onto it)."""

    series: int = 1000
    hours: float = 24.0
    step: int = 10
    seed: int = 0
    skip_vm: bool = False
    keep: bool = False
    port: int = 0  # perfintel's port (VictoriaMetrics gets port + 1); 0 picks free ports
    concurrency: int = 4
    samples_per_request: int = 10_000
    lp_lines_per_request: int = 10_000
    lp_max_samples: int = 8_640_000
    inprocess_batch_samples: int = 1_000_000
    inprocess_repeats: int = 3
    warmups: int = 3
    repeats: int = 20
    anomaly: bool = False  # keep perfintel's online anomaly detector on (as shipped)
    skip_lp: bool = False  # leave out the line-protocol phase
    queries_only: Path | None = None  # rerun the queries on a --keep run's data directories
    memory: bool = False
    memory_series: int = 100_000
    memory_rounds: int = 30
    memory_realtime_s: float = 60.0
    work_dir: Path | None = None
    vm_binary: str = "/usr/bin/victoria-metrics"
    out: Callable[[str], None] = print


@dataclass
class EngineFigures:
    rw_samples_per_s: float = math.nan
    lp_samples_per_s: float = math.nan
    disk_bytes: int = 0
    bytes_per_sample: float = math.nan
    stored_samples: int = 0
    flush_s: float = math.nan
    rss_peak: int = 0
    queries: dict[str, QueryTiming] = field(default_factory=dict)
    query_api: str = ""


class Bench:
    def __init__(self, opts: StorageBenchOptions, root: Path) -> None:
        self.opts = opts
        self.root = root
        self.say = opts.out
        self.ports = (opts.port, opts.port + 1) if opts.port else (free_port(), free_port())
        self.running: list[ServerProcess] = []

    def server(self, engine: str, name: str, data: Path | None = None) -> ServerProcess:
        data = data or self.root / name
        data.mkdir(parents=True, exist_ok=True)
        log = self.root / f"{name}.log"
        if engine == PERFINTEL:
            srv = perfintel_server(data, self.ports[0], log, anomaly=self.opts.anomaly)
        else:
            srv = victoria_metrics(data, self.ports[1], log, self.opts.vm_binary)
        self.running.append(srv)
        srv.start()
        return srv

    def stop_all(self) -> None:
        for srv in self.running:
            srv.stop()
        self.running.clear()

    def engines(self) -> list[str]:
        return [PERFINTEL] if self.opts.skip_vm else [PERFINTEL, VM]


def flush_perfintel(srv: ServerProcess) -> int:
    r = httpx.post(f"{srv.base_url}/api/v1/admin/flush", timeout=1800.0)
    if r.status_code != 200:
        raise BenchError(f"perfintel flush answered {r.status_code}: {r.text[:300]}")
    return int(r.json().get("samples", 0))


def _vm_metric_sum(base_url: str, name: str, type_prefix: str = "") -> float:
    total = 0.0
    for line in httpx.get(f"{base_url}/metrics", timeout=30.0).text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if type_prefix and f'type="{type_prefix}' not in line:
                continue
            total += float(line.rsplit(" ", 1)[1])
    return total


def flush_vm(srv: ServerProcess, data: Path, timeout_s: float = 600.0) -> int:
    """Force flush and merge, then wait until no merge runs and the size holds still."""
    for path in ("/internal/force_flush", "/internal/force_merge"):
        r = httpx.get(srv.base_url + path, timeout=600.0)
        if r.status_code != 200:
            raise BenchError(f"VictoriaMetrics {path} answered {r.status_code}: {r.text[:300]}")
    deadline = time.monotonic() + timeout_s
    stable, last = 0, -1
    while time.monotonic() < deadline and stable < 3:
        time.sleep(1.0)
        size = dir_bytes(data)
        merging = _vm_metric_sum(srv.base_url, "vm_active_merges")
        stable = stable + 1 if size == last and merging == 0 else 0
        last = size
    return int(_vm_metric_sum(srv.base_url, "vm_rows", "storage/"))


def _query_plan(
    base_url: str, start_s: float, end_s: float, step_s: int
) -> tuple[str, list[tuple[str, str, dict[str, Any]]]]:
    """The three queries for perfintel: PromQL when ``/api/v1/query_range`` works, else series/query."""
    q1_start = end_s - 3600
    promql = _promql_queries(start_s, end_s, step_s)
    try:
        r = httpx.get(
            f"{base_url}/api/v1/query_range",
            params={"query": Q1_SERIES, "start": q1_start, "end": end_s, "step": step_s},
            timeout=60.0,
        )
        if r.status_code == 200 and r.json().get("status") == "success":
            return "PromQL /api/v1/query_range", promql
    except (httpx.HTTPError, ValueError):
        pass
    sq = "/api/v1/series/query"
    return "/api/v1/series/query", [
        ("q1", sq, {"match": Q1_SERIES, "start": q1_start, "end": end_s}),
        ("q2", sq, {"match": Q1_SERIES, "start": start_s, "end": end_s, "step": "5m", "fn": "avg"}),
        (
            "q3",
            sq,
            {
                "match": Q3_SELECTOR,
                "start": start_s,
                "end": end_s,
                "step": "5m",
                "fn": "avg",
                "agg": "sum",
                "by": "service",
            },
        ),
    ]


def _promql_queries(
    start_s: float, end_s: float, step_s: int
) -> list[tuple[str, str, dict[str, Any]]]:
    qr = "/api/v1/query_range"
    return [
        ("q1", qr, {"query": Q1_SERIES, "start": end_s - 3600, "end": end_s, "step": f"{step_s}s"}),
        (
            "q2",
            qr,
            {
                "query": f"avg_over_time({Q1_SERIES}[5m])",
                "start": start_s,
                "end": end_s,
                "step": "5m",
            },
        ),
        (
            "q3",
            qr,
            {
                "query": f"sum by (service) (avg_over_time({Q3_SELECTOR}[5m]))",
                "start": start_s,
                "end": end_s,
                "step": "5m",
            },
        ),
    ]


def run_queries(
    b: Bench, engine: str, srv: ServerProcess, window: tuple[float, float], fig: EngineFigures
) -> None:
    start_s, end_s = window
    if engine == PERFINTEL:
        fig.query_api, plan = _query_plan(srv.base_url, start_s, end_s, b.opts.step)
    else:
        fig.query_api = "PromQL /api/v1/query_range (nocache=1)"
        plan = [
            (n, p, {**q, "nocache": "1"})
            for n, p, q in _promql_queries(start_s, end_s, b.opts.step)
        ]
    with httpx.Client(base_url=srv.base_url, timeout=600.0) as client:
        for name, path, params in plan:
            fig.queries[name] = t = time_query(
                client, path, params, warmups=b.opts.warmups, repeats=b.opts.repeats
            )
            b.say(
                f"  {engine} {name}: median {t.median_s * 1000:.1f} ms ({t.series} series, {t.points} points)"
            )


def ratio(a: float, b: float) -> str:
    if not (math.isfinite(a) and math.isfinite(b)) or b == 0:
        return "n/a"
    return f"{a / b:.2f}"
