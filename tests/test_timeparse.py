"""One syntax for durations and times: the parser, and every place that reads one.

Before, ``/api/v1/query_range`` took whole-number durations only (``1.5m``
refused) while the performance bodies took ``1.5h``, and three functions named
``parse_duration`` returned seconds, milliseconds or refused fractions.
"""

from __future__ import annotations

import contextlib
import doctest
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from perfintel import timeparse
from perfintel.config import load_settings
from perfintel.errors import BadInputError, ConfigError, TimeParseError
from perfintel.timeparse import parse_duration_ms, parse_duration_seconds, parse_time_ms

H = 3_600_000


def test_doctests() -> None:
    assert doctest.testmod(timeparse).failed == 0


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("90s", 90_000),
        ("1h30m", 5_400_000),
        ("500ms", 500),
        ("1d", 86_400_000),
        ("1w", 7 * 86_400_000),
        ("1y", 365 * 86_400_000),
        ("1y2w3d4h5m6s7ms", 365 * 86_400_000 + 17 * 86_400_000 + 4 * H + 306_007),
        ("1.5h", 5_400_000),
        ("0.5s", 500),
        ("1.5", 1500),
        ("15", 15_000),
        ("1e3", 1_000_000),
        ("-5", -5000),
        (" 5m ", 300_000),
        (2.5, 2500),
        (0, 0),
    ],
)
def test_durations(text: str | float, ms: int) -> None:
    assert parse_duration_ms(text) == ms
    assert parse_duration_seconds(text) == ms / 1000


@pytest.mark.parametrize(
    "text", ["", "m", "5x", "30m1h", "1h1h", "-5m", "1h 30m", "NaN", "Inf", "1e400", "5mm", "1.h"]
)
def test_bad_durations(text: str) -> None:
    with pytest.raises(TimeParseError, match="valid duration"):
        parse_duration_ms(text)


def test_duration_errors_name_the_parameter_as_prometheus_does() -> None:
    with pytest.raises(TimeParseError) as exc:
        parse_duration_ms("abc", "step")
    assert str(exc.value) == 'invalid parameter "step": cannot parse "abc" to a valid duration'
    assert isinstance(exc.value, BadInputError) and isinstance(exc.value, ValueError)


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("1700000000", 1_700_000_000_000),
        ("1700000000.123", 1_700_000_000_123),
        ("1.001", 1001),
        ("-1.5", -1500),
        ("2023-11-14T22:13:20Z", 1_700_000_000_000),
        ("2023-11-14t22:13:20z", 1_700_000_000_000),
        ("2023-11-14 22:13:20Z", 1_700_000_000_000),
        ("2023-11-14T23:13:20.123456789+01:00", 1_700_000_000_123),
        ("2023-11-14T22:13:20.5Z", 1_700_000_000_500),
        ("1969-12-31T23:59:59.9Z", -100),
        ("now", 10 * H),
        ("now-1h", 9 * H),
        ("now - 1h30m", 10 * H - 5_400_000),
        ("now+5m", 10 * H + 300_000),
        ("now-1.5d", 10 * H - 36 * H),
    ],
)
def test_times(text: str, ms: int) -> None:
    assert parse_time_ms(text, now_ms=10 * H) == ms


@pytest.mark.parametrize(
    "text",
    [
        *("", "yesterday", "2023-11-14", "2023-13-14T00:00:00Z", "2023-11-14T22:13:20", "now-"),
        *("now-5", "now*2", "1e300", "nan", "inf", "-inf", "2023-11-14T22:13:20+1:00"),
    ],
)
def test_bad_times(text: str) -> None:
    with pytest.raises(TimeParseError, match="valid timestamp"):
        parse_time_ms(text, "time")


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=40), st.from_regex(r"\A(now)?[-+]?[0-9.]*[a-z]{0,3}\Z")))
def test_garbage_is_refused_cleanly(text: str) -> None:
    for parse in (parse_duration_ms, parse_time_ms):
        with contextlib.suppress(TimeParseError):
            assert isinstance(parse(text), int)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10**6), st.sampled_from(list(timeparse.UNITS_MS)))
