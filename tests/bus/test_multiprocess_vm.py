"""Scale-out end to end on a shared store: every process is a real ``perfintel serve`` on
the VictoriaMetrics backend (a namespace of its own), all running at the same time — two
ingest processes, two workers and one API process — with Redis (a unique stream prefix)
and a fresh PostgreSQL database.

Two clients push remote_write as fast as they can for ``PUSH_S`` seconds, each to its own
ingest process. Halfway one worker is SIGKILLed, a little later one ingest process; its
client fails over to the other one. Only 2xx answers count as acknowledged. Then: every
acknowledged sample is answered by the API process's PromQL, every series has the scores
one uninterrupted detector would have computed (the workers write them to
VictoriaMetrics), and the surviving worker resumed the dead one's shards from their
checkpoints. Meanwhile the API process evaluates an alerting rule over the shared store; it
fires once, and its webhook notification reaches a local receiver exactly once.
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest

from perfintel.batch import SampleBatch
from perfintel.ingest.remote_write import encode_remote_write
from perfintel.model import label_set, parse_selector
from perfintel.performance.online import OnlineAnomalyDetection
from perfintel.storage.memory import MemoryStore
from tests.alerting.notify_helpers import HttpReceiver
from tests.bus.multiprocess import WRITE, bus_env, shard_holders, wait_drained, wait_for_holders
from tests.conftest import Server, start_server

SHARDS, SERIES_PER_CLIENT = 4, 100
PUSH_S = float(os.environ.get("PERFINTEL_TEST_PUSH_S", "45"))
STEP_MS = 1_000
MAX_STEPS = 12_000  # t0 + MAX_STEPS steps stays in the past

# evaluated by the API process at "now", over the samples pushed hours back: fires once there
# are samples, and stays firing (one notification, never resolved during the test)
RULES = """
groups:
  - name: scale-out
    interval: 2s
    rules:
      - alert: PodReporting
        expr: count_over_time(svc_latency{pod="c0p0"}[5h]) > 20
        labels: {severity: page}
"""
AM_YML = """\
route:
  receiver: team
  group_by: [alertname]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: team
    webhook_configs: [{{url: '{url}/team'}}]
