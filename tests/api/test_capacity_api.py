"""``/api/v1/performance/capacity/analyze`` over a real DuckDB store."""

from __future__ import annotations

import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from perfintel.batch import SampleBatch
from perfintel.model import label_set

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
END = (int(time.time() * 1000) // HOUR) * HOUR - HOUR
PATH = "/api/v1/performance/capacity/analyze"
SIZE = 1000e9
RATE = 10e9  # bytes per day
USED_NOW = 700e9  # full in 30 days
TRUE_DAYS = (SIZE - USED_NOW) / RATE
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
USAGE_ROOT = 'node_filesystem_avail_bytes{mountpoint="/"}'


def ingest(client: TestClient, labels: dict[str, str], ts: np.ndarray, vals: np.ndarray) -> None:
    store = client.app.state.store  # type: ignore[attr-defined]
    store.append(SampleBatch.from_arrays(label_set(labels), ts, vals))


@pytest.fixture
def disks(client: TestClient) -> TestClient:
    """Two filesystems over 30 days of 5-minute samples: "/" fills at RATE, "/srv" is flat."""
    ts = np.arange(END - 30 * DAY, END, 5 * MIN)
    rng = np.random.default_rng(3)
    used = USED_NOW + RATE * (ts - END) / DAY + rng.normal(0, 0.2e9, ts.size)
    flat = 300e9 + rng.normal(0, 0.2e9, ts.size)
    for mount, u in (("/", used), ("/srv", flat)):
        labels = {"device": "sda1" if mount == "/" else "sdb1", "mountpoint": mount}
        ingest(client, {"__name__": "node_filesystem_avail_bytes", **labels}, ts, SIZE - u)
        ingest(
            client, {"__name__": "node_filesystem_size_bytes", **labels}, ts, np.full(ts.size, SIZE)
        )
    client.app.state.store.flush(compact=True)  # type: ignore[attr-defined]
    return client


DISK_BODY = {
    "usage": "node_filesystem_avail_bytes",
    "usage_kind": "available",
    "capacity": "node_filesystem_size_bytes",
    "horizon_days": 60,
    "resource": "disk",
    "end": END / 1000,
}


def test_linear_fill_exhaustion_within_ten_percent(disks: TestClient) -> None:
    r = disks.post(PATH, json=DISK_BODY)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["step_seconds"] == 3600 and data["source"] == f"tier:{HOUR}"
    assert data["skipped"] == []
    res = {x["labels"]["mountpoint"]: x for x in data["resources"]}
    root = res["/"]
    assert root["capacity_labels"]["__name__"] == "node_filesystem_size_bytes"
    assert root["capacity"] == SIZE
    assert root["utilisation_now"] == pytest.approx(USED_NOW / SIZE, rel=0.01)
    base, more = root["scenarios"]
    assert (base["name"], more["name"]) == ("baseline", "+30% traffic")
    p50 = base["exhaustion"]["p50"]
    assert p50["days"] == pytest.approx(TRUE_DAYS, rel=0.10)
    true_unix = END / 1000 + TRUE_DAYS * 86_400
    assert abs(p50["unix"] - true_unix) <= 0.10 * TRUE_DAYS * 86_400
    assert p50["time"].endswith("Z") and p50["time"][:4].isdigit()
    assert base["exhaustion"]["p10"]["unix"] <= p50["unix"] <= base["exhaustion"]["p90"]["unix"]
    assert base["within_horizon"] and base["probability"] > 0.9
    assert base["sentence"].startswith('disk{device="sda1",mountpoint="/"} full in')
    assert root["summary"] == base["sentence"]
    # capacity needed keeps the P90 peak over 60 days under 80 %
    assert base["capacity_needed"] == pytest.approx((USED_NOW + 60 * RATE) / 0.8, rel=0.05)
    # 30 % more traffic fills the disk sooner
    assert more["exhaustion"]["p50"]["days"] < 0.85 * p50["days"]
    assert root["model"] == "trend" and root["backtest"]["smape"] >= 0
    # the flat one: not within the horizon
    srv = res["/srv"]["scenarios"][0]
    assert srv["exhaustion"] == {"p10": None, "p50": None, "p90": None}
    assert not srv["within_horizon"] and srv["probability"] == 0
    assert "not full within 60.0 days" in srv["sentence"]


def test_capacity_number_match_on_and_skipped(disks: TestClient) -> None:
    body = {
        "usage": 'node_filesystem_avail_bytes{mountpoint="/"}',
        "usage_kind": "available",
        "capacity": SIZE,
        "horizon_days": 60,
        "end": END / 1000,
        "scenarios": [{"name": "as is"}],
    }
    r = disks.post(PATH, json=body)
    assert r.status_code == 200, r.text
    (root,) = r.json()["data"]["resources"]
    assert root["capacity_labels"] is None
    assert root["scenarios"][0]["exhaustion"]["p50"]["days"] == pytest.approx(TRUE_DAYS, rel=0.1)
    # one capacity series for every usage series with match_on=[]
    body.update(capacity='node_filesystem_size_bytes{mountpoint="/"}', match_on=[])
    r = disks.post(PATH, json={**body, "usage": "node_filesystem_avail_bytes"})
    assert len(r.json()["data"]["resources"]) == 2
    # no partner: reported, not fatal
    r = disks.post(PATH, json={**body, "usage": "node_filesystem_avail_bytes", "match_on": None})
    data = r.json()["data"]
    assert [x["labels"]["mountpoint"] for x in data["resources"]] == ["/"]
    (skipped,) = data["skipped"]
    assert skipped["labels"]["mountpoint"] == "/srv" and "no capacity series" in skipped["reason"]


def test_png_answers(disks: TestClient) -> None:
    r = disks.post(PATH, json={**DISK_BODY, "format": "png"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png" and r.content.startswith(PNG_SIGNATURE)
    r = disks.post(PATH, params={"format": "png"}, json=DISK_BODY)
    assert r.content.startswith(PNG_SIGNATURE)
    params = {k: str(v) for k, v in DISK_BODY.items()} | {"format": "png"}
    r = disks.get(PATH, params=params)
    assert r.status_code == 200, r.text
    assert r.content.startswith(PNG_SIGNATURE)
    r = disks.get(PATH, params={**params, "format": "json"})
    assert r.json()["data"]["resources"][0]["resource"].startswith("disk")


@pytest.mark.parametrize(
    ("change", "field_name"),
    [
        ({"horizon_days": 0}, "horizon_days"),
        ({"horizon_days": 400}, "horizon_days"),
        ({"capacity": -5}, "capacity"),
        ({"capacity": "size{"}, "capacity"),
        ({"usage": "avail{"}, "usage"),
        ({"target_utilisation": 1.5}, "target_utilisation"),
        ({"target_utilisation": 0}, "target_utilisation"),
        ({"scenarios": [{"name": "x", "speed": 2}]}, "scenarios.0.speed"),
        ({"scenarios": []}, "scenarios"),
        ({"scenarios": [{"name": "x"}, {"name": "x"}]}, "scenarios"),
        ({"usage_kind": "free"}, "usage_kind"),
        ({"history": "2y"}, "history"),
        ({"format": "svg"}, "format"),
        ({"projection": "maybe"}, "projection"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_input_is_400_naming_the_field(
    client: TestClient, change: dict[str, object], field_name: str
) -> None:
    r = client.post(PATH, json={**DISK_BODY, **change})
    assert r.status_code == 400, r.text
    assert f"'{field_name}'" in r.json()["error"]


def test_get_with_unknown_parameter_is_400(client: TestClient) -> None:
    r = client.get(PATH, params={"usage": "a", "capacity": "1", "horizon": "3d"})
    assert r.status_code == 400 and "'horizon'" in r.json()["error"]


def test_no_usage_series_is_404(client: TestClient) -> None:
    r = client.post(PATH, json={**DISK_BODY})
    assert r.status_code == 404 and "node_filesystem_avail_bytes" in r.json()["error"]


def test_a_projection_from_minutes_of_history_says_it_is_one(client: TestClient) -> None:
    # A new host's first minutes: memory rising as processes start. Projected at face value it
    # "fills in hours" with a tight interval; the answer marks it and says why, and a month of
    # the same host's history is planned as usual.
    labels = {"instance": "new:9100", "job": "node"}
    ts = np.arange(END - 10 * MIN, END + 1, MIN)
    avail = 24e9 - 2e7 * np.arange(ts.size) * 60  # 1.2 GB a minute less available
    ingest(client, {"__name__": "node_memory_MemAvailable_bytes", **labels}, ts, avail)
    total = np.full(ts.size, 25e9)
    ingest(client, {"__name__": "node_memory_MemTotal_bytes", **labels}, ts, total)
    body = {
        "usage": "node_memory_MemAvailable_bytes",
        "usage_kind": "available",
        "capacity": "node_memory_MemTotal_bytes",
        "horizon_days": 30,
        "resource": "memory",
        "step": "5m",  # as the dashboard asks
        "end": END / 1000,
    }
    r = client.post(PATH, json=body)
    assert r.status_code == 200, r.text
    (res,) = r.json()["data"]["resources"]
    assert res["history_days"] == pytest.approx(10 / 1440)
    assert res["beyond_history"] is True and res["short_history"] is True
    assert "from only 10 min of history, too little to plan on" in res["summary"]


def test_a_long_history_is_not_marked(disks: TestClient) -> None:
    r = disks.post(PATH, json=DISK_BODY)
    res = {x["labels"]["mountpoint"]: x for x in r.json()["data"]["resources"]}
    assert res["/"]["history_days"] > 29 and res["/"]["beyond_history"] is False
    assert res["/"]["short_history"] is False
    assert "too little" not in res["/"]["summary"]


def test_the_projection_is_the_plans_own_in_used_bytes(disks: TestClient) -> None:
    # what the dashboard's chart draws: the baseline's P10/P50/P90 usage (used, not available)
    # at up to 300 future steps up to the horizon; its P50 meets the capacity when the P50
    # exhaustion time says (asked for with projection: true, as the Capacity page does)
    r = disks.post(PATH, json={**DISK_BODY, "projection": True})
    assert r.status_code == 200, r.text
    res = {x["labels"]["mountpoint"]: x for x in r.json()["data"]["resources"]}
    proj = res["/"]["projection"]
    assert set(proj) == {"timestamps", "p10", "p50", "p90"}
    ts = np.array(proj["timestamps"])
    p10, p50, p90 = (np.array(proj[k]) for k in ("p10", "p50", "p90"))
    assert 100 <= ts.size <= 300 and ts.size == p10.size == p50.size == p90.size
    assert np.all(np.diff(ts) > 0) and ts[0] == END / 1000  # one hourly step after the last
    assert ts[-1] == pytest.approx(END / 1000 - 3600 + 60 * 86_400)  # last sample + horizon
    assert np.all(p10 <= p50) and np.all(p50 <= p90)
    assert p50[0] == pytest.approx(USED_NOW, rel=0.02)  # used, not the ~300 GB available
    exhausted = res["/"]["scenarios"][0]["exhaustion"]["p50"]["unix"]
    crossing = ts[np.argmax(p50 >= SIZE)]
    assert p50.max() >= SIZE
    assert abs(crossing - exhausted) <= 0.05 * TRUE_DAYS * 86_400
    flat = res["/srv"]["projection"]
    assert max(flat["p90"]) < SIZE and min(flat["p10"]) > 250e9


def test_the_projection_only_when_asked_and_the_rest_the_same(disks: TestClient) -> None:
    # ~20 KB a resource that only a chart draws: null unless projection=true (POST body or
    # GET query), and asking for it changes no other figure of the answer
    plain = disks.post(PATH, json=DISK_BODY)
    asked = disks.post(PATH, json={**DISK_BODY, "projection": True})
    assert plain.status_code == asked.status_code == 200, plain.text + asked.text
    bare, drawn = plain.json()["data"], asked.json()["data"]
    assert [x["projection"] for x in bare["resources"]] == [None, None]
    assert len(plain.content) < len(asked.content) / 5
    last = (END - HOUR) / 1000  # the last hourly sample of the history
    for res in drawn["resources"]:
        proj = res["projection"]
        ts = np.array(proj["timestamps"])
        p10, p50, p90 = (np.array(proj[k], dtype=float) for k in ("p10", "p50", "p90"))
        assert ts.size > 100 and ts.size == p10.size == p50.size == p90.size
        assert ts[0] > last and np.all(np.diff(ts) > 0)
        assert np.all(p10 <= p50) and np.all(p50 <= p90)
    assert [{**x, "projection": None} for x in drawn["resources"]] == bare["resources"]
    assert {k: v for k, v in drawn.items() if k != "resources"} == {
        k: v for k, v in bare.items() if k != "resources"
    }
    # the same from the GET route's query parameters
    params = {k: str(v) for k, v in DISK_BODY.items()}
    got = disks.get(PATH, params={**params, "projection": "true"}).json()["data"]
    assert got["resources"] == drawn["resources"]
    got = disks.get(PATH, params=params).json()["data"]
    assert [x["projection"] for x in got["resources"]] == [None, None]


def test_the_png_draws_the_projection_without_being_asked(disks: TestClient) -> None:
    # the chart draws the projected usage band, so the PNG route plans with it whatever the
    # flag: the image is the one of the plan with its projection, not the one without
    from perfintel.model import parse_selector
    from perfintel.performance import capacity as cap
    from perfintel.performance.history import choose_window
    from perfintel.performance.plot import capacity_png

    r = disks.post(PATH, json={**DISK_BODY, "usage": USAGE_ROOT, "format": "png"})
    assert r.status_code == 200 and r.content.startswith(PNG_SIGNATURE)

    def png(projection: bool) -> bytes:
        analysis = cap.analyze(
            disks.app.state.store,  # type: ignore[attr-defined]
            parse_selector(USAGE_ROOT),
            parse_selector(DISK_BODY["capacity"]),  # type: ignore[arg-type]
            choose_window(60 * DAY),
            usage_kind="available",
            resource="disk",
            end_ms=END,
            projection=projection,
        )
        return capacity_png(analysis.resources[0], 0.8)

    assert r.content == png(True) != png(False)
