"""Scale-out end to end on a shared store: every process is a real ``perfintel serve`` on
the VictoriaMetrics backend, all running at the same time — two ingest processes, two
workers and one API process — with Redis (a unique stream prefix), a fresh PostgreSQL
database (leases, the workers' checkpoints, the alerting state) and a VictoriaMetrics of
the test's own.

Four clients (two per ingest process) push ``TOTAL_SAMPLES`` (5 M) samples by remote_write,
each request ``SERIES_PER_CLIENT`` series x ``STEPS_PER_REQUEST`` samples, as a real
Prometheus batches them; the payloads are encoded before the push starts, so the clients
measure the servers, not the encoder. Halfway one worker is SIGKILLed, a little later one
ingest process; its clients fail over to the other one. Ingest answers 503 (Retry-After)
while a shard is ``MAX_BEHIND`` entries behind, so the clients wait for the workers. Only 2xx
answers count as acknowledged, and each request is retried until one comes.

Then, through the API process: every acknowledged sample is there (per series, the count
and the sum over the pushed window, evaluated by VictoriaMetrics; and every sample of some
series of the killed worker's shards, by perfintel's engine), every anomaly score one
uninterrupted detector would have computed is there (the same checks on
``anomaly_score``), and the surviving worker resumed the dead one's shards from their
checkpoints in PostgreSQL. Meanwhile the API process evaluates an alerting rule over the
shared store; it fires once, and its webhook notification reaches a local receiver once.

Delivery is at least once: a request whose ingest process died before answering is sent
again (the samples may be stored twice), and the survivor re-scores the entries after the
dead worker's last checkpoint (the same scores again). The test's VictoriaMetrics runs with
``-dedup.minScrapeInterval=1ms``, as a deployment should (docs/scale-out.md), so a
repeated (series, timestamp) counts once in its PromQL.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
import sqlalchemy as sa

from perfintel.batch import SampleBatch
from perfintel.bench.harness import ServerProcess
from perfintel.bench.harness import victoria_metrics as vm_process
from perfintel.bus.sharding import shard_of
from perfintel.ingest.remote_write import encode_remote_write
from perfintel.model import LabelSet, label_set
from perfintel.performance.online import OnlineAnomalyDetection
from perfintel.storage.base import AppendResult
from tests.alerting.notify_helpers import HttpReceiver
from tests.bus.multiprocess import (
    WEBHOOK_AM_YML,
    WRITE,
    bus_env,
    shard_holders,
    vm_store_env,
    wait_drained,
    wait_for_holders,
)
from tests.conftest import VM_BINARY, Server, free_port, start_server

SHARDS, CLIENTS = 4, 4
SERIES_PER_CLIENT = int(os.environ.get("PERFINTEL_TEST_SERIES", "1250"))
STEPS_PER_REQUEST = 8  # 1,250 series x 8 samples: 10,000 samples a request
TOTAL_SAMPLES = int(os.environ.get("PERFINTEL_TEST_SAMPLES", "5000000"))
REQUESTS = math.ceil(TOTAL_SAMPLES / (CLIENTS * SERIES_PER_CLIENT * STEPS_PER_REQUEST))
STEP_MS = 1_000
MAX_BEHIND = 100  # entries a shard (one per request): a fifth of the push
SPOT_SERIES = 24  # series of the killed worker's shards compared sample by sample

# evaluated by the API process at "now", over the samples pushed hours back: fires once there
# are samples, and stays firing (one notification, never resolved during the test). It reads
# a small metric: the rule evaluator reads every series of a metric name it needs
# (``RoundReader``), and all of ``svc_latency`` is 5 M samples every round.
RULES = """
groups:
  - name: scale-out
    interval: 2s
    rules:
      - alert: PodReporting
        expr: count_over_time(svc_requests{client="c0"}[5h]) > 20
        labels: {severity: page}