def test_unit_durations_are_exact(n: int, unit: str) -> None:
    want = n * timeparse.UNITS_MS[unit]
    if want > timeparse.MAX_DURATION_MS:
        with pytest.raises(TimeParseError, match="overflow"):
            parse_duration_ms(f"{n}{unit}")
    else:
        assert parse_duration_ms(f"{n}{unit}") == want


def test_settings_read_durations_with_the_same_parser() -> None:
    s = load_settings(
        overrides={"storage": {"raw_retention": "1w", "head_max_age": "1m30s"}}, env={}
    )
    assert s.storage.raw_retention == 7 * 86400 and s.storage.head_max_age == 90
    s = load_settings(env={"PERFINTEL_QUERY__TIMEOUT": "1.5m"})
    assert s.query.timeout == 90
    s = load_settings(
        overrides={
            "scrape": [
                {"job_name": "a", "targets": ["h:1"], "interval_s": "1m", "timeout_s": "10s"}
            ]
        },
        env={},
    )
    assert (s.scrape[0].interval_s, s.scrape[0].timeout_s) == (60, 10)
    for bad in ("-5", "abc", "1h1h"):
        with pytest.raises(ConfigError, match=r"query\.timeout"):
            load_settings(overrides={"query": {"timeout": bad}}, env={})


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    settings = load_settings(overrides={"data_dir": tmp_path / "d"}, env={})
    from perfintel.api.app import create_app

    with TestClient(create_app(settings, collectors=False)) as c:
        yield c  # type: ignore[misc]


def test_every_endpoint_takes_the_same_syntax(client: TestClient) -> None:
    client.post("/api/v1/import/prometheus", content=b"m 1\n")
    # query_range: a fractional duration step and relative times (both refused before)
    r = client.get(
        "/api/v1/query_range",
        params={"query": "m", "start": "now-9m", "end": "now", "step": "1.5m"},
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["data"]["result"][0]["values"]) >= 1
    r = client.get("/api/v1/query", params={"query": "m", "time": "now", "timeout": "1m30s"})
    assert r.status_code == 200 and r.json()["data"]["result"]
    r = client.get("/api/v1/series/query", params={"match": "m", "start": "now-1h", "step": "1.5m"})
    assert r.status_code == 200 and r.json()["data"]["series"]
    r = client.get("/api/v1/export", params={"match[]": "m", "start": "now-1h", "end": "now"})
    assert r.status_code == 200 and r.content
    for params in (
        {"query": "m", "start": "now-1h", "end": "now", "step": "1x"},
        {"query": "m", "start": "soon", "end": "now", "step": "1m"},
    ):
        r = client.get("/api/v1/query_range", params=params)
        assert r.status_code == 400 and "invalid parameter" in r.json()["error"]
    # the analysis bodies: the same syntax, errors name the field
    r = client.post(
        "/api/v1/performance/detect/anomalies",
        json={"selector": "m", "start": "now-1h", "end": "now", "step": "1m30s", "warmup": 0},
    )
    assert r.status_code == 200, r.text
    r = client.post("/api/v1/performance/detect/anomalies", json={"selector": "m", "step": "soon"})
    assert r.status_code == 400 and "step" in r.json()["error"]
    r = client.post(
        "/api/v1/performance/predict/metrics",
        json={"selector": "m", "horizon": "1h30m", "step": "90", "history": "0.5d", "end": "now"},
    )
    assert r.status_code in (200, 404), r.text  # one sample: maybe too little to forecast
    r = client.post("/api/v1/performance/predict/metrics", json={"selector": "m", "horizon": "5x"})
    assert r.status_code == 400 and "horizon" in r.json()["error"]


def test_one_parser_module() -> None:
    """No second duration parser: the old names are gone."""
    import perfintel.api.params as params
    import perfintel.config as config

    assert not hasattr(config, "parse_duration")
    assert params.parse_duration_ms is timeparse.parse_duration_ms
    assert not hasattr(params, "parse_step")
    root = Path(__file__).resolve().parents[1] / "perfintel"
    offenders = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if p.name != "timeparse.py" and "def parse_duration" in p.read_text()
    ]
    assert offenders == []
