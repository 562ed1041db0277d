"""Series that were constant, then moved: through the real service over a DuckDB store.

A queue at 0 for two days of 1-minute samples, then 1 for five minutes, once scored
3e8 online, topped the overview and was "1000000000.0× the usual spread" and
critical in the detect API. Its band is now at least its resolution's spread, and
the change is told from what to what since when, graded by its size.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from perfintel.api.app import create_app
from perfintel.config import load_settings
from perfintel.model import parse_selector
from perfintel.performance.online import OnlineAnomalyDetection
from tests.conftest import ANY_PAST_S

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
#: the last minute boundary (the overview looks at the last three hours of the wall clock)
NOW = int(time.time() * 1000) // MIN * MIN
TS = np.arange(NOW - 2 * DAY - 4 * MIN, NOW + 1, MIN)  # two days, then the five last minutes
MOVED = TS >= NOW - 4 * MIN
SPIKE = (TS >= NOW - HOUR) & (TS < NOW - HOUR + 4 * MIN)
#: one resolution step over the band: 1 / (3 half-band spreads × 1/sqrt(12))
ONE_STEP_SCORE = math.sqrt(12) / 3


def _latency() -> np.ndarray:
    """A daily sine around 100 with noise and a +50 incident an hour ago: a real anomaly."""
    v = 100 + 30 * np.sin(2 * np.pi * (TS % DAY) / DAY)
    v = v + np.random.default_rng(7).normal(0, 1.5, TS.size)
    return np.where(SPIKE, v + 50, v)


#: a queue at 0 for two days that then holds a few items (Poisson, mean 0.7) for 8 hours
BUSY_TS = np.arange(NOW - 2 * DAY - 8 * HOUR, NOW + 1, MIN)
BUSY_FROM = NOW - 8 * HOUR
BUSY = np.where(
    BUSY_TS >= BUSY_FROM, np.random.default_rng(1).poisson(0.7, BUSY_TS.size), 0
).astype(float)

SERIES: dict[str, tuple[dict[str, str], np.ndarray, np.ndarray]] = {
    "queue_length": ({"host": "a"}, TS, np.where(MOVED, 1.0, 0.0)),
    "stuck_gauge": ({"host": "a"}, TS, np.where(MOVED, 13.0, 3.0)),
    "api_latency": ({"host": "a"}, TS, _latency()),
    "busy_queue": ({"host": "a"}, BUSY_TS, BUSY),
}


def _ingest(
    c: TestClient, metric: str, labels: dict[str, str], ts: np.ndarray, v: np.ndarray
) -> None:
    """Through the real endpoint, four hours of samples per request."""
    for i in range(0, ts.size, 240):
        samples = [[int(t), float(x)] for t, x in zip(ts[i : i + 240], v[i : i + 240], strict=True)]
        body = {"series": [{"metric": metric, "labels": labels, "samples": samples}]}
        r = c.post("/api/v1/ingest", json=body)
        assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data: Path = tmp_path_factory.mktemp("flat") / "data"
    settings = load_settings(
        overrides={"data_dir": data, "storage": {"raw_retention": ANY_PAST_S}}, env={}
    )
    with TestClient(create_app(settings, collectors=False)) as c:
        for metric, (labels, ts, v) in SERIES.items():
            _ingest(c, metric, labels, ts, v)
        det = c.app.state.anomaly  # type: ignore[attr-defined]
        assert isinstance(det, OnlineAnomalyDetection)
        assert det.wait_idle(timeout=120)
        yield c


def _online(c: TestClient, output: str, metric: str, start_ms: int = 0) -> np.ndarray:
    store = c.app.state.store  # type: ignore[attr-defined]
    found = store.select(parse_selector(f'{output}{{for="{metric}"}}'), start_ms, NOW + DAY)
    assert len(found) == 1
    return np.asarray(found[0].values)


def _detect(c: TestClient, metric: str) -> dict[str, Any]:
    r = c.post(
        "/api/v1/performance/detect/anomalies",
        json={"selector": metric, "start": "now-1d", "end": "now+1m"},
    )
    assert r.status_code == 200, r.text
    (series,) = r.json()["data"]["series"]
    return dict(series)


def test_online_score_of_a_one_step_move_is_bounded_by_the_resolution(
    client: TestClient,
) -> None:
    score = _online(client, "anomaly_score", "queue_length")
    # still outside the band (it did change) but by one resolution step, not 3e8
    assert np.nanmax(score) == pytest.approx(ONE_STEP_SCORE)
    lower = _online(client, "yhat_lower", "queue_length")
    upper = _online(client, "yhat_upper", "queue_length")
    # the band of a series that sat at 0: ±3 spreads of a grid of step 1
    assert upper[-6] == pytest.approx(3 / math.sqrt(12))
    assert lower[-6] == pytest.approx(-3 / math.sqrt(12))
    # the size of the move shows: ten steps score ten times more
    stuck = _online(client, "anomaly_score", "stuck_gauge")
    assert np.nanmax(stuck) == pytest.approx(10 * ONE_STEP_SCORE)


def test_a_series_that_starts_moving_soon_has_a_band_of_its_new_spread(
    client: TestClient,
) -> None:
    """Its learnt spread starts at ~0 and the learning is clipped at a few spreads: a band
    at least at the resolution learns the new spread in about an hour (it took ~6 hours
    of nearly every sample "outside its band")."""
    score = _online(client, "anomaly_score", "busy_queue", BUSY_FROM + HOUR)
    assert len(score) == 7 * 60 + 1
    assert (score > 1).mean() < 0.05


def test_detect_tells_a_change_from_constant_from_what_to_what_since_when(
    client: TestClient,
) -> None:
    series = _detect(client, "queue_length")
    (event,) = series["anomalies"]
    assert event["start"] == int(TS[MOVED][0])
    assert event["peak_value"] == 1.0 and event["expected"] == 0.0
    assert event["severity"] == "low"
    text = event["explanation"]
    assert "×" not in text
    assert text.startswith("constant at 0 for at least 2d (since ")
    assert "now 1: a change of +1 (1 step of its resolution 1)" in text
    assert max(a for a in series["anomaly_score"] if a is not None) < 2


def test_severity_of_a_change_from_constant_follows_its_size(client: TestClient) -> None:
    (event,) = _detect(client, "stuck_gauge")["anomalies"]
    assert event["severity"] == "critical"
    assert "constant at 3 for at least 2d" in event["explanation"]
    assert "now 13: a change of +10 (10 steps of its resolution 1)" in event["explanation"]


def test_the_overview_lists_the_real_incident_above_a_one_step_move(client: TestClient) -> None:
    overview = client.app.state.overview  # type: ignore[attr-defined]
    overview.refresh(["signals", "anomalies"])
    doc = client.get("/api/v1/performance/dashboard/realtime").json()["data"]
    listed = {a["metric"]: a for a in doc["anomalies"]}
    order = [a["metric"] for a in doc["anomalies"]]
    assert order.index("api_latency") < order.index("queue_length")
    queue = listed["queue_length"]
    assert queue["online_peak_score"] == pytest.approx(ONE_STEP_SCORE)
    assert queue["severity"] == "low"
    assert queue["explanation"].startswith("constant at 0 for at least 1d")