"""


@dataclass
class Client:
    """Pushes its own series, step after step, each step retried until a 2xx: on a
    connection error it fails over to the next ingest process for good."""

    index: int
    targets: list[str]
    t0_ms: int
    acked: list[SampleBatch] = field(default_factory=list)
    failovers: int = 0
    pushbacks: int = 0
    error: BaseException | None = None

    def batch(self, k: int, rng: np.random.Generator) -> SampleBatch:
        n = SERIES_PER_CLIENT
        series = [
            label_set({"__name__": "svc_latency", "pod": f"c{self.index}p{i}"}) for i in range(n)
        ]
        vals = 50 + 5 * np.cos(np.arange(n) + k / 7) + rng.normal(0, 1, n)
        if k % 97 == 96:
            vals[(3 * k) % n] += 40
        return SampleBatch(
            series,
            np.arange(n, dtype=np.int32),
            np.full(n, self.t0_ms + k * STEP_MS, np.int64),
            np.round(vals, 6),  # within VictoriaMetrics' 12 significant digits: read back exact
        )

    def run(self, stop: threading.Event) -> None:
        rng = np.random.default_rng(2026 + self.index)
        try:
            with httpx.Client(timeout=10) as http:
                k = 0
                while not stop.is_set() and k < MAX_STEPS:
                    b = self.batch(k, rng)
                    self._send(http, encode_remote_write(b))
                    self.acked.append(b)
                    k += 1
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _send(self, http: httpx.Client, body: bytes) -> None:
        deadline = time.monotonic() + 30
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
        raise AssertionError("a step was not acknowledged within 30 s")


def _query_matrix(api: Server, query: str, at_s: float) -> dict[str, list[tuple[float, float]]]:
    r = httpx.get(api.url + "/api/v1/query", params={"query": query, "time": at_s}, timeout=60)
    assert r.status_code == 200, r.text
    return {
        m["metric"]["pod"]: [(float(t), float(v)) for t, v in m["values"]]
        for m in r.json()["data"]["result"]
    }


def _samples(batches: list[SampleBatch]) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    for b in batches:
        for i, ls in enumerate(b.series):
            out.setdefault(dict(ls)["pod"], []).append((b.timestamps[i] / 1000, b.values[i]))
    return out


@pytest.mark.slow
def test_all_roles_at_once_on_victoriametrics_survive_a_killed_worker_and_ingest(
    tmp_path: Path, redis_prefix: str, postgres_url: str, victoria_metrics: str
) -> None:
    started = time.monotonic()
    common = {
        **bus_env(redis_prefix, postgres_url, SHARDS),
        "PERFINTEL_STORAGE__BACKEND": "victoriametrics",
        "PERFINTEL_STORAGE__REMOTE__WRITE_URL": victoria_metrics + "/api/v1/write",
        "PERFINTEL_STORAGE__REMOTE__READ_URL": victoria_metrics,
        "PERFINTEL_STORAGE__REMOTE__FLUSH_URL": victoria_metrics + "/internal/force_flush",
        "PERFINTEL_STORAGE__REMOTE__NAMESPACE": f"pi_test=mp-{uuid.uuid4().hex[:12]}",
    }
    hook = HttpReceiver()
    rules, am = tmp_path / "rules.yml", tmp_path / "alertmanager.yml"
    rules.write_text(RULES)
    am.write_text(AM_YML.format(url=hook.url))
    servers: list[Server] = []
    try:
        ingest = [
            start_server(tmp_path / f"ingest{i}", env={**common, "PERFINTEL_ROLE": "ingest"})
            for i in range(2)
        ]
        servers += ingest
        workers = [
            start_server(tmp_path / f"worker{i}", env={**common, "PERFINTEL_ROLE": "worker"})
            for i in range(2)
        ]
        servers += workers
        api_env = {
            **common,
            "PERFINTEL_ROLE": "api",
            "PERFINTEL_ALERTING__RULE_FILES": str(rules),
            "PERFINTEL_ALERTING__ALERTMANAGER_CONFIG": str(am),
        }
        api = start_server(tmp_path / "api", env=api_env)
        servers.append(api)
        wait_for_holders(postgres_url, SHARDS, 2, 30)  # the second worker gets its share

        t0 = (int(time.time()) - 4 * 3600) * 1000
        clients = [Client(i, [ingest[i].url, ingest[1 - i].url], t0) for i in range(2)]
        stop = threading.Event()
        threads = [threading.Thread(target=c.run, args=(stop,)) for c in clients]
        push_started = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(PUSH_S / 2)
        survivor_log_from = workers[1].log.stat().st_size
        workers[0].kill9()  # its shards' state lives on in the checkpoints
        time.sleep(PUSH_S / 10)
        ingest[1].kill9()  # client 1 fails over to ingest 0
        time.sleep(max(0.0, PUSH_S - (time.monotonic() - push_started)))
        stop.set()
        for t in threads:
            t.join(60)
        push_s = time.monotonic() - push_started
        for c in clients:
            assert c.error is None, repr(c.error)
        assert clients[1].failovers >= 1  # it did lose its ingest process
        acked = [b for c in clients for b in c.acked]
        n_acked = sum(len(b) for b in acked)
        print(
            f"\n{n_acked} samples acknowledged in {push_s:.1f} s "
            f"({len(acked)} requests, {[c.failovers for c in clients]} failovers, "
            f"{[c.pushbacks for c in clients]} pushbacks)"
        )

        wait_drained(redis_prefix, SHARDS, postgres_url, 120)
        survivor = workers[1].url.rsplit(":", 1)[1]
        assert all(f":{survivor}:" in h for h in shard_holders(postgres_url).values())

        # every acknowledged sample, through the API process's PromQL (samples written by
        # other processes are searchable in VictoriaMetrics within about a second)
        want = _samples(acked)
        span_s = (max(len(c.acked) for c in clients) + 10) * STEP_MS // 1000
        at = t0 / 1000 + span_s
        asked = time.monotonic()
        deadline = asked + 15
        while True:
            got = _query_matrix(api, f"svc_latency[{span_s}s]", at)
            if got == want or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        print(f"every sample answered after {time.monotonic() - asked:.1f} s of asking")
        assert set(got) == set(want) and len(want) == 2 * SERIES_PER_CLIENT
        for pod, samples in want.items():
            assert got[pod] == samples, pod

        # every score, as one uninterrupted detector computes them, written by the workers
        reference = MemoryStore()
        det = OnlineAnomalyDetection(reference, compact=True)  # a worker's default
        for c in clients:
            for b in c.acked:
                det.process(b)
        want_scores = {
            dict(x.labels)["pod"]: [
                (t / 1000, v) for t, v in zip(x.timestamps, x.values, strict=True)
            ]
            for x in reference.select(parse_selector("anomaly_score"), 0, 2**62)
        }
        deadline = time.monotonic() + 15
        while True:
            got_scores = _query_matrix(api, f"anomaly_score[{span_s}s]", at)
            if {p: len(s) for p, s in got_scores.items()} == {
                p: len(s) for p, s in want_scores.items()
            } or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert set(got_scores) == set(want_scores) and len(want_scores) == 2 * SERIES_PER_CLIENT
        for pod, scores in want_scores.items():
            assert len(got_scores[pod]) == len(scores), pod  # every score computed, none twice
            assert np.allclose(np.array(got_scores[pod]), np.array(scores), rtol=1e-9, atol=1e-9), (
                pod
            )

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
            s.stop()
        hook.close()
    assert "every acknowledged sample is in the remote store" in workers[1].log.read_text()
    print(f"test took {time.monotonic() - started:.1f} s")
