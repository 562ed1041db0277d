"""The VictoriaMetrics backend (``storage.backend: victoriametrics``): writes, reads, PromQL two ways.

A real ``victoria-metrics`` (Debian's, single-node, fresh data directory) on
loopback; the client is ``RemoteStore`` in this process. Measured:

1. **append**: ``RemoteStore.append`` of ``--series`` counters over 24 h at a
   10 s interval (remote_write, 50,000 samples a request), samples/s, median of
   ``--repeats`` runs on fresh namespaces; the embedded ``DuckDBStore.append`` of
   the same batches beside it for scale;
2. **select**: ``RemoteStore.select`` (``/api/v1/export``) of one series over
   24 h (8,640 samples) and of 20 series, median latency;
3. **PromQL, engine versus pass-through**: the service (``create_app`` with the
   VictoriaMetrics backend, served by uvicorn on loopback) answers, through
   ``/api/v1/query_range``, ``rate`` of one series over 24 h at a 60 s step and
   ``sum by (service) (rate(...[5m]))`` over all series at a 5 min step, with
   ``promql=engine`` (perfintel's engine over exported samples) and
   ``promql=passthrough`` (VictoriaMetrics' own engine), median latency;
4. **agreement**: the PromQL compatibility corpus (``tests/query``) answered both
   ways: how many answers of VictoriaMetrics' engine equal perfintel's (series,
   timestamps, values within 1e-9 relative).

Run: ``.venv/bin/python benchmarks/remote_store.py [--series 200] [--repeats 3]``
(about a minute).
"""

from __future__ import annotations

import argparse
import functools
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "query"))

from promql_harness import (  # noqa: E402
    HOUR,
    AppServer,
    compare,
    dataset_base,
    free_port,
    generate_dataset,
    to_batches,
)
from test_promql_compat import _corpus, _lookback_edges  # noqa: E402

from perfintel.api.app import create_app  # noqa: E402
from perfintel.batch import SampleBatch  # noqa: E402
from perfintel.bench.harness import victoria_metrics  # noqa: E402
from perfintel.config import load_settings  # noqa: E402
from perfintel.model import label_set, parse_selector  # noqa: E402
from perfintel.storage.duckdb import DuckDBStore  # noqa: E402
from perfintel.storage.victoriametrics import RemoteStore, RemoteStoreOptions  # noqa: E402

STEP_MS = 10_000


