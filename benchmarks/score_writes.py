"""What a bus worker pays to write its scores to VictoriaMetrics, per round.

A worker's round scores ``--series`` series x ``--steps`` samples (5,000 x 8: what the
multi-process test's survivor reads per round) and writes the four detector outputs of each sample
(``anomaly_score``, ``yhat``, ``yhat_lower``, ``yhat_upper``): four times the input, a
few samples per series. Measured on those real outputs (``OnlineAnomalyDetection``):

1. ``encode_remote_write`` of one round's outputs, output samples/s;
2. ``RemoteStore.append`` of them, in a namespace (as every test and a shared TSDB use),
   to a real ``victoria-metrics`` on loopback (fresh data directory), output samples/s;
3. the same without a namespace.

The best of ``--repeats`` passes over ``--rounds`` rounds (the same series every round, as
a worker writes them). Run from the repository root:
``.venv/bin/python benchmarks/score_writes.py`` (about half a minute); with
``PERFINTEL_CHECKOUT=<another checkout>`` it measures that checkout's code.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

# PERFINTEL_CHECKOUT=<another checkout> measures that checkout's code (a before/after)
sys.path.insert(0, os.environ.get("PERFINTEL_CHECKOUT", str(Path(__file__).resolve().parents[1])))

from perfintel.batch import SampleBatch
from perfintel.bench.harness import free_port, victoria_metrics
from perfintel.ingest.remote_write import encode_remote_write
from perfintel.model import label_set
from perfintel.performance.online import OnlineAnomalyDetection
from perfintel.storage.base import AppendResult
from perfintel.storage.victoriametrics import RemoteStore, RemoteStoreOptions


class Keep:
    def __init__(self) -> None:
        self.batches: list[SampleBatch] = []

    def append(self, batch: SampleBatch) -> AppendResult:
        self.batches.append(batch)
        return AppendResult(accepted=len(batch))


def rounds_of_outputs(n_series: int, steps: int, rounds: int) -> list[SampleBatch]:
    series = [label_set({"__name__": "svc_latency", "pod": f"p{i}"}) for i in range(n_series)]
    keep = Keep()
    det = OnlineAnomalyDetection(keep)
    rng = np.random.default_rng(7)
    for k in range(rounds + 1):
        idx = np.tile(np.arange(n_series, dtype=np.int32), steps)
        ts = 1_700_000_000_000 + (k * steps + np.repeat(np.arange(steps), n_series)) * 1000
        vals = np.round(50 + rng.normal(0, 1, n_series * steps), 6)
        det.process(SampleBatch(series, idx, ts.astype(np.int64), vals))
    return keep.batches[1:]  # the first round creates the series


def rate(batches: list[SampleBatch], write: object, repeats: int) -> float:
    n = sum(len(b) for b in batches)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for b in batches:
            write(b)  # type: ignore[operator]
        times.append(time.perf_counter() - t)
    return n / min(times)  # the best pass: the least disturbed by the shared machine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=5000)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    batches = rounds_of_outputs(a.series, a.steps, a.rounds)
    print(
        f"{a.rounds} rounds of {len(batches[0]):,} output samples "
        f"({len(batches[0].series):,} series x {a.steps}); load {os.getloadavg()[0]:.1f}"
    )
    print(
        f"encode_remote_write           {rate(batches, encode_remote_write, a.repeats) / 1e6:5.2f} M samples/s"
    )
    with (
        tempfile.TemporaryDirectory() as d,
        victoria_metrics(Path(d) / "data", free_port(), Path(d) / "vm.log") as vm,
    ):
        for label, ns in (
            ("in a namespace", ("pi_bench", uuid.uuid4().hex)),
            ("no namespace", None),
        ):
            store = RemoteStore(RemoteStoreOptions.single_node(vm.base_url, namespace=ns))
            try:
                r = rate(batches, store.append, a.repeats)
            finally:
                store.close()
            print(f"RemoteStore.append, {label:15s}{r / 1e6:5.2f} M samples/s")


if __name__ == "__main__":
    main()
