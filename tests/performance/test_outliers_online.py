"""Online outliers among peers, on ingest, over a real DuckDB store (no mocks)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from perfintel.analysis.outliers import DEFAULT_PCT
from perfintel.api.app import create_app, open_store
from perfintel.batch import SampleBatch
from perfintel.config import load_settings
from perfintel.errors import BadInputError
from perfintel.model import label_set, parse_selector
from perfintel.performance.online import OnlineAnomalyDetection
from perfintel.performance.outliers_online import OnlinePeerOutliers, PeerGroupSpec
from perfintel.storage.duckdb import DuckDBStore
from perfintel.telemetry import Registry
from tests.conftest import ANY_PAST_S

MIN = 60_000
HOUR = 60 * MIN
T0 = 1_790_000_000_000 - 1_790_000_000_000 % HOUR
STEPS = 180


def fleet(services: int = 2, hosts: int = 8, seed: int = 0) -> SampleBatch:
    """cpu_busy of ``hosts`` hosts per service, three hours of one-minute samples;
    host h3 of service s1 runs 30 points hot from minute 90."""
    rng = np.random.default_rng(seed)
    ts = T0 + MIN * np.arange(STEPS, dtype=np.int64)
    parts = []
    for s in range(services):
        base = 40 + 10 * s + 10 * np.sin(np.arange(STEPS) / 30)
        for h in range(hosts):
            v = base + rng.normal(0, 1.0, STEPS)
            if s == 1 and h == 3:
                v[90:] += 30
            labels = label_set({"__name__": "cpu_busy", "service": f"s{s}", "host": f"h{h}"})
            parts.append(SampleBatch.from_arrays(labels, ts, v))
    return SampleBatch.concat(parts)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStore]:
    s = open_store(
        load_settings(
            overrides={"data_dir": tmp_path / "data", "storage": {"raw_retention": ANY_PAST_S}},
            env={},
        )
    )
    yield s
    s.close()


def scores(store: DuckDBStore) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    found = store.select(parse_selector("outlier_score"), 0, T0 + 10 * HOUR)
    out = {}
    for s in found:
        d = dict(s.labels)
        assert d["for"] == "cpu_busy" and "__name__" in d
        out[(d["service"], d["host"])] = (s.timestamps, s.values)
    return out


def spec(**kw: object) -> PeerGroupSpec:
    return PeerGroupSpec(parse_selector("cpu_busy"), ("service",), MIN, 30 * MIN, **kw)  # type: ignore[arg-type]


def test_outlier_scores_are_written_per_member_and_step(store: DuckDBStore) -> None:
    det = OnlineAnomalyDetection(
        store, selectors=["nothing_matches"], registry=Registry(), peer_groups=[spec()]
    )
    batch = fleet()
    for t in range(0, STEPS, 15):  # 15 minutes of samples per batch, as ingest delivers them
        sel = (batch.timestamps >= T0 + t * MIN) & (batch.timestamps < T0 + (t + 15) * MIN)
        det.process(
            SampleBatch(
                batch.series, batch.series_idx[sel], batch.timestamps[sel], batch.values[sel]
            )
        )
    got = scores(store)
    assert len(got) == 16 and det.peers.members == 16
    ts, v = got[("s1", "h3")]
    # every completed step is scored (the newest is still open: a member may be late)
    assert len(ts) == STEPS - 1 and ts[0] == T0 and np.all(np.diff(ts) == MIN)
    assert v[:90].max() < 0.2 < v[-1]  # flagged after the change, not before
    first = int(np.argmax(v > 0.2))
    assert 90 < first <= 90 + 8  # ~ pct x window steps
    healthy = [w for k, (_, w) in got.items() if k != ("s1", "h3")]
    assert max(float(w.max()) for w in healthy) < 0.2
    # s0's hosts are compared among themselves: without service s1 their scores are the same
    alone = OnlinePeerOutliers([spec()]).process(fleet(services=1))
    for labels, _, v in alone.iter_series():
        assert np.array_equal(v, got[("s0", dict(labels)["host"])][1])


def test_late_samples_bounds_and_model_outputs(store: DuckDBStore) -> None:
    peers = OnlinePeerOutliers([spec()], excluded_names=("anomaly_score",), max_members=5)
    batch = fleet(services=1, hosts=8)
    out = peers.process(batch)
    assert peers.members == 5 and peers.refused == 3
    assert len(out) == 5 * (STEPS - 1)
    again = peers.process(batch)  # every step but the last is scored already: dropped
    assert len(again) == 0 and peers.late_samples == 5 * (STEPS - 1)
    # a member that falls silent for a whole window no longer holds the others back
    ts = T0 + MIN * np.arange(STEPS, STEPS + 40, dtype=np.int64)
    four = SampleBatch.concat(
        SampleBatch.from_arrays(batch.series[i], ts, np.full(40, 40.0 + i)) for i in range(4)
    )
    more = peers.process(four)
    assert (
        sorted(set(more.timestamps.tolist()))
        == (T0 + MIN * np.arange(STEPS - 1, STEPS + 39)).tolist()
    )
    assert len(more) == 5 + 4 * 39  # the silent member only in the step it had sent
    # while members report step after step, a step waits for the slowest of them
    slow = OnlinePeerOutliers([spec()])
    t = T0 + MIN * np.arange(3, dtype=np.int64)

    def sent(members: range, at: slice) -> SampleBatch:
        return SampleBatch.concat(
            SampleBatch.from_arrays(batch.series[i], t[at], np.full(len(t[at]), 1.0 * i))
            for i in members
        )

    assert len(slow.process(sent(range(4), slice(0, 1)))) == 0  # step 0 may get more data
    assert len(slow.process(sent(range(3), slice(1, 3)))) == 0  # h3 is still at step 0
    assert len(slow.process(sent(range(3, 4), slice(1, 2)))) == 4  # now step 0 is complete
    assert slow.late_samples == 0


def test_service_scores_configured_groups_on_ingest(tmp_path: Path) -> None:
    settings = load_settings(
        overrides={
            "storage": {"raw_retention": ANY_PAST_S},  # fixed timestamps of September 2026
            "data_dir": tmp_path / "data",
            "anomaly": {
                "outlier_groups": [
                    {"selector": "cpu_busy", "by": ["service"], "step": "1m", "window": "30m"}
                ]
            },
        },
        env={},
    )
    with TestClient(create_app(settings, collectors=False)) as c:
        batch = fleet()
        for t in range(0, STEPS, 30):  # live data: every host's last 30 minutes per request
            body = []
            for labels, ts, v in batch.iter_series():
                d = dict(labels)
                sel = (ts >= T0 + t * MIN) & (ts < T0 + (t + 30) * MIN)
                samples = [[int(a), float(b)] for a, b in zip(ts[sel], v[sel], strict=True)]
                body.append({"metric": d.pop("__name__"), "labels": d, "samples": samples})
            r = c.post("/api/v1/ingest", json={"series": body})
            assert r.status_code == 200, r.text
        det = c.app.state.anomaly  # type: ignore[attr-defined]
        assert det.wait_idle(timeout=120)
        got = scores(c.app.state.store)  # type: ignore[attr-defined]
        assert got[("s1", "h3")][1][-1] > 0.2
        assert "perfintel_outlier_members 16\n" in c.get("/metrics").text
        # outlier_score series are never analysed as inputs
        assert det.metrics.series.get() == 16


def _steps(batch: SampleBatch, lo: int, hi: int) -> SampleBatch:
    sel = (batch.timestamps >= T0 + lo * MIN) & (batch.timestamps < T0 + hi * MIN)
    return SampleBatch(
        batch.series, batch.series_idx[sel], batch.timestamps[sel], batch.values[sel]
    )


def _by_member(out: SampleBatch) -> dict[tuple[str, str, int], float]:
    got = {}
    for labels, ts, vals in out.iter_series():
        d = dict(labels)
        for t, v in zip(ts.tolist(), vals.tolist(), strict=True):
            got[(d["service"], d["host"], t)] = v
    return got


def test_a_restored_scorer_goes_on_as_the_first_would_have() -> None:
    batch, cut = fleet(), 130  # host h3 of s1 has run hot for 40 minutes
    a = OnlinePeerOutliers([spec()])
    for t in range(0, cut, 10):
        a.process(_steps(batch, t, t + 10))
    b, fresh = OnlinePeerOutliers([spec()]), OnlinePeerOutliers([spec()])
    assert b.restore(a.state()) >= 1  # at least the hot host has a share
    # the open step's samples reach everyone again (a mean of repeats is the same mean)
    rest = _steps(batch, cut - 1, STEPS)
    want, got, afresh = (_by_member(x.process(rest)) for x in (a, b, fresh))
    assert want and got == want
    first = min(t for (s, h, t) in want if (s, h) == ("s1", "h3"))
    assert want[("s1", "h3", first)] > DEFAULT_PCT  # flagged before and after the handover
    assert afresh[("s1", "h3", first)] < DEFAULT_PCT  # without the state: not yet again


def test_restore_ignores_changed_specs_and_refuses_garbage() -> None:
    a = OnlinePeerOutliers([spec()])
    a.process(_steps(fleet(), 0, 120))
    other = PeerGroupSpec(parse_selector("cpu_busy"), ("host",), MIN, 30 * MIN)
    assert OnlinePeerOutliers([other]).restore(a.state()) == 0
    with pytest.raises(BadInputError):
        OnlinePeerOutliers([spec()]).restore(b"not a state")


def test_after_a_restore_a_step_waits_for_every_member_as_before() -> None:
    # an api process gets the members shard by shard: a restored scorer must not complete
    # a step on the first shard's members and drop the others' samples as late
    batch, cut = fleet(), 130
    a = OnlinePeerOutliers([spec()])
    a.process(_steps(batch, 0, cut))
    a.flush()  # no step left open (open steps are not part of the state)
    b, fresh = OnlinePeerOutliers([spec()]), OnlinePeerOutliers([spec()])
    b.restore(a.state())
    rounds = []  # a few steps a round, each round's members in two parts (shards)
    for k in range(cut, STEPS, 5):
        rest = _steps(batch, k, k + 5)
        first = np.array([dict(s)["host"] < "h4" for s in rest.series])[rest.series_idx]
        rounds += [
            SampleBatch(rest.series, rest.series_idx[m], rest.timestamps[m], rest.values[m])
            for m in (first, ~first)
        ]
    want, got, afresh = ({}, {}, {})  # type: ignore[var-annotated]
    for x, into in ((a, want), (b, got), (fresh, afresh)):
        for part in rounds:
            into.update(_by_member(x.process(part)))
    assert got == want and len({(s, h) for s, h, _ in want}) == 16
    assert a.late_samples == b.late_samples == 0
    assert fresh.late_samples > 0  # the unrestored one dropped the second half as late
