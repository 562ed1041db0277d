"""The ``outliers`` lease changes hands between api processes: the new holder restores the
members' shares from the shared database (SQLite and PostgreSQL) and goes on scoring."""

from __future__ import annotations

from pathlib import Path

from perfintel.alerting.state.database import open_database
from perfintel.alerting.state.leases import LeaseManager
from perfintel.analysis.outliers import DEFAULT_PCT
from perfintel.batch import SampleBatch
from perfintel.bus.checkpoint import CheckpointStore
from perfintel.bus.roles import LivePeerOutliers
from perfintel.config import load_settings
from perfintel.storage.memory import MemoryStore
from tests.performance.test_outliers_online import STEPS, _by_member, _steps, fleet


def test_the_next_holder_goes_on_from_the_shares_of_the_last(
    tmp_path: Path, database_url: str
) -> None:
    settings = load_settings(
        overrides={
            "data_dir": tmp_path,
            "anomaly": {
                "outlier_groups": [
                    {"selector": "cpu_busy", "by": ["service"], "step": 60, "window": 1800}
                ]
            },
        },
        env={},
    )
    engine = open_database(database_url)
    outputs: dict[str, list[SampleBatch]] = {"a": [], "b": []}

    def holder(name: str) -> LivePeerOutliers:
        return LivePeerOutliers(
            settings,
            MemoryStore(),
            LeaseManager(engine, name, 30.0),
            outputs[name].append,
            CheckpointStore(engine),
            checkpoint_interval_s=3600,  # saved on release only, here
        )

    a, b = holder("a"), holder("b")
    batch, cut = fleet(), 130
    try:
        for t in range(0, cut, 10):
            a.process(_steps(batch, t, t + 10))
            b.process(_steps(batch, t, t + 10))  # the other api process waits for the lease
        assert a.scored and a.lease is not None
        assert b.scored == 0 and b.lease is None
        a.release()  # a shuts down: saves, then lets the lease go
        b.process(_steps(batch, cut - 1, STEPS))
        assert b.lease is not None and b.restored >= 1
        got = _by_member(SampleBatch.concat(outputs["b"]))
        first = min(t for (s, h, t) in got if (s, h) == ("s1", "h3"))
        assert got[("s1", "h3", first)] > DEFAULT_PCT  # still flagged: no window relearnt
    finally:
        b.release()
        engine.dispose()
