"""Storage benchmark: perfintel against VictoriaMetrics, same machine, same workload.

One run (``benchmarks/storage.py`` or ``perfintel bench storage``):

1. builds the seeded workload (``perfintel.bench.workload``: by default 1,000
   series × 24 h at 10 s = 8.64 M samples) ending an hour before now;
2. **in-process bulk ingest**: ``DuckDBStore.append`` of the whole workload in
   batches of 1 M samples, timed until the last append returns, three times on
   fresh directories (median reported; the flush with compaction and rollups
   after the first run is timed on its own); then pre-encodes every request
   body (remote-write and Influx line protocol) before any HTTP timing;
3. for each engine in turn (only one server runs at a time, so the two
   never compete for the cores): start it on a fresh data directory, send the
   remote-write bodies with one thread per shard (series dealt round-robin,
   each shard in time order, like Prometheus's sharded queues), timed until
   the last response; flush and compact (perfintel ``POST
   /api/v1/admin/flush``; VictoriaMetrics ``/internal/force_flush`` and
   ``/internal/force_merge``, waiting until merges end and the size is
   stable); measure the apparent size of the data directory (perfintel's
   includes its rollup tiers) ÷ samples; run the queries; stop it;
4. for each engine: a fresh instance ingests the line-protocol bodies
   (``/write?precision=ms``, 10,000 lines per request), timed the same way.

Queries (median of ``repeats`` runs after ``warmups``, over HTTP, no result
cache: VictoriaMetrics runs with ``-search.disableCache`` and gets
``nocache=1``):

* q1 — the last hour of one series at its raw 10 s resolution: PromQL
  ``bench_cpu_usage{instance="host-00000:9103"}`` as ``query_range`` with
  ``step=10s`` (360 points, each the raw sample of its step). Both engines run
  the same PromQL; this is the fair equivalent of a raw export, since
  ``/api/v1/export`` has no perfintel counterpart.
* q2 — 24 h of ``avg_over_time(<that series>[5m])`` at a 5-minute step.
* q3 — 24 h of ``sum by (service) (avg_over_time({__name__=~"bench_.*",job="bench"}[5m]))``
  at a 5-minute step over every series of the workload.

perfintel runs with its host collector and online anomaly detector off, so it
stores only the workload, like VictoriaMetrics (``--anomaly`` keeps the
detector on, as shipped: ingest then pays for scoring, and its model outputs
count in the on-disk size).

perfintel answers these through ``/api/v1/query_range`` when that endpoint
answers 200 (probed first); otherwise through ``/api/v1/series/query``
(raw samples for q1, ``fn=avg`` at 5 minutes for q2, plus ``agg=sum&by=service``
for q3), which computes the same aggregates. The table says which was used.

The last line printed is, each ratio perfintel ÷ VictoriaMetrics::

    perfintel/VictoriaMetrics: rw_ingest=R lp_ingest=R bytes_per_sample=R q1=R q2=R q3=R

(ingest ratios above 1 and size/query ratios below 1 favour perfintel).

For iterating on one figure: ``--skip-lp`` leaves out the line-protocol phase
(its ratio prints as n/a), ``--inprocess-repeats 0`` the in-process bulk
ingest, and ``--queries-only DIR`` only runs the queries again on the data
directories a ``--keep`` run left in ``DIR`` (no ingest; every other figure
prints as n/a).

``--memory`` instead measures the perfintel server's resident memory with
many active series (default 100,000, one sample each every 10 s): 30 rounds
sent as fast as the server accepts, then rounds at the real 10 s pace for a
while; peak (``VmHWM`` and sampled ``VmRSS``) and final ``VmRSS`` are reported
(VictoriaMetrics gets the same feed unless ``--skip-vm``).

This module runs the main benchmark and holds the entry points; the engines,
their flushes and queries are in ``storage_engines``, the request bodies in
``storage_wire``, the ``--memory`` run in ``storage_memory``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from perfintel.batch import SampleBatch
from perfintel.bench.harness import (
    BenchError,
    dir_bytes,
    rss_bytes,
    send_sharded,
)
from perfintel.bench.storage_engines import (
    PERFINTEL,
    VM,
    Bench,
    EngineFigures,
    StorageBenchOptions,
    flush_perfintel,
    flush_vm,
    ratio,
    run_queries,
)
from perfintel.bench.storage_memory import run_memory
from perfintel.bench.storage_wire import LP_HEADERS, RW_HEADERS, encode_lp, encode_rw
from perfintel.bench.workload import generate_workload, request_batches
from perfintel.errors import OverloadedError

__all__ = ["StorageBenchOptions", "main", "run_storage_bench"]


# -- the main benchmark --------------------------------------------------------------------------


@dataclass
class InProcessFigures:
    rates: list[float]  # samples/s of each repeat
    flush_s: float  # flush + compaction + rollups after the first repeat
    disk_bytes: int
    overloaded: int  # appends refused (head full) and retried

    @property
    def median(self) -> float:
        return statistics.median(self.rates) if self.rates else math.nan


def _inprocess(b: Bench, workload: SampleBatch) -> InProcessFigures:
    """``DuckDBStore.append`` of the whole workload, repeated on fresh directories."""
    from perfintel.storage.duckdb import DuckDBStore

    fig = InProcessFigures([], math.nan, 0, 0)
    if b.opts.inprocess_repeats <= 0:
        return fig
    batches = request_batches(workload, samples_per_request=b.opts.inprocess_batch_samples)[0]
    for i in range(b.opts.inprocess_repeats):
        path = b.root / f"inprocess-{i}"
        store = DuckDBStore(path)
        try:
            t0 = time.perf_counter()
            for batch in batches:
                while True:
                    try:
                        store.append(batch)
                        break
                    except OverloadedError:
                        fig.overloaded += 1
                        time.sleep(0.01)
            fig.rates.append(len(workload) / (time.perf_counter() - t0))
            if i == 0:
                t1 = time.perf_counter()
                store.flush(compact=True)
                fig.flush_s = time.perf_counter() - t1
                fig.disk_bytes = store.stats().disk_bytes
        finally:
            store.close()
            shutil.rmtree(path, ignore_errors=True)
    return fig


def _run_main(b: Bench) -> None:
    opts, say = b.opts, b.say
    step_ms = opts.step * 1000
    now_ms = int(time.time() * 1000)
    start_ms = (now_ms - int((opts.hours + 1) * 3_600_000)) // step_ms * step_ms
    t0 = time.perf_counter()
    workload = generate_workload(
        n_series=opts.series, hours=opts.hours, step_s=opts.step, seed=opts.seed, start_ms=start_ms
    )
    n = len(workload)
    say(
        f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs"
    )
    say(
        f"workload: {opts.series} series × {opts.hours:g} h at {opts.step} s = {n:,} samples "
        f"({time.perf_counter() - t0:.1f} s to generate)"
    )
    inproc = _inprocess(b, workload)
    if inproc.rates:
        say(
            f"in-process DuckDBStore.append: median {inproc.median / 1e6:.2f} M samples/s over "
            f"{len(inproc.rates)} runs ({', '.join(f'{r / 1e6:.2f}' for r in inproc.rates)}); "
            f"flush+compact+rollups {inproc.flush_s:.1f} s; {inproc.disk_bytes / n:.3f} B/sample; "
            f"{inproc.overloaded} appends refused while the head was full"
        )
    t0 = time.perf_counter()
    rw = encode_rw(
        request_batches(
            workload, shards=opts.concurrency, samples_per_request=opts.samples_per_request
        )
    )
    lp_shards = (
        []
        if opts.skip_lp
        else request_batches(
            workload,
            shards=opts.concurrency,
            samples_per_request=opts.lp_lines_per_request,
            max_samples=opts.lp_max_samples,
        )
    )
    lp = encode_lp(lp_shards)
    lp_n = sum(len(x) for s in lp_shards for x in s)
    del lp_shards
    rw_bytes = sum(len(x) for s in rw for x in s)
    lp_bytes = sum(len(x) for s in lp for x in s)
    say(
        f"encoded: remote-write {sum(map(len, rw))} requests, {rw_bytes / 2**20:.1f} MiB "
        f"({rw_bytes / n:.2f} B/sample); line protocol {sum(map(len, lp))} requests, "
        f"{lp_bytes / 2**20:.1f} MiB for {lp_n:,} lines ({time.perf_counter() - t0:.1f} s)"
    )

    ts_max = int(workload.timestamps.max())
    del workload
    (b.root / _WINDOW_FILE).write_text(
        json.dumps({"samples": n, "series": opts.series, "ts_max": ts_max})
    )

    window = _window(ts_max)
    figs = {e: EngineFigures() for e in b.engines()}
    for engine in b.engines():
        fig = figs[engine]
        name = f"{engine.lower()}-rw"
        srv = b.server(engine, name)
        try:
            path = "/api/v1/write"
            rep = send_sharded(srv.base_url, path, rw, headers=RW_HEADERS)
            fig.rw_samples_per_s = n / rep.seconds
            say(
                f"  {engine} remote-write: {n:,} samples in {rep.seconds:.2f} s = "
                f"{fig.rw_samples_per_s / 1e6:.2f} M samples/s ({rep.retries} retries)"
            )
            t1 = time.perf_counter()
            data = b.root / name
            if engine == PERFINTEL:
                fig.stored_samples = flush_perfintel(srv)
            else:
                fig.stored_samples = flush_vm(srv, data)
            fig.flush_s = time.perf_counter() - t1
            fig.disk_bytes = dir_bytes(data)
            fig.bytes_per_sample = fig.disk_bytes / n
            say(
                f"  {engine} on disk after flush/merge ({fig.flush_s:.1f} s): {fig.disk_bytes:,} B = "
                f"{fig.bytes_per_sample:.3f} B/sample (engine counts {fig.stored_samples:,} samples)"
            )
            run_queries(b, engine, srv, window, fig)
            fig.rss_peak = rss_bytes(srv.pid)[1]
        finally:
            srv.stop()
    del rw
    for engine in b.engines() if lp else []:
        fig = figs[engine]
        srv = b.server(engine, f"{engine.lower()}-lp")
        try:
            rep = send_sharded(
                srv.base_url, "/write", lp, headers=LP_HEADERS, params={"precision": "ms"}
            )
            fig.lp_samples_per_s = lp_n / rep.seconds
            say(
                f"  {engine} line protocol: {lp_n:,} lines in {rep.seconds:.2f} s = "
                f"{fig.lp_samples_per_s / 1e6:.2f} M samples/s ({rep.retries} retries)"
            )
        finally:
            srv.stop()
    _report(b, n, figs, inproc)


_WINDOW_FILE = "workload.json"  # samples and newest timestamp, for --queries-only


def _window(ts_max: int) -> tuple[float, float]:
    """The 24 h the queries read: ending at the last whole 5 minutes of the workload."""
    end_s = float(ts_max // 300_000 * 300)
    return (end_s - 86_400, end_s)


def _run_queries_only(b: Bench, kept: Path) -> None:
    """The queries again, on the data directories a ``--keep`` run left in ``kept``."""
    try:
        info = json.loads((kept / _WINDOW_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise BenchError(f"{kept} is not a kept benchmark directory: {exc}") from exc
    window = _window(int(info["ts_max"]))
    n = int(info["samples"])
    b.opts.series = int(info.get("series", b.opts.series))
    b.say(
        f"queries only, on the data in {kept}; load average at start: "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs"
    )
    figs = {e: EngineFigures() for e in b.engines()}
    for engine in b.engines():
        data = kept / f"{engine.lower()}-rw"
        if not data.is_dir():
            raise BenchError(f"no {data} (run with --keep first)")
        srv = b.server(engine, f"{engine.lower()}-rw", data)
        try:
            run_queries(b, engine, srv, window, figs[engine])
            figs[engine].rss_peak = rss_bytes(srv.pid)[1]
        finally:
            srv.stop()
    _report(b, n, figs, InProcessFigures([], math.nan, 0, 0))


def _query_cell(name: str) -> Callable[[EngineFigures], str]:
    def cell(f: EngineFigures) -> str:
        t = f.queries.get(name)
        return f"{t.median_s * 1000:.2f}" if t else "n/a"

    return cell


def _report(b: Bench, n: int, figs: dict[str, EngineFigures], inproc: InProcessFigures) -> None:
    say = b.say
    engines = list(figs)
    rows: list[tuple[str, ...]] = [("figure", *engines)]

    def row(label: str, fmt: Callable[[EngineFigures], str]) -> None:
        rows.append((label, *(fmt(figs[e]) for e in engines)))

    row("remote-write ingest (M samples/s)", lambda f: f"{f.rw_samples_per_s / 1e6:.3f}")
    row("line-protocol ingest (M samples/s)", lambda f: f"{f.lp_samples_per_s / 1e6:.3f}")
    row("on-disk bytes (after flush/merge)", lambda f: f"{f.disk_bytes:,}")
    row("bytes per sample", lambda f: f"{f.bytes_per_sample:.3f}")
    row("flush/merge time (s)", lambda f: f"{f.flush_s:.1f}")
    row("samples the engine reports", lambda f: f"{f.stored_samples:,}")
    for q, desc in (
        ("q1", "raw 1 h, 1 series"),
        ("q2", "24 h avg_over_time 5m, 1 series"),
        ("q3", f"24 h sum by service, {b.opts.series} series"),
    ):
        row(f"{q} {desc} (ms, median)", _query_cell(q))
    row("peak RSS after ingest+queries (MiB)", lambda f: f"{f.rss_peak / 2**20:.0f}")
    row("query API", lambda f: f.query_api)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    say("")
    say(
        f"storage benchmark: {n:,} samples ({b.opts.series} series × {b.opts.hours:g} h @ {b.opts.step} s), "
        f"{b.opts.concurrency} sender threads, queries median of {b.opts.repeats} after {b.opts.warmups} "
        f"warm-ups; perfintel anomaly detector {'on' if b.opts.anomaly else 'off'}"
    )
    for i, r in enumerate(rows):
        say(
            "  ".join(
                c.ljust(w) if j == 0 else c.rjust(w)
                for j, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
        if i == 0:
            say("  ".join("-" * w for w in widths))
    if inproc.rates:
        say(
            f"in-process DuckDBStore.append: median {inproc.median / 1e6:.2f} M samples/s, best "
            f"{max(inproc.rates) / 1e6:.2f} (target ≥ 5); flush+compact+rollups afterwards {inproc.flush_s:.1f} s"
        )
    p = figs[PERFINTEL]
    v = figs.get(VM, EngineFigures())

    def med(f: EngineFigures, name: str) -> float:
        return f.queries[name].median_s if name in f.queries else math.nan

    say(
        "perfintel/VictoriaMetrics: "
        f"rw_ingest={ratio(p.rw_samples_per_s, v.rw_samples_per_s)} "
        f"lp_ingest={ratio(p.lp_samples_per_s, v.lp_samples_per_s)} "
        f"bytes_per_sample={ratio(p.bytes_per_sample, v.bytes_per_sample)} "
        f"q1={ratio(med(p, 'q1'), med(v, 'q1'))} q2={ratio(med(p, 'q2'), med(v, 'q2'))} "
        f"q3={ratio(med(p, 'q3'), med(v, 'q3'))}"
    )


# -- entry points --------------------------------------------------------------------------------


def run_storage_bench(options: StorageBenchOptions) -> None:
    """Run the benchmark described in the module docstring and print its figures."""
    root = Path(tempfile.mkdtemp(prefix="perfintel-bench-", dir=options.work_dir))
    bench = Bench(options, root)
    try:
        if options.memory:
            run_memory(bench)
        elif options.queries_only is not None:
            _run_queries_only(bench, options.queries_only)
        else:
            _run_main(bench)
    finally:
        bench.stop_all()
        if options.keep:
            options.out(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def _parser() -> argparse.ArgumentParser:
    d = StorageBenchOptions()
    p = argparse.ArgumentParser(
        prog="benchmarks/storage.py",
        description="perfintel vs VictoriaMetrics: ingest, bytes per sample, queries.",
    )
    p.add_argument(
        "--series", type=int, default=d.series, help="series in the workload (default %(default)s)"
    )
    p.add_argument(
        "--hours", type=float, default=d.hours, help="hours of data (default %(default)s)"
    )
    p.add_argument(
        "--step", type=int, default=d.step, help="seconds between samples (default %(default)s)"
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--skip-vm", action="store_true", help="run perfintel only")
    p.add_argument("--keep", action="store_true", help="keep the data directories and logs")
    p.add_argument(
        "--port", type=int, default=d.port, help="perfintel's port; VictoriaMetrics uses port+1"
    )
    p.add_argument("--concurrency", type=int, default=d.concurrency, help="sender threads (shards)")
    p.add_argument("--repeats", type=int, default=d.repeats, help="timed runs per query")
    p.add_argument("--warmups", type=int, default=d.warmups, help="untimed runs per query")
    p.add_argument(
        "--lp-max-samples", type=int, default=d.lp_max_samples, help="cap on line-protocol lines"
    )
    p.add_argument(
        "--anomaly",
        action="store_true",
        help="keep perfintel's online anomaly detector on (as shipped); off by default",
    )
    p.add_argument(
        "--skip-lp", action="store_true", help="leave out the line-protocol ingest phase"
    )
    p.add_argument(
        "--inprocess-repeats",
        type=int,
        default=d.inprocess_repeats,
        help="in-process bulk-ingest runs (0 leaves them out; default %(default)s)",
    )
    p.add_argument(
        "--queries-only",
        type=Path,
        default=None,
        metavar="DIR",
        help="only rerun the queries on the data directories a --keep run left in DIR",
    )
    p.add_argument(
        "--memory", action="store_true", help="measure server RSS with many active series instead"
    )
    p.add_argument("--memory-series", type=int, default=d.memory_series)
    p.add_argument("--memory-rounds", type=int, default=d.memory_rounds)
    p.add_argument(
        "--memory-realtime", type=float, default=d.memory_realtime_s, help="seconds at real pace"
    )
    p.add_argument(
        "--work-dir", type=Path, default=None, help="where to create the temporary directory"
    )
    p.add_argument("--vm-binary", default=d.vm_binary)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    opts = StorageBenchOptions(
        series=a.series,
        hours=a.hours,
        step=a.step,
        seed=a.seed,
        skip_vm=a.skip_vm,
        keep=a.keep,
        port=a.port,
        concurrency=a.concurrency,
        repeats=a.repeats,
        warmups=a.warmups,
        lp_max_samples=a.lp_max_samples,
        anomaly=a.anomaly,
        skip_lp=a.skip_lp,
        queries_only=a.queries_only,
        inprocess_repeats=a.inprocess_repeats,
        memory=a.memory,
        memory_series=a.memory_series,
        memory_rounds=a.memory_rounds,
        memory_realtime_s=a.memory_realtime,
        work_dir=a.work_dir,
        vm_binary=a.vm_binary,
    )
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks
    try:
        run_storage_bench(opts)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