"""


def pod_series(client: int) -> list[LabelSet]:
    """The ``svc_latency`` series of a client, then its one ``svc_requests`` series."""
    return [
        *(
            label_set({"__name__": "svc_latency", "pod": f"c{client}p{i}"})
            for i in range(SERIES_PER_CLIENT)
        ),
        label_set({"__name__": "svc_requests", "client": f"c{client}"}),
    ]


def request_batch(client: int, k: int, series: list[LabelSet], t0_ms: int) -> SampleBatch:
    """Request ``k`` of a client: every pod, ``STEPS_PER_REQUEST`` steps, a spike now and
    then, and the request count (deterministic: the checks build the same batches again)."""
    n, steps = len(series) - 1, STEPS_PER_REQUEST
    rng = np.random.default_rng((2026, client, k))
    step = k * steps + np.repeat(np.arange(steps), n)
    idx = np.tile(np.arange(n, dtype=np.int32), steps)
    vals = 50 + 5 * np.cos(idx + step / 7) + rng.normal(0, 1, n * steps)
    spikes = step % 97 == 96
    vals[spikes & (idx == (3 * step) % n)] += 40
    return SampleBatch(
        series,
        np.append(idx, np.int32(n)),
        t0_ms + np.append(step, k * steps).astype(np.int64) * STEP_MS,
        # within VictoriaMetrics' 12 significant digits: read back exact
        np.append(np.round(vals, 6), k + 1.0),
    )


@dataclass
class Client:
    """Sends its pre-encoded requests in order, each retried until a 2xx: on a connection
    error it fails over to the next ingest process for good."""

    index: int
    targets: list[str]
    bodies: list[bytes]
    acked: int = 0  # requests acknowledged
    failovers: int = 0
    pushbacks: int = 0
    error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(timeout=30) as http:
                for body in self.bodies:
                    self._send(http, body)
                    self.acked += 1
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _send(self, http: httpx.Client, body: bytes) -> None:
        deadline = time.monotonic() + 300  # held back while the survivor takes over, too
        while time.monotonic() < deadline:
            try:
                r = http.post(self.targets[0] + "/api/v1/write", content=body, headers=WRITE)
            except httpx.TransportError:
                self.failovers += 1
                self.targets.append(self.targets.pop(0))
                continue
            if r.status_code // 100 == 2:
                return
            if r.status_code == 503:  # the bus pushes back: wait as told
                self.pushbacks += 1
                time.sleep(float(r.headers.get("Retry-After", "0.2")))
                continue
            raise AssertionError(f"remote write: HTTP {r.status_code} {r.text[:300]}")
        raise AssertionError("a request was not acknowledged within 300 s")


class ScoreTally:
    """A ``SampleWriter`` for the reference detector: per pod, how many anomaly scores and
    their sum, and every score of the ``keep`` pods (20 M outputs do not fit a MemoryStore)."""

    def __init__(self, pods: list[str], keep: set[str]) -> None:
        self.number = {p: i for i, p in enumerate(pods)}
        self.keep = keep
        self.count = np.zeros(len(pods), np.int64)
        self.total = np.zeros(len(pods))
        self.kept: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        self._code: dict[LabelSet, int] = {}  # output series -> pod number, -1: not a score

    def code(self, labels: LabelSet) -> int:
        got = self._code.get(labels)
        if got is None:
            d = dict(labels)
            got = self._code[labels] = (
                self.number[d["pod"]] if d["__name__"] == "anomaly_score" and "pod" in d else -1
            )
        return got

    def append(self, batch: SampleBatch) -> AppendResult:
        codes = np.fromiter(map(self.code, batch.series), np.int64, len(batch.series))
        per_sample = codes[batch.series_idx]
        mine = per_sample >= 0
        pod, ts, vals = per_sample[mine], batch.timestamps[mine], batch.values[mine]
        self.count += np.bincount(pod, minlength=len(self.count))
        self.total += np.bincount(pod, weights=vals, minlength=len(self.total))
        for name in self.keep:
            at = pod == self.number[name]
            self.kept.setdefault(name, []).append((ts[at], vals[at]))
        return AppendResult(accepted=len(batch))


def _query(api: Server, query: str, at_s: float, mode: str) -> list[dict[str, object]]:
    r = httpx.get(
        api.url + "/api/v1/query",
        params={"query": query, "time": at_s, "promql": mode},
        timeout=120,
    )
    assert r.status_code == 200, r.text[:500]
    result: list[dict[str, object]] = r.json()["data"]["result"]
    return result


def _per_pod(api: Server, query: str, at_s: float) -> dict[str, float]:
    """An instant vector by ``pod``, evaluated by VictoriaMetrics (one row per series)."""
    out: dict[str, float] = {}
    for m in _query(api, query, at_s, "passthrough"):
        pod = m["metric"]["pod"]  # type: ignore[index]
        assert pod not in out, (query, pod)
        out[pod] = float(m["value"][1])  # type: ignore[index]
    return out


def _matrix(api: Server, query: str, at_s: float) -> dict[str, np.ndarray]:
    """A range vector by ``pod``, evaluated by perfintel's engine: rows of (t, v)."""
    return {
        m["metric"]["pod"]: np.array(m["values"], dtype=np.float64)  # type: ignore[index]
        for m in _query(api, query, at_s, "engine")
    }


