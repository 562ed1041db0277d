"""Peer-outliers handover between api processes: what the saved state costs, and how long a
fresh holder takes to flag an ongoing outlier again without it.

1. Cost: ``--members`` members (``--group-size`` hosts a service) scored for a window of
   one-minute steps by ``OnlinePeerOutliers``; then ``state()`` (bytes, seconds: it runs
   every ``bus.checkpoint_interval`` on the holder's tail thread), ``restore`` into a new
   scorer, and one fenced ``CheckpointStore.save``/``load`` round trip through SQLite.
2. Relearning: one host per service runs hot from the start; after a window the lease moves.
   Printed: steps until the hot hosts are flagged again (share > ``outlier_pct``) by a
   restored scorer and by a fresh one, and the flagged share at the first step after it.

    python benchmarks/outliers_handover.py
    python benchmarks/outliers_handover.py --members 1000 10000 100000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perfintel.alerting.state.database import open_database
from perfintel.alerting.state.leases import LeaseManager
from perfintel.analysis.outliers import DEFAULT_PCT
from perfintel.batch import SampleBatch
from perfintel.bus.checkpoint import Checkpoint, CheckpointStore
from perfintel.model import label_set, parse_selector
from perfintel.performance.outliers_online import OnlinePeerOutliers, PeerGroupSpec

MIN = 60_000
T0 = 1_790_000_000_000 - 1_790_000_000_000 % (60 * MIN)


def spec() -> PeerGroupSpec:
    return PeerGroupSpec(parse_selector("cpu_busy"), ("service",), MIN, 60 * MIN)


def fleet(members: int, group: int, steps: range, seed: int) -> SampleBatch:
    """cpu_busy of ``members`` hosts, ``group`` a service; host 0 of each service runs hot."""
    rng = np.random.default_rng(seed)
    series = [
        label_set({"__name__": "cpu_busy", "service": f"s{i // group}", "host": f"h{i % group}"})
        for i in range(members)
    ]
    n = len(steps)
    ts = T0 + MIN * np.repeat(np.asarray(steps, dtype=np.int64), members)
    vals = 50 + rng.normal(0, 1, n * members)
    vals[np.tile(np.arange(members) % group == 0, n)] += 30
    idx = np.tile(np.arange(members, dtype=np.int32), n)
    return SampleBatch(series, idx, ts, vals)


def hot_shares(out: SampleBatch) -> dict[int, float]:
    """Per step: the smallest share among the hot hosts (host h0 of every service)."""
    hot = np.array([dict(s)["host"] == "h0" for s in out.series])[out.series_idx]
    steps = (out.timestamps[hot] - T0) // MIN
    shares = out.values[hot]
    return {int(s): float(shares[steps == s].min()) for s in np.unique(steps)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, nargs="+", default=[1000, 10_000, 100_000])
    ap.add_argument("--group-size", type=int, default=20)
    args = ap.parse_args()
    print(f"cores {os.cpu_count()}, load {Path('/proc/loadavg').read_text().strip()}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="outliers-handover-"))
    engine = open_database(f"sqlite:///{tmp / 'shared.db'}")
    leases = LeaseManager(engine, "bench", 60.0)
    store = CheckpointStore(engine)
    window = 60
    for members in args.members:
        a = OnlinePeerOutliers([spec()], max_members=members)
        for k in range(0, window, 10):
            a.process(fleet(members, args.group_size, range(k, k + 10), k))
        t = time.perf_counter()
        state = a.state()
        t_state = time.perf_counter() - t
        t = time.perf_counter()
        a.state()  # the next saves: the members' labels are encoded already
        t_again = time.perf_counter() - t
        lease = leases.acquire(f"outliers-{members}")
        assert lease is not None
        t = time.perf_counter()
        store.save("outliers", lease, Checkpoint("0-0", [], state))
        loaded = store.load("outliers")
        t_db = time.perf_counter() - t
        assert loaded is not None
        b = OnlinePeerOutliers([spec()], max_members=members)
        t = time.perf_counter()
        n_restored = b.restore(loaded.state)
        t_restore = time.perf_counter() - t
        print(
            f"members {members}: state {len(state):,} B ({len(state) / members:.1f} B/member), "
            f"state() {t_state * 1000:.0f} ms first, {t_again * 1000:.0f} ms next, save+load {t_db * 1000:.0f} ms, "
            f"restore {t_restore * 1000:.0f} ms ({n_restored} members)",
            flush=True,
        )

    # relearning after a handover, restored against fresh (1,000 members)
    members = 1000
    a = OnlinePeerOutliers([spec()], max_members=members)
    a.process(fleet(members, args.group_size, range(0, 2 * window), 0))
    a.flush()
    restored, fresh = OnlinePeerOutliers([spec()]), OnlinePeerOutliers([spec()])
    restored.restore(a.state())
    after = range(2 * window, 4 * window)
    for name, scorer in (("restored", restored), ("fresh", fresh)):
        got = hot_shares(scorer.process(fleet(members, args.group_size, after, 1)))
        first = min(got)
        again = next((s - first + 1 for s in sorted(got) if got[s] > DEFAULT_PCT), None)
        print(
            f"{name}: hot hosts' smallest share at the first step {got[first]:.3f} "
            f"(pct {DEFAULT_PCT}), flagged from step {again} after the handover",
            flush=True,
        )
    engine.dispose()


if __name__ == "__main__":
    main()
