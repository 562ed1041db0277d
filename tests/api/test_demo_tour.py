"""The demo's tour answers what it says it shows: the change-impact line it prints finds the
regressing deploy it planted, significant, over the real API and a real DuckDB file."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from perfintel.api.app import create_app
from perfintel.config import load_settings
from perfintel.demo import _REGRESSION, demo_events, demo_tour, generate_demo

MIN = 60_000
END = int(time.time() * 1000) // MIN * MIN
DAYS = 7  # the regressing deploy lands within the last week


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data = Path(tmp_path_factory.mktemp("tour")) / "data"
    settings = load_settings(overrides={"data_dir": data, "anomaly": {"enabled": False}}, env={})
    with TestClient(create_app(settings, collectors=False)) as client:
        store = client.app.state.store  # type: ignore[attr-defined]
        for batch in generate_demo(end_ms=END, days=DAYS, step_s=60):
            store.append(batch)
        store.flush(compact=True)
        yield client


def test_the_tours_change_impact_finds_the_planted_regression(demo: TestClient) -> None:
    tour = demo_tour(demo_events(end_ms=END, days=DAYS, step_s=60))
    [args] = [a for _, a in tour if a[:2] == ["analyze", "change-impact"]]
    selector, annotation = args[2], args[args.index("--annotation") + 1]
    body = {"selector": selector, "annotation": annotation, "end": END / 1000}
    r = demo.post("/api/v1/performance/analyze/change-impact", json=body)
    assert r.status_code == 200, r.text
    results = r.json()["data"]["results"]
    assert {x["labels"]["service"] for x in results} == {_REGRESSION[0]}
    # the median latency was multiplied by 1.4: the mean follows, on every instance
    for x in results:
        assert x["significant"] and 0.2 < x["relative"] < 0.5, x