def _print_usage(name: str, pid: int) -> None:
    cpu = psutil.Process(pid).cpu_times()
    status = Path(f"/proc/{pid}/status").read_text()
    peak = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) // 1024  # type: ignore[union-attr]
    print(f"{name}: {cpu.user + cpu.system:.1f} s of CPU, peak {peak} MiB resident")


@pytest.fixture
def dedup_vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A VictoriaMetrics of this test's own, deduplicating repeated (series, timestamp)."""
    root = tmp_path_factory.mktemp("vm-dedup")
    with vm_process(
        root / "data",
        free_port(),
        root / "vm.log",
        VM_BINARY,
        extra_args=("-dedup.minScrapeInterval=1ms",),
    ) as vm:
        yield vm


@pytest.mark.slow
def test_all_roles_at_once_on_victoriametrics_survive_a_killed_worker_and_ingest(
    tmp_path: Path, redis_prefix: str, postgres_url: str, dedup_vm: ServerProcess
) -> None:
    vm = dedup_vm.base_url
    started = time.monotonic()
    assert postgres_url.startswith("postgresql")  # leases, checkpoints, alerting state
    common = {
        **bus_env(redis_prefix, postgres_url, SHARDS),
        **vm_store_env(vm, f"mp-{uuid.uuid4().hex[:12]}"),
        # ingest answers 503 (Retry-After) while a shard is 100 entries behind: the clients
        # outpace the workers, so they are held back instead of queueing 5 M samples in Redis
        "PERFINTEL_BUS__MAX_BEHIND": str(MAX_BEHIND),
        "PERFINTEL_BUS__RETRY_AFTER": "0.5s",
    }
    hook = HttpReceiver()
    rules, am = tmp_path / "rules.yml", tmp_path / "alertmanager.yml"
    rules.write_text(RULES)
    am.write_text(WEBHOOK_AM_YML.format(url=hook.url))

    t0 = (int(time.time()) - 4 * 3600) * 1000
    series = [pod_series(c) for c in range(CLIENTS)]
    bodies = [
        [encode_remote_write(request_batch(c, k, series[c], t0)) for k in range(REQUESTS)]
        for c in range(CLIENTS)
    ]
    per_request = SERIES_PER_CLIENT * STEPS_PER_REQUEST + 1
    total = CLIENTS * REQUESTS * per_request
    print(f"\n{total} samples encoded in {sum(len(b) for bs in bodies for b in bs)} bytes")

    servers: list[Server] = []
    try:
        api_env = {
            **common,
            "PERFINTEL_ROLE": "api",
            "PERFINTEL_ALERTING__RULE_FILES": str(rules),
            "PERFINTEL_ALERTING__ALERTMANAGER_CONFIG": str(am),
        }
        roles = [("ingest0", "ingest"), ("ingest1", "ingest"), ("worker0", "worker")]
        roles += [("worker1", "worker"), ("api", "api")]
        # started at once (each takes seconds to import and open its connections)
        with ThreadPoolExecutor(len(roles)) as pool:
            started_servers = [
                pool.submit(
                    start_server,
                    tmp_path / name,
                    env=api_env if role == "api" else {**common, "PERFINTEL_ROLE": role},
                )
                for name, role in roles
            ]
            for f in started_servers:
                with contextlib.suppress(Exception):  # the result below raises it
                    servers.append(f.result())
        ingest0, ingest1, worker0, worker1, api = (f.result() for f in started_servers)
        ingest, workers = [ingest0, ingest1], [worker0, worker1]
        wait_for_holders(postgres_url, SHARDS, 2, 30)  # the second worker gets its share
        print(f"encoded and started in {time.monotonic() - started:.1f} s")
        killed_tag = f":{workers[0].port}:"
        killed_shards = {
            int(name.rsplit(":", 1)[1])
            for name, holder in shard_holders(postgres_url).items()
            if killed_tag in holder
        }
        assert killed_shards

        clients = [
            Client(c, [ingest[c % 2].url, ingest[1 - c % 2].url], bodies[c]) for c in range(CLIENTS)
        ]
        threads = [threading.Thread(target=c.run) for c in clients]
        push_started = time.monotonic()
        for t in threads:
            t.start()

        def acked() -> int:
            return sum(c.acked for c in clients)

        def wait_acked(n: int) -> None:
            while acked() < n and any(t.is_alive() for t in threads):
                time.sleep(0.05)

        wait_acked(CLIENTS * REQUESTS // 2)
        survivor_log_from = workers[1].log.stat().st_size
        workers[0].kill9()  # its shards' state lives on in the checkpoints
        killed_worker_at = acked()
        wait_acked(CLIENTS * REQUESTS * 6 // 10)
        ingest[1].kill9()  # clients 1 and 3 fail over to ingest 0
        killed_ingest_at = acked()
        for t in threads:
            t.join()
        push_s = time.monotonic() - push_started
        for c in clients:
            assert c.error is None, repr(c.error)
        assert all(clients[c].failovers >= 1 for c in (1, 3))  # they did lose their process
        n_acked = acked() * per_request
        assert n_acked == total >= TOTAL_SAMPLES
        print(
            f"{n_acked} samples acknowledged in {push_s:.1f} s ({n_acked / push_s:,.0f}/s; "
            f"{acked()} requests, worker killed after {killed_worker_at}, ingest after "
            f"{killed_ingest_at}; {[c.failovers for c in clients]} failovers, "
            f"{[c.pushbacks for c in clients]} pushbacks; load {os.getloadavg()[0]:.1f})"
        )

        wait_drained(redis_prefix, SHARDS, postgres_url, 600)
        drained_s = time.monotonic() - push_started
        survivor = f":{workers[1].port}:"
        assert all(survivor in h for h in shard_holders(postgres_url).values())
        print(f"the workers scored everything {drained_s:.1f} s after the push started")
        # the checkpoints the survivor restored are in PostgreSQL, one per shard
        engine = sa.create_engine(postgres_url)
        try:
            with engine.connect() as conn:
                saved = conn.execute(sa.text("SELECT count(*) FROM bus_checkpoints")).scalar()
        finally:
            engine.dispose()
        assert saved == SHARDS

        # what the other processes wrote is searchable once VictoriaMetrics flushed
        httpx.get(vm + "/internal/force_flush", timeout=60).raise_for_status()
        span_s = REQUESTS * STEPS_PER_REQUEST * STEP_MS // 1000 + 10
        at = t0 / 1000 + span_s - 5
        window = f"[{span_s}s]"

        # the reference: every acknowledged sample again, and one uninterrupted detector
        checks_started = time.monotonic()
        spot = sorted(
            (
                dict(s)["pod"]
                for ss in series
                for s in ss[:-1]
                if shard_of(s, SHARDS) in killed_shards
            ),
            key=lambda p: (int(p[1:].split("p")[0]), int(p.split("p")[1])),
        )[:: max(1, CLIENTS * SERIES_PER_CLIENT // 2 // SPOT_SERIES)][:SPOT_SERIES]
        pods = [dict(s)["pod"] for ss in series for s in ss[:-1]]
        tally = ScoreTally(pods, set(spot))
        reference = OnlineAnomalyDetection(tally, compact=True)  # a worker's default
        want_count = np.zeros(len(pods), np.int64)
        want_sum = np.zeros(len(pods))
        want_spot: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        for c in range(CLIENTS):
            mine = slice(c * SERIES_PER_CLIENT, (c + 1) * SERIES_PER_CLIENT)
            for k in range(REQUESTS):
                b = request_batch(c, k, series[c], t0)
                reference.process(b)
                n = SERIES_PER_CLIENT  # the last series is svc_requests
                want_count[mine] += np.bincount(b.series_idx, minlength=n + 1)[:n]
                want_sum[mine] += np.bincount(b.series_idx, weights=b.values, minlength=n + 1)[:n]
                for pod in spot:
                    if pod.startswith(f"c{c}p"):
                        at_pod = b.series_idx == int(pod.split("p")[1])
                        want_spot.setdefault(pod, []).append(
                            (b.timestamps[at_pod], b.values[at_pod])
                        )
        assert int(want_count.sum()) + CLIENTS * REQUESTS == n_acked

        print(f"reference computed in {time.monotonic() - checks_started:.1f} s")
        checks_started = time.monotonic()
        # every acknowledged sample: per series its count and sum (VictoriaMetrics' PromQL),
        # and every sample of the spot series (perfintel's engine, over the exported samples)
        got_count = _per_pod(api, f"count_over_time(svc_latency{window})", at)
        assert got_count == dict(zip(pods, want_count.tolist(), strict=True))
        got_sum = _per_pod(api, f"sum_over_time(svc_latency{window})", at)
        assert np.allclose([got_sum[p] for p in pods], want_sum, rtol=1e-11)
        spot_re = "|".join(spot)
        got_raw = _matrix(api, f'svc_latency{{pod=~"{spot_re}"}}{window}', at)
        assert set(got_raw) == set(spot)
        for pod in spot:
            ts = np.concatenate([p[0] for p in want_spot[pod]]) / 1000
            vals = np.concatenate([p[1] for p in want_spot[pod]])
            order = np.argsort(ts, kind="stable")
            assert np.array_equal(got_raw[pod], np.column_stack((ts[order], vals[order]))), pod

        # every score, as one uninterrupted detector computes them, written by the workers
        got_count = _per_pod(api, f'count_over_time(anomaly_score{{pod!=""}}{window})', at)
        assert got_count == dict(zip(pods, tally.count.tolist(), strict=True))
        got_sum = _per_pod(api, f'sum_over_time(anomaly_score{{pod!=""}}{window})', at)
        assert np.allclose([got_sum[p] for p in pods], tally.total, rtol=1e-9, atol=1e-9)
        got_raw = _matrix(api, f'anomaly_score{{pod=~"{spot_re}"}}{window}', at)
        assert set(got_raw) == set(spot)
        for pod in spot:
            ts = np.concatenate([p[0] for p in tally.kept[pod]]) / 1000
            vals = np.concatenate([p[1] for p in tally.kept[pod]])
            order = np.argsort(ts, kind="stable")
            want = np.column_stack((ts[order], vals[order]))
            assert got_raw[pod].shape == want.shape, pod
            assert np.allclose(got_raw[pod], want, rtol=1e-9, atol=1e-9), pod

        print(f"samples and scores checked in {time.monotonic() - checks_started:.1f} s")
        # the survivor took the dead worker's shards from their checkpoints
        after_kill = workers[1].log.read_bytes()[survivor_log_from:].decode()
        restored = [
            int(n) for n in re.findall(r"restored (\d+) series from the checkpoint", after_kill)
        ]
        assert restored and max(restored) > 0, after_kill[-3000:]
        # no log line per request to the store (httpx's INFO chatter stays off)
        assert "HTTP Request:" not in ingest[0].log.read_text()

        # the rule fired once and its notification arrived once, with its idempotency key
        metrics = httpx.get(api.url + "/metrics", timeout=10).text
        assert "perfintel_notifier_lease_held 1" in metrics
        alerts = httpx.get(api.url + "/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        assert [(a["labels"]["alertname"], a["state"]) for a in alerts] == [
            ("PodReporting", "firing")
        ]
        time.sleep(5)  # more group intervals: a repeat would have arrived by now
        sent = [r for r in hook.requests if r.path == "/team"]
        assert len(sent) == 1, [r.body[:300] for r in sent]
        assert sent[0].headers.get("idempotency-key")
        assert b"PodReporting" in sent[0].body and b'"firing"' in sent[0].body
    finally:
        for s in servers:
            with contextlib.suppress(psutil.Error):  # the killed ones are gone
                _print_usage(s.data_dir.name, s.proc.pid)
            s.stop()
        hook.close()
    _print_usage("VictoriaMetrics", dedup_vm.pid)
    assert "every acknowledged sample is in the remote store" in workers[1].log.read_text()
    print(f"test took {time.monotonic() - started:.1f} s")
