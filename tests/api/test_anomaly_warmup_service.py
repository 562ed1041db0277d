"""No anomaly score before a series' history spans the detector's warm-up (an hour).

Through the real service: a new host's series, scraped every 15 s, once scored from its
10th sample (2.5 minutes in), so ordinary fluctuations of series seen for a few minutes
filled the overview's top anomalies and cost the host health points. Now the online
detector and the detect API both score 0 until the series has an hour of history (the
expected value and band are drawn from the start), a series older than that still scores
a real spike, and the overview says why nothing is listed yet.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from perfintel.analysis.anomaly.seasonal import WARMUP_MS
from perfintel.api.app import create_app
from perfintel.config import load_settings
from perfintel.model import parse_selector
from perfintel.performance.online import OnlineAnomalyDetection
from tests.conftest import ANY_PAST_S

STEP = 15_000
MIN = 60_000
#: the last minute boundary (the overview looks at the last hours of the wall clock)
NOW = int(time.time() * 1000) // MIN * MIN

#: ten minutes at 15 s: ordinary noise, then a step of 8 spreads half-way (scored 2.8
#: from the 10th sample on main)
NEW_TS = np.arange(NOW - 10 * MIN, NOW + 1, STEP)
NEW = 100.0 + np.random.default_rng(11).normal(0, 1.0, NEW_TS.size)
NEW[NEW_TS.size // 2 :] += 8.0
#: 75 minutes at 15 s with a spike of 15 spreads at minute 70
OLD_TS = np.arange(NOW - 75 * MIN, NOW + 1, STEP)
OLD = 100.0 + np.random.default_rng(12).normal(0, 1.0, OLD_TS.size)
SPIKE = int(np.searchsorted(OLD_TS, NOW - 5 * MIN))
OLD[SPIKE] += 15.0

SERIES = {
    "fresh_gauge": ({"instance": "new-host:9100", "service": "new"}, NEW_TS, NEW),
    "seasoned_gauge": ({"instance": "old-host:9100", "service": "old"}, OLD_TS, OLD),
}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data: Path = tmp_path_factory.mktemp("warmup") / "data"
    settings = load_settings(
        overrides={"data_dir": data, "storage": {"raw_retention": ANY_PAST_S}}, env={}
    )
    with TestClient(create_app(settings, collectors=False)) as c:
        for metric, (labels, ts, v) in SERIES.items():
            samples = [[int(t), float(x)] for t, x in zip(ts, v, strict=True)]
            body = {"series": [{"metric": metric, "labels": labels, "samples": samples}]}
            r = c.post("/api/v1/ingest", json=body)
            assert r.status_code == 200, r.text
        det = c.app.state.anomaly  # type: ignore[attr-defined]
        assert isinstance(det, OnlineAnomalyDetection)
        assert det.wait_idle(timeout=120)
        yield c


def _online(c: TestClient, output: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    store = c.app.state.store  # type: ignore[attr-defined]
    (found,) = store.select(parse_selector(f'{output}{{for="{metric}"}}'), 0, NOW + MIN)
    return np.asarray(found.timestamps), np.asarray(found.values)


def _detect(c: TestClient, metric: str) -> dict[str, Any]:
    """The detect API over the series' whole life, at its own 15 s step (no bucketing)."""
    r = c.post(
        "/api/v1/performance/detect/anomalies",
        json={"selector": metric, "start": "now-2h", "end": "now+1m", "step": "15s"},
    )
    assert r.status_code == 200, r.text
    (series,) = r.json()["data"]["series"]
    return dict(series)


def test_a_series_seen_for_ten_minutes_scores_zero_but_has_a_band(client: TestClient) -> None:
    ts, score = _online(client, "anomaly_score", "fresh_gauge")
    assert np.array_equal(ts, NEW_TS)
    assert np.all(score == 0.0), score.max()
    # the expected value and band are there from the start (charts), and follow the step
    _, yhat = _online(client, "yhat", "fresh_gauge")
    _, upper = _online(client, "yhat_upper", "fresh_gauge")
    assert np.all(np.isfinite(yhat)) and yhat[-1] > 104
    assert np.all(upper >= yhat)
    found = _detect(client, "fresh_gauge")
    assert found["timestamps"] == NEW_TS.tolist()
    assert max(found["score"]) == 0.0 and max(found["anomaly_score"]) == 0.0
    assert found["anomalies"] == []
    assert all(y is not None for y in found["yhat"])


def test_a_series_with_over_an_hour_of_history_still_scores_a_spike(
    client: TestClient,
) -> None:
    ts, score = _online(client, "anomaly_score", "seasoned_gauge")
    assert np.array_equal(ts, OLD_TS)
    warming = OLD_TS - OLD_TS[0] < WARMUP_MS
    assert np.all(score[warming] == 0.0)
    assert score[SPIKE] > 3.0  # 15 spreads off: far outside the band
    # the detect API and the online detector give the same numbers, warm-up included
    found = _detect(client, "seasoned_gauge")
    assert found["timestamps"] == OLD_TS.tolist()
    assert np.array_equal(np.asarray(found["anomaly_score"], dtype=float), score)
    _, yhat = _online(client, "yhat", "seasoned_gauge")
    assert np.array_equal(np.asarray(found["yhat"], dtype=float), yhat)
    assert any(e["start"] <= OLD_TS[SPIKE] <= e["end"] for e in found["anomalies"])


def test_the_overview_says_scores_start_after_an_hour(client: TestClient) -> None:
    overview = client.app.state.overview  # type: ignore[attr-defined]
    overview.refresh(["signals", "anomalies"])
    doc = client.get("/api/v1/performance/dashboard/realtime").json()["data"]
    assert [a["metric"] for a in doc["anomalies"]] == ["seasoned_gauge"]
    warm = doc["anomaly_warmup"]
    assert warm == {
        "seconds": WARMUP_MS / 1000,
        "series": 2,
        "warming": 1,
        "first_ready": int(NEW_TS[0]) + WARMUP_MS,
    }
    new = client.get("/api/v1/performance/dashboard/realtime?service=new").json()["data"]
    assert new["anomalies"] == []
    assert new["anomaly_warmup"]["warming"] == new["anomaly_warmup"]["series"] == 1
    # the new host's health is not docked for its first minutes' fluctuations
    hosts = {h["name"]: h for h in doc["health"]["hosts"]}
    assert hosts["new-host"]["reasons"] == []  # only those that cost points are listed