def workload(series: int, base: int) -> list[SampleBatch]:
    """``series`` counters over 24 h at 10 s, one batch per 20 series (as an ingest batch)."""
    rng = np.random.default_rng(5)
    ts = np.arange(base, base + 24 * HOUR, STEP_MS, dtype=np.int64)
    out: list[SampleBatch] = []
    group: list[SampleBatch] = []
    for i in range(series):
        vals = np.round(np.cumsum(rng.gamma(2.0, 1.0 + i % 7, len(ts))), 2)
        labels = {
            "__name__": "bench_requests_total",
            "service": f"s{i % 10:02d}",
            "instance": str(i // 10),
        }
        group.append(SampleBatch.from_arrays(label_set(labels), ts, vals))
        if len(group) == 20:
            out.append(SampleBatch.concat(group))
            group = []
    if group:
        out.append(SampleBatch.concat(group))
    return out


def median_s(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def store(url: str, ns: str) -> RemoteStore:
    return RemoteStore(RemoteStoreOptions.single_node(url, namespace=("bench", ns)))


def bench_append(url: str, batches: list[SampleBatch], repeats: int, tmp: Path) -> str:
    n = sum(len(b) for b in batches)
    remote, local = [], []
    for r in range(repeats):
        st = store(url, f"append-{r}-{uuid.uuid4().hex[:6]}")
        t0 = time.perf_counter()
        for b in batches:
            st.append(b)
        st.flush()
        remote.append(n / (time.perf_counter() - t0))
        st.close()
        duck = DuckDBStore(tmp / f"duck{r}")
        t0 = time.perf_counter()
        for b in batches:
            duck.append(b)
        local.append(n / (time.perf_counter() - t0))
        duck.close()
        shutil.rmtree(tmp / f"duck{r}", ignore_errors=True)
    return (
        f"append ({n:,} samples, {len(batches)} batches): RemoteStore (remote_write to "
        f"VictoriaMetrics, flushed) median {statistics.median(remote) / 1e6:.2f} M samples/s; "
        f"DuckDBStore.append {statistics.median(local) / 1e6:.2f} M samples/s"
    )


def bench_select(st: RemoteStore, base: int, repeats: int) -> str:
    end = base + 24 * HOUR
    one = parse_selector('bench_requests_total{service="s00",instance="0"}')
    twenty = parse_selector('bench_requests_total{service=~"s0[01]"}')
    n1 = sum(len(s.values) for s in st.select(one, base, end))
    s1 = median_s(lambda: st.select(one, base, end), repeats)
    many = st.select(twenty, base, end)
    s20 = median_s(lambda: st.select(twenty, base, end), repeats)
    return (
        f"select over 24 h: 1 series ({n1:,} samples) median {s1 * 1000:.1f} ms; "
        f"{len(many)} series ({sum(len(s.values) for s in many):,} samples) "
        f"median {s20 * 1000:.1f} ms"
    )


def serve(url: str, ns: str, data_dir: Path) -> AppServer:
    settings = load_settings(
        overrides={
            "data_dir": data_dir,
            "anomaly": {"enabled": False},
            "storage": {
                "backend": "victoriametrics",
                "remote": {
                    "write_url": url + "/api/v1/write",
                    "read_url": url,
                    "flush_url": url + "/internal/force_flush",
                    "namespace": f"bench={ns}",
                },
            },
        },
        env={},
    )
    return AppServer(create_app(settings, collectors=False))


def run(client: httpx.Client, query: str, params: dict[str, str], mode: str) -> dict[str, Any]:
    r = client.post("/api/v1/query_range", data={"query": query, **params, "promql": mode})
    doc: dict[str, Any] = r.json()
    if doc.get("status") != "success":
        raise RuntimeError(f"{mode} {query}: {doc}")
    return doc


def bench_queries(url: str, ns: str, base: int, repeats: int, tmp: Path) -> list[str]:
    day = {"start": str(base / 1000), "end": str((base + 24 * HOUR) / 1000)}
    queries = [
        ('rate(bench_requests_total{service="s00",instance="0"}[5m])', {**day, "step": "60"}),
        ("sum by (service) (rate(bench_requests_total[5m]))", {**day, "step": "300"}),
    ]
    out = []
    with serve(url, ns, tmp / "svc") as srv, httpx.Client(base_url=srv.url, timeout=300) as c:
        for q, params in queries:
            times = {
                mode: median_s(functools.partial(run, c, q, params, mode), repeats)
                for mode in ("engine", "passthrough")
            }
            out.append(
                f"{q} (step {params['step']} s): engine {times['engine'] * 1000:.0f} ms, "
                f"pass-through {times['passthrough'] * 1000:.0f} ms "
                f"(engine / pass-through {times['engine'] / times['passthrough']:.1f}x)"
            )
    return out


def agreement(url: str, tmp: Path) -> str:
    base = dataset_base()
    series = generate_dataset(base)
    ns = uuid.uuid4().hex
    st = store(url, ns)
    for b in to_batches(series):
        st.append(b)
    st.flush()
    st.close()
    corpus = [c for c in _corpus(base) + _lookback_edges(series) if c[0] == "query_range"]
    same = 0
    t_engine = t_pass = 0.0
    with serve(url, ns, tmp / "agree") as srv, httpx.Client(base_url=srv.url, timeout=120) as c:
        for _, q, params in corpus:
            t0 = time.perf_counter()
            ours = c.post("/api/v1/query_range", data={"query": q, **params}).json()
            t1 = time.perf_counter()
            theirs = c.post(
                "/api/v1/query_range", data={"query": q, **params, "promql": "passthrough"}
            ).json()
            t_engine, t_pass = t_engine + t1 - t0, t_pass + time.perf_counter() - t1
            same += not compare(theirs, ours)
    return (
        f"compatibility corpus, {len(corpus)} range queries: VictoriaMetrics' engine "
        f"(pass-through) answers {same}/{len(corpus)} identically to perfintel's engine; "
        f"total time engine {t_engine:.2f} s, pass-through {t_pass:.2f} s"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--vm-binary", default="/usr/bin/victoria-metrics")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="remote-store-bench-"))
    base = (int(time.time() * 1000) - 3 * 24 * HOUR) // HOUR * HOUR
    batches = workload(args.series, base)
    try:
        with victoria_metrics(tmp / "vm", free_port(), tmp / "vm.log", args.vm_binary) as vm:
            print(bench_append(vm.base_url, batches, args.repeats, tmp), flush=True)
            ns = uuid.uuid4().hex
            st = store(vm.base_url, ns)
            for b in batches:
                st.append(b)
            st.flush()
            print(bench_select(st, base, max(args.repeats, 10)), flush=True)
            st.close()
            for line in bench_queries(vm.base_url, ns, base, max(args.repeats, 5), tmp):
                print(line, flush=True)
            print(agreement(vm.base_url, tmp), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
