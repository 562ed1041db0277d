"""The storage benchmark's ``--memory`` run: the resident memory of each server
with many active series (see ``perfintel.bench.storage``)."""

from __future__ import annotations

import math
import threading
import time

import numpy as np

from perfintel.batch import SampleBatch
from perfintel.bench.harness import rss_bytes, send_sharded
from perfintel.bench.storage_engines import PERFINTEL, VM, Bench, ratio
from perfintel.bench.storage_wire import RW_HEADERS, encode_rw
from perfintel.bench.workload import generate_workload, workload_shape


class _RssSampler:
    def __init__(self, pid: int, every_s: float = 0.5) -> None:
        self.pid = pid
        self.every_s = every_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.peak = max(self.peak, rss_bytes(self.pid)[0])
            except OSError:
                return

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_memory(b: Bench) -> None:
    opts, say = b.opts, b.say
    rounds = opts.memory_rounds
    realtime = max(0, math.ceil(opts.memory_realtime_s / 10))
    now_ms = int(time.time() * 1000)
    start_ms = (now_ms - rounds * 10_000) // 10_000 * 10_000
    t0 = time.perf_counter()
    wl = generate_workload(
        n_series=opts.memory_series,
        hours=(rounds + realtime) * 10 / 3600,
        step_s=10,
        seed=opts.seed,
        start_ms=start_ms,
    )
    # requests of up to samples_per_request series × one step; a series always goes
    # through the same sender thread, so each series' samples arrive in order
    n_series, n_steps = workload_shape(wl)
    ts = wl.timestamps.reshape(n_series, n_steps)
    vals = wl.values.reshape(n_series, n_steps)
    chunks: list[list[bytes]] = []  # [chunk][round]
    for a in range(0, n_series, opts.samples_per_request):
        rows = slice(a, min(a + opts.samples_per_request, n_series))
        series = wl.series[rows]
        idx = np.arange(len(series), dtype=np.int32)
        chunks.append(
            encode_rw(
                [
                    [
                        SampleBatch(series, idx, ts[rows, r].copy(), vals[rows, r].copy())
                        for r in range(n_steps)
                    ]
                ]
            )[0]
        )
    del wl, ts, vals
    threads = [
        list(range(t, len(chunks), opts.concurrency))
        for t in range(min(opts.concurrency, len(chunks)))
    ]

    def round_bodies(rs: range) -> list[list[bytes]]:
        return [[chunks[c][r] for r in rs for c in mine] for mine in threads]

    say(
        f"memory: {opts.memory_series:,} active series, {rounds} fast rounds then {realtime} rounds at 10 s "
        f"({time.perf_counter() - t0:.1f} s to build)"
    )
    results: dict[str, tuple[float, int, int, int]] = {}
    for engine in b.engines():
        srv = b.server(engine, f"{engine.lower()}-mem")
        try:
            base_rss = rss_bytes(srv.pid)[0]
            with _RssSampler(srv.pid) as sampler:
                rep = send_sharded(
                    srv.base_url, "/api/v1/write", round_bodies(range(rounds)), headers=RW_HEADERS
                )
                rate = opts.memory_series * rounds / rep.seconds
                say(
                    f"  {engine}: {rounds} rounds in {rep.seconds:.1f} s ({rate / 1e6:.2f} M samples/s), "
                    f"RSS {rss_bytes(srv.pid)[0] / 2**20:.0f} MiB"
                )
                for r in range(rounds, rounds + realtime):
                    due = time.monotonic() + 10.0
                    send_sharded(
                        srv.base_url,
                        "/api/v1/write",
                        round_bodies(range(r, r + 1)),
                        headers=RW_HEADERS,
                    )
                    time.sleep(max(0.0, due - time.monotonic()))
                final, hwm = rss_bytes(srv.pid)
            peak = max(hwm, sampler.peak)
            results[engine] = (rate, base_rss, peak, final)
            say(
                f"  {engine}: peak RSS {peak / 2**20:.0f} MiB, final {final / 2**20:.0f} MiB "
                f"(idle at start {base_rss / 2**20:.0f} MiB)"
            )
        finally:
            srv.stop()
    say("")
    say(
        f"memory benchmark: {opts.memory_series:,} active series, one sample each per 10 s; "
        f"perfintel anomaly detector {'on' if opts.anomaly else 'off'}"
    )
    say(
        f"{'engine':16} {'fast ingest M/s':>15} {'idle MiB':>9} {'peak MiB':>9} {'final MiB':>9} {'B/series':>9}"
    )
    for engine, (rate, base_rss, peak, final) in results.items():
        say(
            f"{engine:16} {rate / 1e6:15.3f} {base_rss / 2**20:9.0f} {peak / 2**20:9.0f} {final / 2**20:9.0f} "
            f"{(final - base_rss) / opts.memory_series:9.0f}"
        )
    p = results[PERFINTEL]
    v = results.get(VM)
    say(
        f"perfintel memory: series={opts.memory_series} peak_rss_mib={p[2] / 2**20:.0f} "
        f"final_rss_mib={p[3] / 2**20:.0f}"
        + (f" vs VictoriaMetrics peak={ratio(p[2], v[2])} final={ratio(p[3], v[3])}" if v else "")
    )
